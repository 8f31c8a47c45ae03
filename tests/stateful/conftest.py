"""Stateful-test fixtures. Hypothesis rules are sync, so these are too: they run their own short
event loop (never the pytest-asyncio one) and hand the machine a URL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import create_test_database, drop_test_database


@pytest.fixture
def machine_database_url(postgres, template_database: str) -> Iterator[str]:
    """A fresh migrated database for one state-machine test (each example gets its own platform)."""
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        name = runner.run(create_test_database(postgres, template_database))
    yield postgres.url(name)
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        runner.run(drop_test_database(postgres, name))
