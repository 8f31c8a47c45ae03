"""Sellers: who can be paid, each with its pending, available and debt accounts (pure record and rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ledger import errors
from ledger.split import RESERVED_PARTIES


class Seller(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    name: str
    commission_bps: int | None
    doku_settlement_id: str | None
    metadata: dict[str, Any]
    created_at: datetime


def check_seller_id(seller_id: str) -> None:
    if seller_id in RESERVED_PARTIES:
        raise errors.ReservedSellerId(f"{seller_id!r} names a party of every split; choose another id")
