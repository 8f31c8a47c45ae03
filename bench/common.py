"""Shared setup for benchmarks: a throwaway embedded PostgreSQL (or $DATABASE_URL) with migrations."""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from api.database import EmbeddedPostgres
from migrations.runner import migrate_url


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    external = os.environ.get("DATABASE_URL")
    embedded = None
    if external:
        admin_url = external
    else:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="splitledger-bench-")) / "pgdata", cleanup="delete")
        admin_url = await asyncio.to_thread(embedded.start)
    name = f"bench_{os.getpid()}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = embedded.uri(name) if embedded else external.rsplit("/", 1)[0] + f"/{name}"
    await migrate_url(url)
    try:
        yield url
    finally:
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
        if embedded is not None:
            embedded.stop()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
