"""Shared fixtures: one embedded PostgreSQL per test session, one fresh database per test.

The server comes from the pgserver wheel (no DATABASE_URL needed); with DATABASE_URL set we use that
server instead. Each test gets its own database cloned from a migrated template, so tests never see
each other's rows and migrations run once.

A Citus coordinator as DATABASE_URL (the extension installed in the database the URL names, with its
workers in pg_dist_node; docs/scale-out.md) runs the same suite on the cluster. CREATE DATABASE …
TEMPLATE clones one server's database, not a cluster's shards, so the template is built on every
node (an empty database with the extension on each, the workers registered on the coordinator's,
then migrated: distributed), closed to connections, and each test's database is cloned from it on
every node at once: the clones hold the same shards and metadata, and the coordinator's clone
reaches the workers' clones by their (shared) name. Tests marked ``citus`` run only then.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings

from api.database import EmbeddedPostgres
from migrations.runner import migrate, migrate_url

# CI runs the same examples every time (a red run must be reproducible); locally, hypothesis
# explores new ones and remembers failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# The suite runs like a deployment that has its secrets key in the environment (DATABASE_URL set,
# so no key file is made for it); CLI commands and `splitledger serve` started by tests inherit it.
os.environ.setdefault("SPLITLEDGER_SECRETS_KEY", "dGVzdC1zdWl0ZS1zZWNyZXRzLWtleS0zMi1ieXRlcyE=")

# Two suites against one external server (or cluster) at once each need their own template.
TEMPLATE = os.environ.get("SPLITLEDGER_TEST_TEMPLATE", "splitledger_template")
_counter = itertools.count(1)


# Shards per distributed table in the test cluster's databases (Citus's default is 32): enough for
# every worker to hold some, few enough to keep each database small to clone.
CITUS_TEST_SHARD_COUNT = 4


class PostgresForTests:
    def __init__(self, admin_url: str, url_for, citus_nodes: list[str] | None = None) -> None:
        self.admin_url = admin_url
        self._url_for = url_for
        # Admin URLs of every node of a Citus cluster, the coordinator first; None on one server.
        self.citus_nodes = citus_nodes

    def url(self, database: str) -> str:
        return self._url_for(database)

    @property
    def citus(self) -> bool:
        return self.citus_nodes is not None


def _url_with_netloc(url: str, host: str, port: int) -> str:
    head, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    user, at, _hostport = netloc.rpartition("@")
    return f"{head}://{user}{at}{host}:{port}{slash}{path}"


async def _citus_nodes(admin_url: str) -> list[str] | None:
    """Every node's admin URL when admin_url is a Citus coordinator with workers; else None."""
    admin = await asyncpg.connect(admin_url)
    try:
        if not await admin.fetchval("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')"):
            return None
        nodes = await admin.fetch(
            "SELECT nodename, nodeport, groupid FROM pg_dist_node WHERE noderole = 'primary' AND isactive"
            " ORDER BY groupid"
        )
    finally:
        await admin.close()
    workers = [_url_with_netloc(admin_url, n["nodename"], n["nodeport"]) for n in nodes if n["groupid"] != 0]
    return [admin_url, *workers]


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
        nodes = asyncio.run(_citus_nodes(external))
        yield PostgresForTests(external, lambda db: _url_with_database(external, db), nodes)
        return
    data_dir = Path(tempfile.mkdtemp(prefix="splitledger-test-")) / "pgdata"
    server = EmbeddedPostgres(data_dir, cleanup="delete")
    admin_url = server.start()
    yield PostgresForTests(admin_url, server.uri)
    server.stop()


@pytest.fixture(scope="session")
async def template_database(postgres: PostgresForTests) -> str:
    if postgres.citus_nodes is not None:
        return await _citus_template(postgres, postgres.citus_nodes)
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


async def _on_node(url: str, *statements: str) -> None:
    admin = await asyncpg.connect(url)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


async def _drop_on_node(node: str, name: str) -> None:
    # Citus's maintenance daemon of a database may start again between WITH (FORCE)'s terminations
    # and the drop itself: try again.
    for attempt in range(50):
        try:
            await _on_node(node, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        except asyncpg.exceptions.ObjectInUseError:
            if attempt == 49:
                raise
            await asyncio.sleep(0.1)


async def _citus_template(postgres: PostgresForTests, nodes: list[str]) -> str:
    """Build the migrated (distributed) template on every node, then close it to connections."""
    await asyncio.gather(
        *(
            _on_node(
                node,
                "ALTER SYSTEM SET synchronous_commit = off",
                "SELECT pg_reload_conf()",
                f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)",
                f"CREATE DATABASE {TEMPLATE}",
            )
            for node in nodes
        )
    )
    await asyncio.gather(*(_on_node(_url_with_database(node, TEMPLATE), "CREATE EXTENSION citus") for node in nodes))
    coordinator = await asyncpg.connect(postgres.url(TEMPLATE))
    try:
        admin = await asyncpg.connect(postgres.admin_url)
        try:
            registered = await admin.fetch(
                "SELECT nodename, nodeport, groupid FROM pg_dist_node WHERE noderole = 'primary' AND isactive"
            )
        finally:
            await admin.close()
        for node in sorted(registered, key=lambda n: n["groupid"]):
            register = "citus_set_coordinator_host" if node["groupid"] == 0 else "citus_add_node"
            await coordinator.execute(f"SELECT {register}($1, $2)", node["nodename"], node["nodeport"])
        await coordinator.execute(f"SET citus.shard_count = {CITUS_TEST_SHARD_COUNT}")
        await migrate(coordinator)
    finally:
        await coordinator.close()
    for node in nodes:
        await _close_template(node)
    return TEMPLATE


async def _close_template(node: str) -> None:
    """No connection may be open to a template while it is cloned: Citus's maintenance daemon and
    the connections between nodes go, and none comes back."""
    admin = await asyncpg.connect(node)
    try:
        await admin.execute(f"ALTER DATABASE {TEMPLATE} ALLOW_CONNECTIONS false")
        for _ in range(100):
            left = await admin.fetchval(
                "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                TEMPLATE,
            )
            if not left:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"connections to {TEMPLATE} on {node} do not go away")
    finally:
        await admin.close()


async def create_test_database(postgres: PostgresForTests, template: str) -> str:
    name = f"t_{os.getpid()}_{next(_counter)}"
    if postgres.citus_nodes is not None:
        await asyncio.gather(
            *(
                _on_node(node, f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
                for node in postgres.citus_nodes
            )
        )
        return name
    admin = await asyncpg.connect(postgres.admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
    finally:
        await admin.close()
    return name


async def drop_test_database(postgres: PostgresForTests, name: str) -> None:
    if postgres.citus_nodes is not None:
        await asyncio.gather(*(_drop_on_node(node, name) for node in postgres.citus_nodes))
        return
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
