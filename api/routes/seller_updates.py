"""``PATCH /v1/sellers/{id}``: change a seller's name, commission override, DOKU settlement account or
metadata. Fields left out stay as they are; ``null`` clears an override. Orders already created
keep the allocation they froze: a new commission applies to new orders only."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, patch
from litestar.params import FromPath, JSONBody

from api.bodies import Strict
from api.deps import PlatformId, ServicesDep
from ledger.sellers import Seller
from ledger.service import sellers
from ledger.service.sellers import SellerPatch

Bps = Annotated[int, msgspec.Meta(ge=0, le=10_000, description="basis points (10000 = 100 %)")]


class SellerPatchIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    commission_bps: Bps | msgspec.UnsetType | None = msgspec.UNSET
    doku_settlement_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class SellerUpdateController(Controller):
    path = "/sellers"
    tags = ["sellers"]

    @patch(
        "/{seller_id:str}",
        summary="Change a seller's name, commission override, DOKU settlement account or metadata",
        dto=Strict[SellerPatchIn],
        return_dto=None,
    )
    async def update(
        self, services: ServicesDep, platform_id: PlatformId, seller_id: FromPath[str], data: JSONBody[SellerPatchIn]
    ) -> Seller:
        changes = SellerPatch(**{f: getattr(data, f) for f in SellerPatchIn.__struct_fields__})
        return await sellers.update_seller(services.db, platform_id, seller_id, changes)


def seller_update_handlers() -> list[Any]:
    return [SellerUpdateController]
