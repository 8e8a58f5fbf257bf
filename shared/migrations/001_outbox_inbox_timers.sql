-- Machinery every stateful service shares. Each row names its service, so
-- several services may share one database (as in tests and small councils) or
-- each have their own.

-- Transactional outbox: events written in the same transaction as the state
-- change that caused them, published by the relay, then deleted.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    service     text        NOT NULL,
    topic       text        NOT NULL,
    key         bytea       NOT NULL,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_service_id ON outbox (service, id);

-- Processed events: a consumer records each event_id in the transaction that
-- applies it, so a redelivered event changes nothing.
CREATE TABLE processed_events (
    service      text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, event_id)
);

-- Durable timers: one row per deadline. The partial index holds only pending
-- timers, so finding what is due costs what is due, not what is open.
CREATE TABLE timers (
    service     text        NOT NULL,
    timer_id    text        NOT NULL,
    kind        text        NOT NULL,
    subject     text        NOT NULL,
    due_at      timestamptz NOT NULL,
    payload     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    fired_at    timestamptz,
    cancelled_at timestamptz,
    PRIMARY KEY (service, timer_id)
);
CREATE INDEX timers_pending_due ON timers (service, due_at)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX timers_subject ON timers (service, subject);
