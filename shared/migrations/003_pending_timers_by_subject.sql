-- Timers are looked up by subject only while pending (`timers.pending_for`). A
-- timer's firing or cancelling is an UPDATE that cannot be HOT: fired_at and
-- cancelled_at are in the due scan's index predicate. Such an update adds an
-- entry to every index whose predicate the new row version meets; with this
-- index partial, a fired or cancelled timer adds one (the primary key) instead
-- of two, and the index holds only what is pending.
DROP INDEX timers_subject;
CREATE INDEX timers_subject ON timers (service, subject)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
