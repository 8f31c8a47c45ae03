"""Integration fixtures: a raw connection to a fresh migrated database, and an empty database."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ledger.store.driver import Connection

_counter = itertools.count(1)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url, connection_class=Connection)
    yield connection
    await connection.close()


@pytest.fixture
async def empty_database_url(postgres) -> AsyncIterator[str]:
    """A database no migration has touched (for the migration runner's own tests)."""
    name = f"empty_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(postgres.admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield postgres.url(name)
    admin = await asyncpg.connect(postgres.admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
