# Exact executions per status, maintained by the database in the transaction of every change.
#
# The home page shows exact counts; counting a million executions on every view costs
# 0.2-0.4 s. Here every INSERT, DELETE and status UPDATE of an execution row appends a
# delta row (+1 / -1 per status) in the same transaction, whichever code path wrote it (the
# engine's ORM saves, its bulk timer UPDATE ... FROM (VALUES ...), cascaded deletes, the
# retention purge, a shell). Appending never waits for another transaction, so concurrent
# writers neither block nor deadlock on a hot counter row; now and then a writer folds the
# rows it can lock (SKIP LOCKED) into one row per status. The sum of the rows per status is
# the exact count at any snapshot (executions.queries.console.execution_counts_by_status).
#
# PostgreSQL only: on SQLite (embedded mode, no performance target) the page counts the rows.

from django.db import migrations

COMPACT_EVERY = 64  # delta rows between two foldings, roughly

CREATE = f"""
CREATE TABLE executions_status_count (
    id bigserial PRIMARY KEY,
    status varchar(16) NOT NULL,
    n bigint NOT NULL
);

CREATE FUNCTION executions_status_count_fold() RETURNS void LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM executions_status_count
         WHERE id IN (SELECT id FROM executions_status_count FOR UPDATE SKIP LOCKED)
        RETURNING status, n
    )
    INSERT INTO executions_status_count (status, n)
    SELECT status, SUM(n) FROM gone GROUP BY status HAVING SUM(n) <> 0
$$;

CREATE FUNCTION executions_status_count_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    first_id bigint;
    last_id bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO executions_status_count (status, n) VALUES (NEW.status, 1) RETURNING id INTO first_id;
        last_id := first_id;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO executions_status_count (status, n) VALUES (OLD.status, -1) RETURNING id INTO first_id;
        last_id := first_id;
    ELSE
        INSERT INTO executions_status_count (status, n) VALUES (OLD.status, -1) RETURNING id INTO first_id;
        INSERT INTO executions_status_count (status, n) VALUES (NEW.status, 1) RETURNING id INTO last_id;
    END IF;
    IF last_id / {COMPACT_EVERY} > (first_id - 1) / {COMPACT_EVERY} THEN
        PERFORM executions_status_count_fold();
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION executions_status_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM executions_status_count;
    RETURN NULL;
END
$$;

LOCK TABLE executions_execution IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER executions_status_count_insert AFTER INSERT ON executions_execution
    FOR EACH ROW EXECUTE FUNCTION executions_status_count_row();
CREATE TRIGGER executions_status_count_delete AFTER DELETE ON executions_execution
    FOR EACH ROW EXECUTE FUNCTION executions_status_count_row();
-- The WHEN clause is evaluated without calling the function: the checkpoint's UPDATEs,
-- which leave the status alone, pay nothing.
CREATE TRIGGER executions_status_count_update AFTER UPDATE OF status ON executions_execution
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION executions_status_count_row();
CREATE TRIGGER executions_status_count_truncate AFTER TRUNCATE ON executions_execution
    FOR EACH STATEMENT EXECUTE FUNCTION executions_status_count_truncate();

INSERT INTO executions_status_count (status, n)
SELECT status, COUNT(*) FROM executions_execution GROUP BY status;
"""

DROP = """
DROP TRIGGER IF EXISTS executions_status_count_truncate ON executions_execution;
DROP TRIGGER IF EXISTS executions_status_count_update ON executions_execution;
DROP TRIGGER IF EXISTS executions_status_count_delete ON executions_execution;
DROP TRIGGER IF EXISTS executions_status_count_insert ON executions_execution;
DROP FUNCTION IF EXISTS executions_status_count_truncate();
DROP FUNCTION IF EXISTS executions_status_count_row();
DROP FUNCTION IF EXISTS executions_status_count_fold();
DROP TABLE IF EXISTS executions_status_count;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0013_execution_labels"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
