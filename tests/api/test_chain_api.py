"""A platform reads its latest signed checkpoint and an inclusion proof for one entry, and checks both
the way docs/tamper-evidence.md says, trusting only the checkpoint's public key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from ledger import chain
from tests.api.conftest import METRICS_TOKEN, Stack, assert_problem, poll, start_stack

ITEMS = [("Tenun ikat", 120_000, 1, "tenun")]


@pytest.fixture
async def sealed_stack(database_url: str, tmp_path) -> AsyncIterator[Stack]:
    async for s in start_stack(database_url, seal_key_file=str(tmp_path / "seal.key"), sealer_interval_s=0.1):
        yield s


async def test_a_captured_order_s_entry_is_provably_in_a_signed_block(sealed_stack: Stack) -> None:
    stack = sealed_stack
    await stack.create_seller("tenun")
    order = await stack.capture("INV-CHAIN-1", ITEMS)
    entry_id = int(order["links"]["capture_entry"].rsplit("/", 1)[1])

    async def proof() -> dict | None:
        r = await stack.client.get(f"/v1/ledger/entries/{entry_id}/proof")
        return r.json() if r.status_code == 200 else None

    found = await poll(proof, 10, "the capture entry was never sealed")
    path = [chain.ProofStep(side=s["side"], hash=s["hash"]) for s in found["path"]]
    root = chain.root_from_path(bytes.fromhex(found["entry_hash"]), path)
    assert root.hex() == found["merkle_root"]
    digest = chain.block_hash(
        stack.platform_id,
        found["block_no"],
        found["entry_count"],
        found["first_entry_id"],
        found["last_entry_id"],
        root,
        bytes.fromhex(found["prev_hash"]),
    )
    assert digest.hex() == found["block_hash"] == found["checkpoint"]["block_hash"]
    assert chain.is_signed_by(msgspec.convert(found["checkpoint"], chain.Checkpoint))

    latest = (await stack.client.get("/v1/ledger/checkpoints/latest")).json()
    assert latest["block_no"] >= found["block_no"] and latest["platform_id"] == stack.platform_id
    assert chain.is_signed_by(msgspec.convert(latest, chain.Checkpoint))

    health = (await stack.anon.get("/health")).json()
    assert health["sealer"]["running"] is True and health["sealer"]["unsealed_entries"] >= 0
    scraped = await stack.anon.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert "splitledger_sealer_unsealed_entries" in scraped.text


async def test_another_platform_sees_neither_the_proof_nor_the_checkpoint(sealed_stack: Stack) -> None:
    stack = sealed_stack
    await stack.create_seller("tenun")
    order = await stack.capture("INV-CHAIN-2", ITEMS)
    entry_id = int(order["links"]["capture_entry"].rsplit("/", 1)[1])
    other = await stack.new_platform("Toko Lain")
    assert_problem(await other.client.get(f"/v1/ledger/entries/{entry_id}/proof"), 404, "entry_not_found")
    r = await other.client.get("/v1/ledger/checkpoints/latest")
    if r.status_code == 200:  # its own chain (its accounts' opening has no entries: usually nothing yet)
        assert r.json()["platform_id"] == other.platform_id
    else:
        assert_problem(r, 409, "not_sealed_yet")
