-- Issue 12, item 8: a permanent delivery failure marks that address bad, so no
-- further message goes to it until the CRM puts a different one
-- (PUT /v1/customers/{ref}/contact-route clears the mark of an address it changes).
ALTER TABLE feedback_contact_routes
    ADD COLUMN email_bad_at  timestamptz,
    ADD COLUMN mobile_bad_at timestamptz;

-- The sender's decision per request, taken under the customer's lock: sent
-- (notification_id is Notify's id) or suppressed at send time, with the reason
-- (erased, opted_out, route_bad). sent_at is the time of that decision.
ALTER TABLE feedback_sent_notifications
    ADD COLUMN customer_ref      text,
    ADD COLUMN notification_type text,
    ADD COLUMN suppressed_reason text;

-- GOV.UK Notify's delivery-status callbacks: the latest status per request
-- (reference = request id). No address is kept: only what happened, and when.
CREATE TABLE feedback_delivery_statuses (
    reference         text        PRIMARY KEY,
    notification_id   uuid        NOT NULL,
    notification_type text        NOT NULL,
    status            text        NOT NULL,
    status_at         timestamptz NOT NULL,
    received_at       timestamptz NOT NULL
);
