"""On a Citus cluster the migrations distribute every tenant table by platform_id, co-located, keep
the global tables as reference tables, and replace the defences Citus cannot run (migrations/citus.py)."""

from __future__ import annotations

import asyncpg
import pytest

from migrations.citus import CITUS_DEFENCES, COORDINATOR_LOCAL_TABLES, REFERENCE_TABLES
from migrations.runner import Migration, load_migrations, migrate

pytestmark = pytest.mark.citus

FOREIGN_KEY = "23503"
CHECK = "23514"


async def placement_problems(conn: asyncpg.Connection) -> list[str]:
    """What is not where it belongs: every table with platform_id hash-distributed by it in one
    co-location group, the named and the platform-less tables reference tables, nothing else local."""
    rows = await conn.fetch(
        """
        SELECT c.relname,
               EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'platform_id'
                        AND NOT a.attisdropped) AS tenant,
               d.partmethod::text AS partmethod, d.repmodel::text AS repmodel, d.colocationid,
               CASE WHEN d.partmethod = 'h' THEN column_to_column_name(d.logicalrelid, d.partkey) END AS column
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_dist_partition d ON d.logicalrelid = c.oid
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
        """
    )
    problems = []
    groups = set()
    for r in rows:
        name = r["relname"]
        if name in COORDINATOR_LOCAL_TABLES:
            if r["partmethod"] is not None:
                problems.append(f"{name}: should stay on the coordinator")
        elif r["tenant"] and name not in REFERENCE_TABLES:
            if (r["partmethod"], r["column"]) != ("h", "platform_id"):
                problems.append(f"{name}: not distributed by platform_id")
            else:
                groups.add(r["colocationid"])
        elif (r["partmethod"], r["repmodel"]) != ("n", "t"):
            problems.append(f"{name}: not a reference table")
    if len(groups) > 1:
        problems.append(f"tenant tables in {len(groups)} co-location groups")
    return problems


async def tenant_tables(conn: asyncpg.Connection) -> list[str]:
    return [
        r["relname"]
        for r in await conn.fetch(
            """
            SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attname = 'platform_id'
               AND NOT a.attisdropped AND c.relname <> ALL ($1::text[])
            """,
            list(REFERENCE_TABLES),
        )
    ]


async def test_every_tenant_table_is_distributed_by_platform_id_in_one_colocation_group(cconn):
    tables = await tenant_tables(cconn)
    assert len(tables) >= 20 and {"accounts", "postings", "journal_entries", "orders", "events"} <= set(tables)
    assert await placement_problems(cconn) == []
    reference = await cconn.fetch(
        "SELECT logicalrelid::text AS name FROM pg_dist_partition WHERE repmodel = 't' ORDER BY 1"
    )
    assert {"platforms", "doku_client_ids"} <= {r["name"] for r in reference}
    # the check sees a tenant table left local (so it would see one a migration forgot)
    await cconn.execute("CREATE TABLE left_local (platform_id text NOT NULL, x int)")
    assert await placement_problems(cconn) == ["left_local: not distributed by platform_id"]


LATER = Migration(
    9001,
    "9001_seller_notes.sql",
    """
    CREATE TABLE note_kinds (kind text PRIMARY KEY);
    INSERT INTO note_kinds VALUES ('memo'), ('dispute');
    CREATE TABLE seller_notes (
        platform_id text NOT NULL REFERENCES platforms (platform_id),
        note_id bigint GENERATED ALWAYS AS IDENTITY,
        seller_id text NOT NULL,
        kind text NOT NULL REFERENCES note_kinds (kind),
        body text NOT NULL,
        PRIMARY KEY (platform_id, note_id),
        FOREIGN KEY (platform_id, seller_id) REFERENCES sellers (platform_id, seller_id)
    );
    CREATE FUNCTION seller_notes_say_something() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.body = '' THEN
            RAISE EXCEPTION 'empty note' USING ERRCODE = 'check_violation', CONSTRAINT = 'seller_notes_body';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER seller_notes_body BEFORE INSERT ON seller_notes
        FOR EACH ROW EXECUTE FUNCTION seller_notes_say_something();
    ALTER TABLE sellers ADD COLUMN note_count integer NOT NULL DEFAULT 0;
    """,
)


async def test_a_later_migration_s_tables_are_distributed_with_their_keys_and_triggers(cconn):
    before = await cconn.fetch("SELECT logicalrelid::text, colocationid FROM pg_dist_partition ORDER BY 1")
    assert await migrate(cconn, [*load_migrations(), LATER]) == ["9001_seller_notes.sql"]
    assert await placement_problems(cconn) == []
    colocated = await cconn.fetchval(
        "SELECT count(DISTINCT colocationid) FROM pg_dist_partition"
        " WHERE logicalrelid IN ('seller_notes'::regclass, 'accounts'::regclass, 'sellers'::regclass)"
    )
    assert colocated == 1
    await cconn.execute("INSERT INTO platforms (platform_id, name) VALUES ('m1', 'M1')")
    await cconn.execute("INSERT INTO sellers (platform_id, seller_id, name) VALUES ('m1', 's1', 'S1')")
    # the identity column, the row trigger and every key work on the shards
    with pytest.raises(asyncpg.PostgresError) as raised:
        await cconn.execute(
            "INSERT INTO seller_notes (platform_id, seller_id, kind, body) VALUES ('m1', 'nope', 'memo', 'x')"
        )
    assert raised.value.sqlstate == FOREIGN_KEY  # no such seller on the platform
    with pytest.raises(asyncpg.PostgresError) as raised:
        await cconn.execute(
            "INSERT INTO seller_notes (platform_id, seller_id, kind, body) VALUES ('nobody', 'nope', 'memo', 'x')"
        )
    assert raised.value.sqlstate == FOREIGN_KEY  # no such platform
    ids = [
        await cconn.fetchval(
            "INSERT INTO seller_notes (platform_id, seller_id, kind, body) VALUES ('m1', 's1', 'memo', $1)"
            " RETURNING note_id",
            body,
        )
        for body in ("first", "second")
    ]
    assert ids[1] > ids[0]
    with pytest.raises(asyncpg.PostgresError) as raised:
        await cconn.execute(
            "INSERT INTO seller_notes (platform_id, seller_id, kind, body) VALUES ('m1', 's1', 'memo', '')"
        )
    assert raised.value.sqlstate == CHECK  # the row trigger runs on the shard
    with pytest.raises(asyncpg.PostgresError) as raised:
        await cconn.execute(
            "INSERT INTO seller_notes (platform_id, seller_id, kind, body) VALUES ('m1', 's1', 'rant', 'x')"
        )
    assert raised.value.sqlstate == FOREIGN_KEY  # to the reference table of kinds
    # and again: nothing to do, nothing changed
    assert await migrate(cconn, [*load_migrations(), LATER]) == []
    after = await cconn.fetch("SELECT logicalrelid::text, colocationid FROM pg_dist_partition ORDER BY 1")
    assert [tuple(r) for r in after] == sorted(
        [tuple(r) for r in before]
        + [("note_kinds", after_colocation(after, "note_kinds")), ("seller_notes", after_colocation(after, "accounts"))]
    )


def after_colocation(rows: list[asyncpg.Record], table: str) -> int:
    return next(r["colocationid"] for r in rows if r["logicalrelid"] == table)


async def test_the_defences_citus_cannot_run_are_replaced_on_every_shard(cconn):
    with_transition_tables = await cconn.fetch(
        """
        SELECT t.tgrelid::regclass::text AS relation, t.tgname FROM pg_trigger t
          JOIN pg_dist_partition d ON d.logicalrelid = t.tgrelid
         WHERE t.tgnewtable IS NOT NULL OR t.tgoldtable IS NOT NULL
        """
    )
    assert with_transition_tables == []
    for table, name, kind, _ in CITUS_DEFENCES:
        catalog = (
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass AND tgname LIKE '" + name + "%%'"
            if kind == "trigger"
            else "SELECT count(*) FROM pg_constraint WHERE conrelid = '%s'::regclass AND conname LIKE '" + name + "%%'"
        )
        on_shards = await cconn.fetch("SELECT success, result FROM run_command_on_shards($1, $2)", table, catalog)
        assert len(on_shards) >= 2
        assert {(r["success"], r["result"]) for r in on_shards} == {(True, "1")}, (table, name)
