-- Nothing blocks behind one bad row: a timer that fails to fire, or an outbox
-- row that fails to publish, is tried again after a backoff and, after its
-- attempt cap, parked with its error while the others carry on. Operators list
-- and retry parked rows with `python -m civicpulse parked`.
ALTER TABLE timers
    ADD COLUMN attempts        integer     NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN last_error      text,
    ADD COLUMN parked_at       timestamptz;

ALTER TABLE outbox
    ADD COLUMN attempts        integer     NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN last_error      text,
    ADD COLUMN parked_at       timestamptz;

-- The due scan skips parked timers; its index holds only what can fire.
DROP INDEX timers_pending_due;
CREATE INDEX timers_pending_due ON timers (service, due_at)
    WHERE fired_at IS NULL AND cancelled_at IS NULL AND parked_at IS NULL;
CREATE INDEX timers_parked ON timers (service)
    WHERE parked_at IS NOT NULL AND fired_at IS NULL AND cancelled_at IS NULL;

-- Rows that failed at least once: few, and what holds back the later rows of
-- the same subject (so each subject's events still leave in order).
CREATE INDEX outbox_failed ON outbox (service, topic, key, id) WHERE attempts > 0;
