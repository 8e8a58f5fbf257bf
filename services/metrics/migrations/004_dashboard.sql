-- What the managers' dashboard needs beyond the counters.

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

-- Each complaint deadline's progress, in whatever order its events arrive: breached (its
-- ComplaintDeadlineBreached was seen) and done (its acknowledgement or response was
-- seen). An open complaint with a deadline of its current stage breached and not done
-- is overdue.
CREATE TABLE metrics_complaint_deadlines (
    generation   integer NOT NULL,
    complaint_id text    NOT NULL,
    stage        integer NOT NULL,
    deadline     text    NOT NULL CHECK (deadline IN ('acknowledge', 'respond')),
    breached     boolean NOT NULL,
    done         boolean NOT NULL,
    PRIMARY KEY (generation, complaint_id, stage, deadline)
);
