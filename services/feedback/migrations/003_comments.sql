-- Survey comments, kept here rather than on civicpulse.feedback (kept for ever):
-- SatisfactionResponded version 2 carries only `comment_ref`, the request id.
-- Redacted before they are written; deleted with the customer's other personal
-- data by DELETE /v1/customers/{ref} (the request row says whose it is).
CREATE TABLE feedback_comments (
    request_id   text        PRIMARY KEY REFERENCES feedback_requests (request_id),
    answered_at  timestamptz NOT NULL,
    service_area text        NOT NULL,
    channel      text        NOT NULL,
    overall      integer     NOT NULL,
    comment      text        NOT NULL
);
CREATE INDEX feedback_comments_latest ON feedback_comments (answered_at DESC);

-- Answers recorded before this migration went out as SatisfactionResponded
-- version 1, whose comment text stays on civicpulse.feedback: the erasure
-- receipt names how many of a customer's answers that may be.
CREATE TABLE feedback_answers_before_v2 (
    request_id text PRIMARY KEY
);
INSERT INTO feedback_answers_before_v2 (request_id)
SELECT request_id FROM feedback_requests WHERE status = 'answered';
