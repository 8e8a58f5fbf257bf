-- One row per complaint. `state` is the whole lifecycle record (deadlines,
-- responders, history) as the domain model serialises it; the columns beside
-- it are what the metrics and operators filter on.
CREATE TABLE complaints (
    complaint_id text        PRIMARY KEY,
    procedure    text        NOT NULL,
    statutory    boolean     NOT NULL,
    service_area text        NOT NULL,
    stage        integer     NOT NULL,
    status       text        NOT NULL,
    state        jsonb       NOT NULL,
    received_at  timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Open complaints by procedure and stage, without reading settled ones.
CREATE INDEX complaints_open ON complaints (procedure, stage, status)
    WHERE status NOT IN ('closed', 'withdrawn', 'referred_to_ombudsman');

-- The working-day calendar deadlines were last counted with: when it changes
-- (a closure day added), open deadlines are recounted at start-up.
CREATE TABLE complaints_calendar (
    id          integer     PRIMARY KEY CHECK (id = 1),
    fingerprint text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
