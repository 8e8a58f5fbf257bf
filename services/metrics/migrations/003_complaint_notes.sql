-- What the annual complaints report lists rather than counts: one row per
-- complaint event that carries a reason, a decision or a learning action
-- (GET /v1/reports/complaints). Keyed by generation like every metrics table,
-- so a rebuild by replay fills it again.
CREATE TABLE metrics_complaint_notes (
    generation   integer NOT NULL,
    event_id     uuid    NOT NULL,
    complaint_id text    NOT NULL,
    kind         text    NOT NULL,
    day          date    NOT NULL,
    procedure    text    NOT NULL,
    service_area text    NOT NULL,
    stage        integer,
    detail       jsonb   NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (generation, event_id, kind)
);
CREATE INDEX metrics_complaint_notes_day ON metrics_complaint_notes (generation, day);
