-- Contact routes: the only personal data in CivicPulse. One row per customer,
-- replaced by the CRM, deleted on erasure (DELETE /v1/customers/{ref}).
CREATE TABLE feedback_contact_routes (
    customer_ref text        PRIMARY KEY,
    email        text,
    mobile       text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (email IS NOT NULL OR mobile IS NOT NULL)
);

-- Customers who asked for no more surveys. Kept after erasure so that the
-- opt-out is still honoured; customer_ref is pseudonymous.
CREATE TABLE feedback_opt_outs (
    customer_ref text        PRIMARY KEY,
    opted_out_at timestamptz NOT NULL
);

-- What complaint events do not repeat: who complained, on which channel, and
-- the contact it arrived on (one survey covers both).
CREATE TABLE feedback_complaints (
    complaint_id text    PRIMARY KEY,
    customer_ref text,
    channel      text    NOT NULL,
    service_area text    NOT NULL,
    procedure    text    NOT NULL,
    contact_id   text,
    withdrawn    boolean NOT NULL DEFAULT false
);
CREATE INDEX feedback_complaints_contact ON feedback_complaints (contact_id);

-- One row per surveyed case (never two: the unique case key), through its
-- life: scheduled -> requested -> answered | expired, or cancelled before sending.
CREATE TABLE feedback_requests (
    request_id    text        PRIMARY KEY,
    case_type     text        NOT NULL,
    case_id       text        NOT NULL,
    customer_ref  text        NOT NULL,
    service_area  text        NOT NULL,
    channel       text        NOT NULL,
    resolved_at   timestamptz NOT NULL,
    send_at       timestamptz NOT NULL,
    status        text        NOT NULL DEFAULT 'scheduled'
        CHECK (status IN ('scheduled', 'requested', 'answered', 'expired', 'cancelled')),
    requested_at  timestamptz,
    expires_at    timestamptz,
    answered_at   timestamptz,
    cancel_reason text,
    UNIQUE (case_type, case_id)
);
CREATE INDEX feedback_requests_customer ON feedback_requests (customer_ref, resolved_at);

-- Why a resolved case got no request, one row per resolution event.
CREATE TABLE feedback_suppressions (
    event_id     uuid        PRIMARY KEY,
    case_type    text        NOT NULL,
    case_id      text        NOT NULL,
    reason       text        NOT NULL,
    decided_at   timestamptz NOT NULL
);
CREATE INDEX feedback_suppressions_case ON feedback_suppressions (case_type, case_id);

-- Notifications the sender process handed to GOV.UK Notify, so a redelivered
-- message is not sent twice.
CREATE TABLE feedback_sent_notifications (
    reference       text        PRIMARY KEY,
    notification_id text,
    sent_at         timestamptz NOT NULL
);
