-- One row per accepted record: the publisher's idempotency key, scoped by the
-- publishing system, with the event it became and a fingerprint of its content
-- (a key reused for different content is a conflict, not a duplicate).
CREATE TABLE intake_accepted_records (
    source          text        NOT NULL,
    idempotency_key text        NOT NULL,
    event_id        uuid        NOT NULL,
    fingerprint     text        NOT NULL,
    accepted_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, idempotency_key)
);
