-- Survey comments for the managers' dashboard: the words, the score and where the case
-- was, never who wrote them (no customer reference, no case id). Feedback has already
-- taken emails and phone numbers out of them. Kept per generation, like every fact.
CREATE TABLE metrics_survey_comments (
    generation   integer     NOT NULL,
    event_id     uuid        NOT NULL,
    answered_at  timestamptz NOT NULL,
    service_area text        NOT NULL,
    channel      text        NOT NULL,
    overall      integer     NOT NULL,
    comment      text        NOT NULL,
    PRIMARY KEY (generation, event_id)
);
CREATE INDEX metrics_survey_comments_latest
    ON metrics_survey_comments (generation, answered_at DESC);
