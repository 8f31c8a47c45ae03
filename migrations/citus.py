"""The same schema on a Citus cluster: every tenant table distributed by ``platform_id``.

``migrations.runner.migrate`` calls ``distribute`` whenever the ``citus`` extension is present in the
database (docs/scale-out.md says how to run on Citus). Nothing here is a list of the tenant tables:
they are read from the catalog, so a table a later migration adds is distributed like the others.

* every table of the schema with a ``platform_id`` column is distributed by it, all in one
  co-location group (a platform's rows of every table live in the same shard group, on one node);
* ``platforms`` and the Client-Id routing table ``doku_client_ids`` are reference tables (a copy on
  every node), and so is any table without ``platform_id`` (a table that is not tenant-keyed is a
  global lookup table), except the coordinator-local ones below;
* tables are distributed in foreign-key order (referenced first), so every foreign key between
  them stays: a key between co-located tables by platform_id, or from a tenant table to a
  reference table, is one Citus enforces on each shard;
* the defences Citus cannot run are replaced (``CITUS_UNSUPPORTED_TRIGGERS``, ``CITUS_DEFENCES``):
  statement-level triggers with transition tables are not run on shards of distributed tables
  (citusdata/citus#5705: only row-level triggers acting on shard-local data are), so 0010's
  set-based ledger checks and 0007's set-based entry hashing give way to row-level triggers and to
  the foreign keys 0010 had dropped. Every replacement reads and writes only rows of the row's own
  platform, so it never leaves the shard group the row is in.

Idempotent: a run on a distributed database distributes what is new and changes nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

DISTRIBUTION_COLUMN = "platform_id"

# Global tables that every node reads (the routing of DOKU's Client-Id to a platform has a
# platform_id column, but it is looked up by client_id, before any platform is known).
REFERENCE_TABLES = ("platforms", "doku_client_ids")

# Tables that stay on the coordinator only: the runner's own bookkeeping, and 0010's per-transaction
# worklist of the set-based checks (unused on Citus, whose checks are per row on the shards).
COORDINATOR_LOCAL_TABLES = ("schema_migrations", "ledger_pending_checks")

# Statement-level triggers with transition tables: Citus does not run them on distributed tables.
CITUS_UNSUPPORTED_TRIGGERS = (
    ("postings", "postings_checked"),  # 0010: set-based posting checks
    ("journal_entries", "journal_entries_checked"),  # 0010: an entry's platform exists
    ("accounts", "accounts_checked"),  # 0010: feeds the commit-time check of balances
    ("postings", "postings_hash_entries"),  # 0007: entry hashes, set-based
)

# On Citus, an entry's hash is computed at commit from its rows (all on its shard), once per entry:
# the same canonical text as 0007's ledger_hash_entries (ledger/chain.py), the same table.
HASH_ENTRY_FUNCTION = r"""
CREATE OR REPLACE FUNCTION ledger_hash_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO entry_hashes (platform_id, entry_id, hash)
    SELECT e.platform_id, e.entry_id,
           sha256(convert_to(concat_ws(E'\n',
               'splitledger-entry-v1',
               ledger_field(e.platform_id),
               e.entry_id::text,
               ledger_field(e.kind),
               ledger_field(e.idempotency_key),
               encode(e.content_hash, 'hex'),
               ledger_field(e.external_ref),
               e.multi_currency::text,
               ledger_micros(e.effective_at),
               ledger_micros(e.created_at),
               ledger_field(e.metadata::text),
               p.lines), 'UTF8'))
      FROM journal_entries e
      JOIN (SELECT n.platform_id, n.entry_id,
                   string_agg(concat_ws(',', n.posting_id, n.account_id, n.amount, ledger_field(n.currency),
                                        n.balance_after, n.account_version, ledger_micros(n.created_at)),
                              E'\n' ORDER BY n.posting_id) AS lines
              FROM postings n
             WHERE n.platform_id = NEW.platform_id AND n.entry_id = NEW.entry_id
             GROUP BY n.platform_id, n.entry_id) AS p
        ON p.platform_id = e.platform_id AND p.entry_id = e.entry_id
     WHERE e.platform_id = NEW.platform_id AND e.entry_id = NEW.entry_id
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$
"""

# (table, name, kind, DDL): what Citus runs instead. Constraints are 0001's foreign keys (0010
# replaced them by its statement-level checks under the same names); triggers are 0001's row-level
# checks, whose functions 0010 kept in the schema for this, and the per-entry hash.
CITUS_DEFENCES = (
    (
        "journal_entries",
        "journal_entries_platform_id_fkey",
        "constraint",
        "ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_platform_id_fkey"
        " FOREIGN KEY (platform_id) REFERENCES platforms (platform_id)",
    ),
    (
        "postings",
        "postings_platform_id_entry_id_fkey",
        "constraint",
        "ALTER TABLE postings ADD CONSTRAINT postings_platform_id_entry_id_fkey"
        " FOREIGN KEY (platform_id, entry_id) REFERENCES journal_entries (platform_id, entry_id)",
    ),
    (
        "postings",
        "postings_platform_id_account_id_fkey",
        "constraint",
        "ALTER TABLE postings ADD CONSTRAINT postings_platform_id_account_id_fkey"
        " FOREIGN KEY (platform_id, account_id) REFERENCES accounts (platform_id, account_id)",
    ),
    (
        "postings",
        "postings_check",
        "trigger",
        "CREATE TRIGGER postings_check BEFORE INSERT ON postings FOR EACH ROW EXECUTE FUNCTION ledger_check_posting()",
    ),
    (
        "journal_entries",
        "journal_entries_balanced",
        "trigger",
        "CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_committed()",
    ),
    (
        "postings",
        "postings_committed",
        "trigger",
        "CREATE CONSTRAINT TRIGGER postings_committed AFTER INSERT ON postings"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_posting_committed()",
    ),
    (
        "accounts",
        "accounts_balance_matches_postings",
        "trigger",
        "CREATE CONSTRAINT TRIGGER accounts_balance_matches_postings AFTER UPDATE OF balance, version ON accounts"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_account_committed()",
    ),
    (
        "journal_entries",
        "journal_entries_hashed",
        "trigger",
        "CREATE CONSTRAINT TRIGGER journal_entries_hashed AFTER INSERT ON journal_entries"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_hash_entry()",
    ),
)


class CitusSchemaError(Exception):
    code = "citus_schema_error"


async def is_citus(conn: asyncpg.Connection) -> bool:
    """Whether this database is a Citus coordinator (the extension is installed in it)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')"))


async def has_distributed_tables(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT FROM pg_dist_partition)"))


async def prepare_transaction(conn: asyncpg.Connection) -> None:
    """Settings for a migration or distribution transaction on a cluster (SET LOCAL: this one only).

    * sequential: DDL and data changes over many shards in one transaction use one connection per
      node, so a later statement never needs to see what a parallel one did on another connection;
    * a new table that references a reference table stays a plain table until it is distributed
      (Citus would otherwise turn it into a "Citus local table", which cannot be distributed once
      it has an identity column).
    """
    await conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
    await conn.execute("SET LOCAL citus.enable_local_reference_table_foreign_keys TO off")


async def distribute(conn: asyncpg.Connection) -> list[str]:
    """Put Citus's defences in place and distribute every table not distributed yet.

    Run inside the caller's transaction (``prepare_transaction`` first). Returns what it did, one
    line per table (``<table>: distributed by platform_id`` or ``<table>: reference table``).
    """
    await _put_defences_in_place(conn)
    tables = await conn.fetch(
        """
        SELECT c.oid, c.relname,
               EXISTS (SELECT FROM pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attname = $1 AND NOT a.attisdropped) AS tenant,
               EXISTS (SELECT FROM pg_dist_partition d WHERE d.logicalrelid = c.oid) AS citus
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        """,
        DISTRIBUTION_COLUMN,
    )
    pending = {
        r["relname"]: ("reference" if r["relname"] in REFERENCE_TABLES or not r["tenant"] else "distributed")
        for r in tables
        if not r["citus"] and r["relname"] not in COORDINATOR_LOCAL_TABLES
    }
    if not pending:
        return []
    references = await conn.fetch(
        """
        SELECT DISTINCT c.conrelid::regclass::text AS referencing, c.confrelid::regclass::text AS referenced
          FROM pg_constraint c
         WHERE c.contype = 'f' AND c.conrelid <> c.confrelid
           AND c.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
        """
    )
    anchor = await conn.fetchval(
        """
        SELECT logicalrelid::regclass::text FROM pg_dist_partition
         WHERE partmethod = 'h' ORDER BY colocationid, logicalrelid LIMIT 1
        """
    )
    done = []
    for table in _referenced_first(pending, [(r["referencing"], r["referenced"]) for r in references]):
        if pending[table] == "reference":
            await conn.execute("SELECT create_reference_table($1)", table)
            done.append(f"{table}: reference table")
            continue
        if anchor is None:
            await conn.execute("SELECT create_distributed_table($1, $2)", table, DISTRIBUTION_COLUMN)
            anchor = table
        else:
            await conn.execute(
                "SELECT create_distributed_table($1, $2, colocate_with => $3)", table, DISTRIBUTION_COLUMN, anchor
            )
        done.append(f"{table}: distributed by {DISTRIBUTION_COLUMN}")
    return done


def _referenced_first(pending: dict[str, str], references: Iterable[tuple[str, str]]) -> list[str]:
    """The pending tables in an order where every table comes after the pending tables it references
    (reference tables, which reference only reference tables, before the distributed ones)."""
    needs: dict[str, set[str]] = {t: set() for t in pending}
    for referencing, referenced in references:
        if referencing in needs and referenced in pending:
            needs[referencing].add(referenced)
    order: list[str] = []
    placed: set[str] = set()
    # Deterministic: reference tables first, then by name, each once what it references is placed.
    candidates = sorted(pending, key=lambda t: (pending[t] != "reference", t))
    while len(order) < len(candidates):
        ready = [t for t in candidates if t not in placed and needs[t] <= placed]
        if not ready:
            cycle = sorted(t for t in candidates if t not in placed)
            raise CitusSchemaError(f"foreign keys form a cycle between {cycle}: distribute them by hand")
        order.append(ready[0])
        placed.add(ready[0])
    return order


async def _put_defences_in_place(conn: asyncpg.Connection) -> None:
    triggers = {
        (r["relname"], r["tgname"])
        for r in await conn.fetch(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
        )
    }
    constraints = {
        (r["relname"], r["conname"])
        for r in await conn.fetch(
            "SELECT c.relname, k.conname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
            " WHERE k.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
        )
    }
    for table, trigger in CITUS_UNSUPPORTED_TRIGGERS:
        if (table, trigger) in triggers:
            await conn.execute(f"DROP TRIGGER {trigger} ON {table}")
    await conn.execute(HASH_ENTRY_FUNCTION)
    for table, name, kind, ddl in CITUS_DEFENCES:
        present = (table, name) in (constraints if kind == "constraint" else triggers)
        if not present:
            await conn.execute(ddl)
    # Anything else Citus cannot run must not be left to fail at the first write.
    unsupported = await conn.fetch(
        """
        SELECT c.relname, t.tgname FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND (t.tgnewtable IS NOT NULL OR t.tgoldtable IS NOT NULL)
           AND c.relname <> ALL ($1::text[])
        """,
        list(COORDINATOR_LOCAL_TABLES),
    )
    if unsupported:
        names = ", ".join(f"{r['tgname']} on {r['relname']}" for r in unsupported)
        raise CitusSchemaError(
            f"triggers with transition tables cannot run on distributed tables: {names}"
            " (add their row-level replacement to migrations/citus.py CITUS_DEFENCES)"
        )
