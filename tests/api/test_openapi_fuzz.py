"""Schemathesis against the service's own OpenAPI document: every operation, valid and invalid
requests, a fixed seed and a bounded number of examples. No answer may be a 5xx, and every 4xx is
``application/problem+json``. The counts are printed (``-s``) for the issue's note."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.api.conftest import Stack, start_stack
from tests.api.fuzzing import LoopbackOnly, fuzz

SEED = 20261124
MAX_EXAMPLES = 30
ITEMS = [("Songket", 80_000, 1, "songket"), ("Sambal", 20_000, 2, "sambal")]


@pytest.fixture
async def fuzz_stack(database_url: str) -> AsyncIterator[tuple[Stack, LoopbackOnly]]:
    transport = LoopbackOnly()
    try:
        # No rate limit (thousands of requests with one key) and no probe of whatever base URL is set.
        async for stack in start_stack(
            database_url, transport=transport, doku_probe_interval_s=0.0, rate_limit_enabled=False
        ):
            yield stack, transport
    finally:
        await transport.close()


async def test_schemathesis_finds_no_5xx_and_every_4xx_is_problem_json(fuzz_stack: tuple[Stack, LoopbackOnly]) -> None:
    stack, _transport = fuzz_stack
    # Something to find: sellers, a captured and settled order with a refund, a payout, an exception.
    await stack.create_seller("songket")
    await stack.create_seller("sambal")
    await stack.capture("INV-FUZZ-1", ITEMS)
    report = await stack.import_settlement(await stack.settlement_csv("INV-FUZZ-1"))
    refund = (await stack.client.post("/v1/orders/INV-FUZZ-1/refunds", json={"amount": 1_000, "reason": "x"})).json()
    payout = (await stack.client.post("/v1/payouts", json={"seller_id": "songket", "amount": 1_000})).json()
    known = {
        "seller_id": "songket",
        "invoice_number": "INV-FUZZ-1",
        "refund_id": refund["refund_id"],
        "payout_id": payout["payout_id"],
        "report_id": report["report_id"],
        "code": "seller:songket:available",
        "entry_id": "1",
        "exception_id": "1",
    }
    document = (await stack.anon.get("/docs/openapi.json")).json()

    found = await asyncio.to_thread(
        fuzz,
        document,
        stack.base_url,
        headers={"Authorization": f"Bearer {stack.api_key}"},
        known_path_parameters=known,
        max_examples=MAX_EXAMPLES,
        seed=SEED,
    )
    print("\nschemathesis:", found.summary())
    for finding in found.server_errors[:20] + found.not_problem[:20]:
        print(
            " ",
            finding.status,
            finding.operation,
            finding.mode,
            finding.url,
            (finding.body or b"")[:200],
            finding.answer,
        )
    assert len(found.operations) == sum(len(ops) for ops in document["paths"].values())
    assert found.requests >= 10 * len(found.operations)
    assert found.server_errors == [], found.summary()
    assert found.not_problem == [], found.summary()
