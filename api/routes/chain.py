"""Tamper evidence for a platform: its latest signed checkpoint, and an inclusion proof for one entry
(how to check both outside splitledger: docs/tamper-evidence.md)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get

from api.deps import PlatformId, ServicesDep
from api.params import RowId
from ledger.chain import Checkpoint
from ledger.service import sealer
from ledger.service.sealer import InclusionProof


class ChainController(Controller):
    path = "/ledger"
    tags = ["ledger"]

    @get(
        "/checkpoints/latest",
        summary="The latest signed checkpoint of the platform's hash chain",
        operation_id="getLatestCheckpoint",
    )
    async def latest(self, services: ServicesDep, platform_id: PlatformId) -> Checkpoint:
        return await sealer.latest_checkpoint(services.db, services.signer, platform_id)

    @get(
        "/entries/{entry_id:int}/proof",
        summary="An inclusion proof of one journal entry in a signed block",
        operation_id="getEntryProof",
    )
    async def proof(self, services: ServicesDep, platform_id: PlatformId, entry_id: RowId) -> InclusionProof:
        return await sealer.inclusion_proof(services.db, services.signer, platform_id, entry_id)


def chain_handlers() -> list[Any]:
    return [ChainController]
