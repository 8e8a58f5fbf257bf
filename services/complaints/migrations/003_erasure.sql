-- Complaints whose events went out before officers' reasons were kept apart
-- (ComplaintDeadlineExtended v1, ComplaintWithdrawn v1, ComplaintClosed v1 and
-- v2, ComplaintEscalationRefused v1 carried the text on civicpulse.complaints,
-- kept for ever): the erasure receipt names them.
CREATE TABLE complaints_before_v2 (
    complaint_id text PRIMARY KEY
);
INSERT INTO complaints_before_v2 (complaint_id) SELECT complaint_id FROM complaints;

-- Erasure finds a customer's complaints by their pseudonymous reference.
CREATE INDEX complaints_customer ON complaints ((state->>'customer_ref'));
