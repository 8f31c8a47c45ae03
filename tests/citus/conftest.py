"""Citus-only fixtures: a cluster given by URL, one fresh distributed database per test.

The cluster is DATABASE_URL when that names a Citus coordinator (the whole suite then runs on it),
else CITUS_URL (these tests on the cluster, the rest on the embedded PostgreSQL). Without either,
every test marked ``citus`` is skipped: they are the suite's only opt-in tests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ledger.store.driver import Connection
from tests.conftest import (
    PostgresForTests,
    _citus_nodes,
    _citus_template,
    _url_with_database,
    create_test_database,
    drop_test_database,
)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> PostgresForTests:
    if os.environ.get("DATABASE_URL"):
        postgres: PostgresForTests = request.getfixturevalue("postgres")
        if postgres.citus:
            return postgres
    url = os.environ.get("CITUS_URL")
    if not url:
        pytest.skip("needs a Citus cluster: set CITUS_URL (or DATABASE_URL) to a coordinator's URL")
    nodes = asyncio.run(_citus_nodes(url))
    if nodes is None:
        pytest.fail(f"CITUS_URL {url} is not a Citus coordinator (no citus extension in its database)")
    return PostgresForTests(url, lambda db: _url_with_database(url, db), nodes)


@pytest.fixture(scope="session")
def cluster_template(cluster: PostgresForTests, request: pytest.FixtureRequest) -> str:
    if os.environ.get("DATABASE_URL") and cluster is request.getfixturevalue("postgres"):
        template: str = request.getfixturevalue("template_database")
        return template
    assert cluster.citus_nodes is not None
    return asyncio.run(_citus_template(cluster, cluster.citus_nodes))


@pytest.fixture
async def cluster_url(cluster: PostgresForTests, cluster_template: str) -> AsyncIterator[str]:
    name = await create_test_database(cluster, cluster_template)
    yield cluster.url(name)
    await drop_test_database(cluster, name)


@pytest.fixture
async def cconn(cluster_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(cluster_url, connection_class=Connection)
    yield connection
    await connection.close()
