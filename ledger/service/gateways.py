"""A platform's DOKU merchant account: credentials, DOKU's fee and the platform's default commission."""

from __future__ import annotations

from ledger.store.database import Database
from ledger.store.gateways import Gateway, GatewaySettings


async def configure_gateway(db: Database, platform_id: str, settings: GatewaySettings) -> Gateway:
    return await db.transaction(lambda uow: uow.gateways.configure(platform_id, settings))


async def get_gateway(db: Database, platform_id: str) -> Gateway:
    return await db.read(lambda uow: uow.gateways.get(platform_id))


async def gateway_for_client_id(db: Database, client_id: str) -> Gateway | None:
    return await db.read(lambda uow: uow.gateways.for_client_id(client_id))
