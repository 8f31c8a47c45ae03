"""Sellers: a seller and its three ledger accounts are created in one transaction, or not at all.

A seller's name, commission override, DOKU settlement account and metadata can be changed later
(``update_seller``); orders already created keep the allocation and policy they froze, so a new
commission applies to new orders only.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger import chart
from ledger.sellers import Seller, check_seller_id
from ledger.service.idempotency import Keyed
from ledger.store.database import Database, UnitOfWork


class SellerDraft(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    name: str
    commission_bps: int | None = None
    doku_settlement_id: str | None = None
    metadata: dict[str, Any] = {}


async def add_seller(uow: UnitOfWork, platform_id: str, draft: SellerDraft) -> Seller:
    check_seller_id(draft.seller_id)
    seller = await uow.sellers.insert(
        platform_id,
        seller_id=draft.seller_id,
        name=draft.name,
        commission_bps=draft.commission_bps,
        doku_settlement_id=draft.doku_settlement_id,
        metadata=draft.metadata,
    )
    await uow.ledger.open_accounts(platform_id, chart.seller_accounts(draft.seller_id))
    return seller


async def create_seller(db: Database, keyed: Keyed, platform_id: str, draft: SellerDraft) -> Seller:
    return await keyed.finish(lambda uow: add_seller(uow, platform_id, draft))


class SellerPatch(msgspec.Struct, frozen=True, kw_only=True):
    """What to change; a field left UNSET stays as it is (None clears an override)."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    commission_bps: int | msgspec.UnsetType | None = msgspec.UNSET
    doku_settlement_id: str | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


async def update_seller(db: Database, platform_id: str, seller_id: str, patch: SellerPatch) -> Seller:
    async def update(uow: UnitOfWork) -> Seller:
        seller = await uow.sellers.get(platform_id, seller_id, for_update=True)
        changed = {f: v for f in SellerPatch.__struct_fields__ if (v := getattr(patch, f)) is not msgspec.UNSET}
        merged = msgspec.structs.replace(seller, **changed)
        return await uow.sellers.update(
            platform_id,
            seller_id,
            name=merged.name,
            commission_bps=merged.commission_bps,
            doku_settlement_id=merged.doku_settlement_id,
            metadata=merged.metadata,
        )

    return await db.transaction(update)


async def get_seller(db: Database, platform_id: str, seller_id: str) -> Seller:
    return await db.read(lambda uow: uow.sellers.get(platform_id, seller_id))


async def list_sellers(db: Database, platform_id: str, *, after: str | None = None, limit: int = 100) -> list[Seller]:
    return await db.read(lambda uow: uow.sellers.page(platform_id, after=after, limit=limit))
