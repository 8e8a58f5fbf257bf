-- CivicPulse's PostgreSQL roles: an owner that runs migrations, and one login
-- role per service that can touch only its own tables (docs/production.md,
-- "PostgreSQL roles"). Run once per database as a superuser or a role with
-- CREATEROLE, then give each login role a password:
--
--   psql "postgresql://admin@db.example/civicpulse?sslmode=verify-full" \
--        -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
--   psql ... -c "ALTER ROLE civicpulse_intake PASSWORD '...'"   (and the others)
--
-- Services connect as their role (CIVICPULSE_DATABASE_URL) and run their
-- migrations as the owner (CIVICPULSE_MIGRATION_DATABASE_URL); after
-- migrating, the owner calls civicpulse_grant_service_tables() below so new
-- tables reach their service's role and no other. Safe to run again.

DO $roles$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY[
        'civicpulse_owner',
        'civicpulse_intake',
        'civicpulse_complaints',
        'civicpulse_feedback',
        'civicpulse_metrics'
    ] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'civicpulse_services') THEN
        CREATE ROLE civicpulse_services NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO civicpulse_owner, civicpulse_services',
                   current_database());
END
$roles$;

GRANT civicpulse_services TO civicpulse_intake, civicpulse_complaints,
    civicpulse_feedback, civicpulse_metrics;

-- Only the owner creates objects; services cannot add or alter tables.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO civicpulse_owner;
GRANT USAGE ON SCHEMA public TO civicpulse_services;

-- Each service's tables are named after it (intake_*, complaints*, feedback_*,
-- metrics_*). The shared machinery's tables (outbox, processed_events, timers)
-- hold every service's rows under a `service` column ("metrics@g3" for a
-- metrics generation): row-level security lets each role see its own only.
CREATE OR REPLACE FUNCTION civicpulse_grant_service_tables() RETURNS void
LANGUAGE plpgsql AS $grant$
DECLARE
    service text;
    item record;
    shared_table text;
BEGIN
    FOREACH service IN ARRAY ARRAY['intake', 'complaints', 'feedback', 'metrics'] LOOP
        FOR item IN
            SELECT c.relname, c.relkind FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')
              AND (c.relname = service OR c.relname LIKE service || '\_%')
        LOOP
            IF item.relkind = 'r' THEN
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO %I',
                               item.relname, 'civicpulse_' || service);
            ELSE
                EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO %I',
                               item.relname, 'civicpulse_' || service);
            END IF;
        END LOOP;
        FOREACH shared_table IN ARRAY ARRAY['outbox', 'processed_events', 'timers'] LOOP
            CONTINUE WHEN to_regclass('public.' || shared_table) IS NULL;
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO %I',
                           shared_table, 'civicpulse_' || service);
            EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', shared_table);
            EXECUTE format('DROP POLICY IF EXISTS %I ON public.%I',
                           service || '_rows', shared_table);
            EXECUTE format(
                'CREATE POLICY %I ON public.%I TO %I '
                'USING (split_part(service, ''@'', 1) = %L) '
                'WITH CHECK (split_part(service, ''@'', 1) = %L)',
                service || '_rows', shared_table, 'civicpulse_' || service, service, service);
        END LOOP;
    END LOOP;
    IF to_regclass('public.outbox_id_seq') IS NOT NULL THEN
        GRANT USAGE, SELECT ON SEQUENCE public.outbox_id_seq TO civicpulse_services;
    END IF;
    -- Services check at start that nothing is left to migrate.
    IF to_regclass('public.schema_migrations') IS NOT NULL THEN
        GRANT SELECT ON public.schema_migrations TO civicpulse_services;
    END IF;
END
$grant$;

ALTER FUNCTION civicpulse_grant_service_tables() OWNER TO civicpulse_owner;
REVOKE ALL ON FUNCTION civicpulse_grant_service_tables() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION civicpulse_grant_service_tables() TO civicpulse_owner;
