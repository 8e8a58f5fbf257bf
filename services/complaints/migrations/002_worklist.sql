-- The officer's worklist (GET /v1/complaints): what is due next, beside the
-- state, so the list filters and orders in SQL. `next_deadline` is the earliest
-- deadline still awaiting its action (breached ones included: past it, the case
-- is overdue); `next_due_date` also counts the escalation window's end.
ALTER TABLE complaints
    ADD COLUMN channel       text,
    ADD COLUMN next_deadline date,
    ADD COLUMN next_due_date date;

-- Rows saved before this migration: the same figures from their stored state
-- (version 1 states kept the window's end as `escalation_window_ends`).
UPDATE complaints SET
    channel = state->>'channel',
    next_deadline = (
        SELECT min((d->>'due_date')::date)
        FROM jsonb_array_elements(state->'deadlines') AS d
        WHERE d->>'met_on' IS NULL AND NOT (d->>'cancelled')::boolean
    );
UPDATE complaints SET next_due_date = CASE
    WHEN status = 'responded' AND state->>'escalation_window_ends' IS NOT NULL
        THEN LEAST(next_deadline, (state->>'escalation_window_ends')::date)
    ELSE next_deadline
END;

-- Keyset pages in due order; NULLs (nothing due) sort last.
CREATE INDEX complaints_worklist ON complaints (next_due_date, complaint_id);

-- Stage responses saved before escalation windows had timers: give each open
-- window its timer, so that it lapses like a new one (due at the local
-- midnight after its last day, as `end_of_local_day`).
INSERT INTO timers (service, timer_id, kind, subject, due_at, payload)
SELECT 'complaints',
       complaint_id || '/' || stage || ':escalation_window',
       'escalation_window',
       complaint_id,
       ((state->>'escalation_window_ends')::date + 1)::timestamp AT TIME ZONE 'Europe/London',
       jsonb_build_object('stage', stage, 'due_date', state->>'escalation_window_ends')
FROM complaints
WHERE status = 'responded' AND state->>'escalation_window_ends' IS NOT NULL
ON CONFLICT (service, timer_id) DO NOTHING;
