-- loadgen Postgres schema. Idempotent: apply it as often as you like.
--
--   loadgen db migrate --database-url postgresql://...     (or: psql -f db/schema.sql)
--
-- Why it is written this way:
--
-- * Several machines (shards) start at once and each applies the schema.
--   `CREATE ... IF NOT EXISTS` is not race-safe on its own, so everything runs
--   in one transaction behind a transaction-level advisory lock (a session
--   lock would break behind a transaction-mode pooler such as Neon's -pooler).
-- * Re-applying must cost nothing on a busy database: DDL takes table locks
--   that queue behind running inserts and dashboards. So every column,
--   constraint, index and view is created or changed only when it is missing
--   or different; an up-to-date database gets catalog look-ups and no DDL.
-- * Tables start with their key and gain every other column through the one
--   list below, so a fresh database and one made by an older schema (or by
--   another tool with the same table names) converge on the same columns.
-- * CHECK constraints mirror loadgen/result.py exactly (a test compares them)
--   and are VALIDATED. The applied definition is kept in the constraint's
--   comment; when the definition here changes, the constraint is swapped.
--   A legacy table whose old rows break the new rule keeps the constraint
--   NOT VALID and the migration warns (nothing is deleted); it is validated
--   on a later apply once the rows are fixed.

BEGIN;

-- 0x6c6f616467656e = 'loadgen'
SELECT pg_advisory_xact_lock(30521764818790766);
SET LOCAL client_min_messages = warning;

CREATE TABLE IF NOT EXISTS runs (
    id text PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS sandbox_results (
    run_id      text    NOT NULL,
    sandbox_idx integer NOT NULL,
    PRIMARY KEY (run_id, sandbox_idx)
);

CREATE TABLE IF NOT EXISTS run_groups (
    group_id text PRIMARY KEY
);

-- Columns: (table, column, type as format_type() prints it, extra clause).
-- sandbox_results follows loadgen.result.RECORD_FIELDS in order.
DO $$
DECLARE
    c record;
    have text;
BEGIN
    FOR c IN SELECT * FROM (VALUES
        -- runs: one row per run (per shard when sharded); id = run_id
        ('runs', 'provider',             'text',                     ''),
        ('runs', 'commit_sha',           'text',                     ''),
        ('runs', 'host',                 'text',                     ''),
        ('runs', 'started_at',           'timestamp with time zone', ''),
        ('runs', 'ended_at',             'timestamp with time zone', ''),
        ('runs', 'last_heartbeat',       'timestamp with time zone', ''),
        ('runs', 'status',               'text',                     'NOT NULL DEFAULT ''running'''),
        ('runs', 'sandboxes_attempted',  'integer',                  ''),
        ('runs', 'sandboxes_succeeded',  'integer',                  ''),
        ('runs', 'partials',             'integer',                  ''),
        ('runs', 'readiness_failures',   'integer',                  ''),
        ('runs', 'timeouts',             'integer',                  ''),
        ('runs', 'http_errors',          'integer',                  ''),
        ('runs', 'network_errors',       'integer',                  ''),
        ('runs', 'other_errors',         'integer',                  ''),
        ('runs', 'p50_latency_ms',       'double precision',         ''),
        ('runs', 'p99_latency_ms',       'double precision',         ''),
        ('runs', 'error_message',        'text',                     ''),
        ('runs', 'tigris_prefix',        'text',                     ''),
        ('runs', 'group_id',             'text',                     ''),
        ('runs', 'shard_index',          'integer',                  ''),
        ('runs', 'shard_count',          'integer',                  ''),
        ('runs', 'options',              'jsonb',                    ''),
        ('runs', 'meta',                 'jsonb',                    ''),
        -- what the run's sandboxes were created on: 'emulator' (and its profile, when known) or 'provider'
        ('runs', 'target',               'text',                     ''),
        ('runs', 'emulator_profile',     'text',                     ''),
        ('runs', 'label',                'text',                     ''),
        ('runs', 'failures',             'integer',                  ''),  -- status failed (create failed)
        ('runs', 'leaks',                'integer',                  ''),  -- created, not confirmed destroyed
        ('runs', 'heartbeat',            'jsonb',                    ''),  -- heartbeat.json, as the sink last saw it
        ('runs', 'time_to_50pct_live_ms',  'double precision',       ''),
        ('runs', 'time_to_90pct_live_ms',  'double precision',       ''),
        ('runs', 'time_to_99pct_live_ms',  'double precision',       ''),
        ('runs', 'time_to_100pct_live_ms', 'double precision',       ''),
        ('runs', 'time_to_peak_live_ms',   'double precision',       ''),
        ('runs', 'peak_live',              'integer',                ''),
        ('runs', 'peak_live_during_hold',  'integer',                ''),
        ('runs', 'sandbox_seconds',        'double precision',       ''),
        ('runs', 'cost_usd',               'double precision',       ''),
        ('runs', 'cost_estimate_usd',      'double precision',       ''),
        -- sandbox_results: one row per sandbox, every field of a raw.jsonl record
        ('sandbox_results', 'provider',              'text',                     'NOT NULL DEFAULT '''''),
        ('sandbox_results', 'worker_id',             'text',                     ''),
        ('sandbox_results', 'sandbox_id',            'text',                     ''),
        ('sandbox_results', 'status',                'text',                     'NOT NULL DEFAULT ''failed'''),
        ('sandbox_results', 'failure_class',         'text',                     ''),
        ('sandbox_results', 'failed_phase',          'text',                     ''),
        ('sandbox_results', 'http_status',           'text',                     ''),  -- 503, or a gRPC name like DEADLINE_EXCEEDED
        ('sandbox_results', 'error_code',            'text',                     ''),
        ('sandbox_results', 'error_type',            'text',                     ''),
        ('sandbox_results', 'error_message',         'text',                     ''),
        ('sandbox_results', 'started_at',            'timestamp with time zone', ''),
        ('sandbox_results', 'completed_at',          'timestamp with time zone', ''),
        ('sandbox_results', 'create_started_at',     'timestamp with time zone', ''),
        ('sandbox_results', 'create_ended_at',       'timestamp with time zone', ''),
        ('sandbox_results', 'readiness_started_at',  'timestamp with time zone', ''),
        ('sandbox_results', 'readiness_ended_at',    'timestamp with time zone', ''),
        ('sandbox_results', 'liveness_started_at',   'timestamp with time zone', ''),
        ('sandbox_results', 'liveness_ended_at',     'timestamp with time zone', ''),
        ('sandbox_results', 'destroy_started_at',    'timestamp with time zone', ''),
        ('sandbox_results', 'destroy_ended_at',      'timestamp with time zone', ''),
        ('sandbox_results', 'latency_ms',            'double precision',         ''),
        ('sandbox_results', 'first_command_ms',      'double precision',         ''),
        ('sandbox_results', 'liveness_ms',           'double precision',         ''),
        ('sandbox_results', 'destroy_ms',            'double precision',         ''),
        ('sandbox_results', 'destroy_ok',            'boolean',                  ''),
        ('sandbox_results', 'destroy_failure_class', 'text',                     ''),
        ('sandbox_results', 'destroy_error_message', 'text',                     ''),
        ('sandbox_results', 'hold_ms',               'double precision',         ''),
        ('sandbox_results', 'late_create',           'boolean',                  'NOT NULL DEFAULT false'),
        ('sandbox_results', 'readiness_output',      'text',                     ''),
        ('sandbox_results', 'provider_metadata',     'jsonb',                    'NOT NULL DEFAULT ''{}''::jsonb'),
        ('sandbox_results', 'reuse_probe_ms',        'double precision',         ''),
        ('sandbox_results', 'sandbox_fingerprint',   'jsonb',                    ''),
        ('sandbox_results', 'scheduled_start_at',    'timestamp with time zone', ''),
        ('sandbox_results', 'start_lateness_ms',     'double precision',         ''),
        ('sandbox_results', 'wire_timed',            'boolean',                  'NOT NULL DEFAULT false'),
        ('sandbox_results', 'syn_retransmits',       'integer',                  ''),
        ('sandbox_results', 'readiness_setup_ms',    'double precision',         ''),
        ('sandbox_results', 'liveness_setup_ms',     'double precision',         ''),
        ('sandbox_results', 'create_gen_before_ms',  'double precision',         ''),
        ('sandbox_results', 'create_gen_after_ms',   'double precision',         ''),
        ('sandbox_results', 'readiness_gen_before_ms', 'double precision',       ''),
        ('sandbox_results', 'readiness_gen_after_ms', 'double precision',        ''),
        ('sandbox_results', 'liveness_gen_before_ms', 'double precision',        ''),
        ('sandbox_results', 'liveness_gen_after_ms', 'double precision',         ''),
        ('sandbox_results', 'destroy_gen_before_ms', 'double precision',         ''),
        ('sandbox_results', 'destroy_gen_after_ms',  'double precision',         ''),
        ('sandbox_results', 'destroy_retries',       'jsonb',                    ''),
        -- run_groups: one row per group of shards, the same figures as runs
        ('run_groups', 'provider',             'text',                     ''),
        ('run_groups', 'commit_sha',           'text',                     ''),
        ('run_groups', 'status',               'text',                     ''),
        ('run_groups', 'started_at',           'timestamp with time zone', ''),
        ('run_groups', 'ended_at',             'timestamp with time zone', ''),
        ('run_groups', 'shard_count',          'integer',                  ''),
        ('run_groups', 'sandboxes_attempted',  'integer',                  ''),
        ('run_groups', 'sandboxes_succeeded',  'integer',                  ''),
        ('run_groups', 'partials',             'integer',                  ''),
        ('run_groups', 'readiness_failures',   'integer',                  ''),
        ('run_groups', 'timeouts',             'integer',                  ''),
        ('run_groups', 'http_errors',          'integer',                  ''),
        ('run_groups', 'network_errors',       'integer',                  ''),
        ('run_groups', 'other_errors',         'integer',                  ''),
        ('run_groups', 'p50_latency_ms',       'double precision',         ''),
        ('run_groups', 'p99_latency_ms',       'double precision',         ''),
        ('run_groups', 'error_message',        'text',                     ''),
        ('run_groups', 'tigris_prefix',        'text',                     ''),
        ('run_groups', 'meta',                 'jsonb',                    ''),
        ('run_groups', 'failures',             'integer',                  ''),
        ('run_groups', 'leaks',                'integer',                  ''),
        ('run_groups', 'time_to_50pct_live_ms',  'double precision',       ''),
        ('run_groups', 'time_to_90pct_live_ms',  'double precision',       ''),
        ('run_groups', 'time_to_99pct_live_ms',  'double precision',       ''),
        ('run_groups', 'time_to_100pct_live_ms', 'double precision',       ''),
        ('run_groups', 'time_to_peak_live_ms',   'double precision',       ''),
        ('run_groups', 'peak_live',              'integer',                ''),
        ('run_groups', 'peak_live_during_hold',  'integer',                ''),
        ('run_groups', 'sandbox_seconds',        'double precision',       ''),
        ('run_groups', 'cost_usd',               'double precision',       ''),
        ('run_groups', 'cost_estimate_usd',      'double precision',       ''),
        ('run_groups', 'updated_at',           'timestamp with time zone', 'NOT NULL DEFAULT now()')
    ) AS v(tbl, col, typ, extra)
    LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO have
          FROM pg_attribute a
         WHERE a.attrelid = to_regclass(c.tbl) AND a.attname = c.col
           AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            EXECUTE format('ALTER TABLE %I ADD COLUMN %I %s %s', c.tbl, c.col, c.typ, c.extra);
        ELSIF have <> c.typ THEN
            -- e.g. a seed table whose http_status was an integer: gRPC names need text.
            BEGIN
                EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE %s USING %I::%s',
                               c.tbl, c.col, c.typ, c.col, c.typ);
            EXCEPTION WHEN others THEN
                RAISE EXCEPTION 'loadgen schema: cannot convert %.% from % to %: %',
                    c.tbl, c.col, have, c.typ, SQLERRM
                    USING HINT = 'convert or drop the column by hand, then run `loadgen db migrate` again';
            END;
        END IF;
    END LOOP;
END $$;

-- Upserts need a unique index on exactly these keys (a legacy table may lack it).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i
         WHERE i.indrelid = 'sandbox_results'::regclass AND i.indisunique
           AND i.indnkeyatts = 2
           AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
                  FROM pg_attribute a
                 WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[]))
               = ARRAY['run_id', 'sandbox_idx']
    ) THEN
        CREATE UNIQUE INDEX sandbox_results_run_id_sandbox_idx_key ON sandbox_results (run_id, sandbox_idx);
    END IF;
END $$;

-- CHECK constraints: (table, name, definition). Must equal the enums in
-- loadgen/result.py (STATUSES, FAILURE_CLASSES, PHASES); tests/test_postgres_schema.py checks.
DO $$
DECLARE
    c record;
    con record;
BEGIN
    FOR c IN SELECT * FROM (VALUES
        ('runs', 'runs_status_check',
         $d$CHECK (status IN ('running', 'done', 'failed', 'interrupted'))$d$),
        ('sandbox_results', 'sandbox_results_status_check',
         $d$CHECK (status IN ('success', 'partial', 'readiness_failed', 'failed'))$d$),
        ('sandbox_results', 'sandbox_results_failure_class_check',
         $d$CHECK (failure_class IN ('timeout', 'http_error', 'network_error', 'other', 'generator_error'))$d$),
        ('sandbox_results', 'sandbox_results_destroy_failure_class_check',
         $d$CHECK (destroy_failure_class IN ('timeout', 'http_error', 'network_error', 'other', 'generator_error'))$d$),
        ('sandbox_results', 'sandbox_results_failed_phase_check',
         $d$CHECK (failed_phase IN ('create', 'readiness', 'liveness', 'destroy'))$d$)
    ) AS v(tbl, name, def)
    LOOP
        SELECT k.oid, k.convalidated, obj_description(k.oid, 'pg_constraint') AS applied
          INTO con
          FROM pg_constraint k
         WHERE k.conrelid = to_regclass(c.tbl) AND k.conname = c.name;
        IF FOUND AND con.applied IS NOT DISTINCT FROM c.def AND con.convalidated THEN
            CONTINUE;  -- up to date: no lock taken
        END IF;
        IF NOT FOUND OR con.applied IS DISTINCT FROM c.def THEN
            IF FOUND THEN
                EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', c.tbl, c.name);
            END IF;
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s NOT VALID', c.tbl, c.name, c.def);
            EXECUTE format('COMMENT ON CONSTRAINT %I ON %I IS %L', c.name, c.tbl, c.def);
        END IF;
        BEGIN
            EXECUTE format('ALTER TABLE %I VALIDATE CONSTRAINT %I', c.tbl, c.name);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'loadgen schema: existing rows of % break %; the constraint stays NOT VALID until they are fixed: SELECT * FROM % WHERE NOT (%)',
                c.tbl, c.name, c.tbl, substring(c.def FROM 'CHECK \((.*)\)$');
        END;
    END LOOP;
END $$;

-- Indexes: created only when missing (CREATE INDEX IF NOT EXISTS still locks the table).
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM (VALUES
        ('runs_provider_started_at_idx',
         'CREATE INDEX runs_provider_started_at_idx ON runs (provider, started_at DESC)'),
        ('runs_group_id_idx',
         'CREATE INDEX runs_group_id_idx ON runs (group_id)'),
        ('runs_running_idx',  -- stuck-run detection reads only running rows
         $d$CREATE INDEX runs_running_idx ON runs (last_heartbeat, started_at) WHERE status = 'running'$d$),
        ('sandbox_results_run_id_status_idx',
         'CREATE INDEX sandbox_results_run_id_status_idx ON sandbox_results (run_id, status)')
    ) AS v(name, ddl)
    LOOP
        IF to_regclass(c.name) IS NULL THEN
            EXECUTE c.ddl;
        END IF;
    END LOOP;
END $$;

-- stuck_runs: running, and silent for 5 minutes. A run that never sent a
-- heartbeat (last_heartbeat NULL) counts from its start.
DO $$
DECLARE
    def constant text := $d$
CREATE OR REPLACE VIEW stuck_runs AS
SELECT id, provider, host, group_id, shard_index, shard_count,
       started_at, last_heartbeat,
       now() - COALESCE(last_heartbeat, started_at) AS silent_for
  FROM runs
 WHERE status = 'running'
   AND (last_heartbeat < now() - interval '5 minutes'
        OR (last_heartbeat IS NULL AND started_at < now() - interval '5 minutes'))
$d$;
BEGIN
    IF to_regclass('stuck_runs') IS NULL
       OR obj_description(to_regclass('stuck_runs'), 'pg_class') IS DISTINCT FROM md5(def) THEN
        EXECUTE 'DROP VIEW IF EXISTS stuck_runs';
        EXECUTE def;
        EXECUTE format('COMMENT ON VIEW stuck_runs IS %L', md5(def));
    END IF;
END $$;

COMMIT;
