"""The framework alone, for ``bench/bench_request_path.py``: litestar on granian with an asyncpg pool
and one route doing what ``GET /health`` does to the database (one ``SELECT 1``), and nothing else —
no middleware, no logging, no metrics, no request ids, no dependencies.

Served as ``granian --interface asgi --factory bench.bare_app:create``; reads ``DATABASE_URL``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar import Litestar, get
from litestar.datastructures import State


@get("/health")
async def health(state: State) -> dict[str, Any]:
    async with state.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return {"status": "ok", "database": {"ok": True}}


@get("/static")
async def static() -> dict[str, str]:
    return {"status": "ok"}


def create() -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2, max_size=10)
        try:
            yield
        finally:
            await app.state.pool.close()

    return Litestar(route_handlers=[health, static], lifespan=[lifespan], debug=False)
