-- The metrics service's state. Every table is keyed by a generation: the live
-- aggregates are one generation, and a rebuild by replay fills the next one
-- from the start of the topics, then moves `metrics_current` to it.

CREATE TABLE metrics_generations (
    generation  integer     PRIMARY KEY,
    state       text        NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    switched_at timestamptz
);
INSERT INTO metrics_generations (generation, state, switched_at) VALUES (1, 'live', now());

-- The generation every reader and the live consumer use: one row. Live
-- batches read it FOR SHARE, so a switch waits for the batch in hand.
CREATE TABLE metrics_current (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation integer NOT NULL REFERENCES metrics_generations (generation)
);
INSERT INTO metrics_current (generation) VALUES (1);

-- Counters per local day (Europe/London), service area, channel and measure.
-- channel '' is "not known" (complaint events after the opening carry none
-- and the opening was not seen).
CREATE TABLE metrics_aggregates (
    generation   integer          NOT NULL,
    day          date             NOT NULL,
    measure      text             NOT NULL,
    service_area text             NOT NULL,
    channel      text             NOT NULL,
    value        double precision NOT NULL,
    PRIMARY KEY (generation, day, measure, service_area, channel)
);

-- One row per contact: the re-contact window of first contact resolution and
-- a call's transfers need memory.
CREATE TABLE metrics_contact_facts (
    generation   integer     NOT NULL,
    contact_id   text        NOT NULL,
    customer_ref text,
    service_area text        NOT NULL,
    channel      text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    day          date        NOT NULL,
    candidate    boolean     NOT NULL, -- resolved at first contact, no transfer, FCR kind
    lost         boolean     NOT NULL DEFAULT false, -- re-contacted or transferred later
    transfers    integer     NOT NULL,
    PRIMARY KEY (generation, contact_id)
);
CREATE INDEX metrics_contact_facts_customer
    ON metrics_contact_facts (generation, customer_ref, service_area, occurred_at)
    WHERE customer_ref IS NOT NULL;

-- One row per complaint: its channel (for later events), stage and whether open.
CREATE TABLE metrics_complaint_facts (
    generation   integer NOT NULL,
    complaint_id text    NOT NULL,
    service_area text    NOT NULL,
    channel      text    NOT NULL,
    scope        text    NOT NULL CHECK (scope IN ('corporate', 'statutory')),
    stage        integer NOT NULL,
    open         boolean NOT NULL,
    PRIMARY KEY (generation, complaint_id)
);

-- The first known outcome of each deadline: the action, or its breach.
CREATE TABLE metrics_complaint_outcomes (
    generation   integer NOT NULL,
    complaint_id text    NOT NULL,
    stage        integer NOT NULL,
    deadline     text    NOT NULL CHECK (deadline IN ('acknowledge', 'respond')),
    on_time      boolean NOT NULL,
    PRIMARY KEY (generation, complaint_id, stage, deadline)
);

-- Surge days; consecutive days share the surge_id of the first.
CREATE TABLE metrics_surges (
    generation   integer          NOT NULL,
    service_area text             NOT NULL,
    measure      text             NOT NULL,
    day          date             NOT NULL,
    surge_id     text             NOT NULL,
    count        double precision NOT NULL,
    baseline     double precision NOT NULL,
    threshold    double precision NOT NULL,
    PRIMARY KEY (generation, service_area, measure, day)
);

-- The latest event seen per topic, for the pipeline's "last event age".
CREATE TABLE metrics_topic_progress (
    generation       integer     NOT NULL,
    topic            text        NOT NULL,
    events           bigint      NOT NULL,
    last_occurred_at timestamptz NOT NULL,
    last_recorded_at timestamptz NOT NULL,
    last_applied_at  timestamptz NOT NULL,
    PRIMARY KEY (generation, topic)
);
