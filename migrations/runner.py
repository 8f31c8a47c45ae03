"""Forward-only SQL migrations.

Rules: files are ``NNNN_<what>.sql`` in this package, applied in order, each in its own
transaction; a session advisory lock keeps two processes from migrating at once; every applied
file's SHA-256 is kept in ``schema_migrations`` and the runner refuses to go on when an applied file
was edited afterwards (write a new migration instead).

On a Citus coordinator (the ``citus`` extension is in the database) the same migrations make a
distributed schema (``migrations.citus``): a database not distributed yet gets every migration on
plain tables and is then distributed in one transaction; on a distributed one, each new migration
runs with Citus's settings for DDL in a transaction, and what it created is distributed in the same
transaction, before the next migration sees it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from migrations import citus

# Any constant works as long as every splitledger process uses the same one.
MIGRATION_LOCK_KEY = 0x5B117_1ED6E5

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    code = "migration_error"


class MigrationChecksumMismatch(MigrationError):
    code = "migration_checksum_mismatch"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers: {versions}")
    return found


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations; return the names applied."""
    migrations = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
        for migration in migrations:
            row = applied.get(migration.version)
            if row is not None and row["checksum"] != migration.checksum:
                raise MigrationChecksumMismatch(
                    f"{migration.name} was edited after it was applied (write a new migration instead)"
                )
        on_citus = await citus.is_citus(conn)
        distributed = on_citus and await citus.has_distributed_tables(conn)
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                if distributed:
                    await citus.prepare_transaction(conn)
                await conn.execute(migration.sql)
                if distributed:
                    await citus.distribute(conn)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            done.append(migration.name)
        if on_citus:
            async with conn.transaction():
                await citus.prepare_transaction(conn)
                await citus.distribute(conn)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def migrate_url(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
