"""Shared fixtures: one embedded PostgreSQL per test session, one fresh database per test.

The server comes from the pgserver wheel (no DATABASE_URL needed); with DATABASE_URL set we use that
server instead. Each test gets its own database cloned from a migrated template, so tests never see
each other's rows and migrations run once.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings

from api.database import EmbeddedPostgres
from migrations.runner import migrate_url

# CI runs the same examples every time (a red run must be reproducible); locally, hypothesis
# explores new ones and remembers failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# The suite runs like a deployment that has its secrets key in the environment (DATABASE_URL set,
# so no key file is made for it); CLI commands and `splitledger serve` started by tests inherit it.
os.environ.setdefault("SPLITLEDGER_SECRETS_KEY", "dGVzdC1zdWl0ZS1zZWNyZXRzLWtleS0zMi1ieXRlcyE=")

TEMPLATE = "splitledger_template"
_counter = itertools.count(1)


class PostgresForTests:
    def __init__(self, admin_url: str, url_for) -> None:
        self.admin_url = admin_url
        self._url_for = url_for

    def url(self, database: str) -> str:
        return self._url_for(database)


def _url_with_database(url: str, database: str) -> str:
    # postgresql://user:pw@host:port/db?params -> swap db
    head, _, rest = url.partition("://")
    netloc, _slash, path = rest.partition("/")
    _, q, query = path.partition("?")
    return f"{head}://{netloc}/{database}{q}{query}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresForTests]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield PostgresForTests(external, lambda db: _url_with_database(external, db))
        return
    data_dir = Path(tempfile.mkdtemp(prefix="splitledger-test-")) / "pgdata"
    server = EmbeddedPostgres(data_dir, cleanup="delete")
    admin_url = server.start()
    yield PostgresForTests(admin_url, server.uri)
    server.stop()


@pytest.fixture(scope="session")
async def template_database(postgres: PostgresForTests) -> str:
    admin = await asyncpg.connect(postgres.admin_url)
    try:
        # Test data is disposable: do not wait for the WAL flush on every commit.
        await admin.execute("ALTER SYSTEM SET synchronous_commit = off")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    await migrate_url(postgres.url(TEMPLATE))
    return TEMPLATE


async def create_test_database(postgres: PostgresForTests, template: str) -> str:
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(postgres.admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
    finally:
        await admin.close()
    return name


async def drop_test_database(postgres: PostgresForTests, name: str) -> None:
    admin = await asyncpg.connect(postgres.admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def database_url(postgres: PostgresForTests, template_database: str) -> AsyncIterator[str]:
    name = await create_test_database(postgres, template_database)
    yield postgres.url(name)
    await drop_test_database(postgres, name)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    from api.database import create_pool

    pool = await create_pool(database_url, min_size=1, max_size=8)
    yield pool
    await pool.close()
