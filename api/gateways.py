"""Each platform's DOKU merchant account: credentials, fee and commission defaults, and a client.

Rule: a platform is its own DOKU merchant (its own Client-Id and Secret Key). Notifications are
routed to a platform by their Client-Id; ``doku_client_ids`` is the only table not led by
platform_id (a routing table, a reference table in a distributed deployment).
The Secret Key is stored as given: protect the database (or put a KMS in front of this module).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from api.settings import Settings
from jenius.client import JeniusClient, JeniusConfig
from ledger import errors


class GatewayOut(msgspec.Struct, frozen=True, kw_only=True):
    """What the API shows of a platform's DOKU account: never the secret."""

    client_id: str
    base_url: str | None
    refund_path: str | None
    fee_bps: int
    fee_fixed: int
    fee_bearer: str
    commission_bps: int
    platform_settlement_id: str | None
    send_split_instruction: bool
    updated_at: datetime

    @classmethod
    def of(cls, gateway: Gateway) -> GatewayOut:
        return cls(**{f: getattr(gateway, f) for f in cls.__struct_fields__})


class Gateway(GatewayOut, frozen=True, kw_only=True):
    """The stored account: what the API shows, plus whose it is and the secret that signs."""

    platform_id: str
    secret_key: str


def _gateway(row: asyncpg.Record) -> Gateway:
    return Gateway(**{f: row[f] for f in Gateway.__struct_fields__})


async def configure_gateway(
    conn: asyncpg.Connection,
    platform_id: str,
    *,
    client_id: str,
    secret_key: str,
    base_url: str | None = None,
    refund_path: str | None = None,
    fee_bps: int = 0,
    fee_fixed: int = 0,
    fee_bearer: str = "platform",
    commission_bps: int = 0,
    platform_settlement_id: str | None = None,
    send_split_instruction: bool = False,
) -> Gateway:
    async with conn.transaction():
        owner = await conn.fetchval("SELECT platform_id FROM doku_client_ids WHERE client_id = $1", client_id)
        if owner is not None and owner != platform_id:
            raise errors.ClientIdTaken("this DOKU Client-Id belongs to another platform")
        await conn.execute("DELETE FROM doku_client_ids WHERE platform_id = $1 AND client_id <> $2", platform_id, client_id)
        await conn.execute(
            "INSERT INTO doku_client_ids (client_id, platform_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            client_id,
            platform_id,
        )
        row = await conn.fetchrow(
            """
            INSERT INTO gateways (platform_id, client_id, secret_key, base_url, refund_path, fee_bps, fee_fixed,
                                  fee_bearer, commission_bps, platform_settlement_id, send_split_instruction)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (platform_id) DO UPDATE SET
                client_id = EXCLUDED.client_id, secret_key = EXCLUDED.secret_key, base_url = EXCLUDED.base_url,
                refund_path = EXCLUDED.refund_path, fee_bps = EXCLUDED.fee_bps, fee_fixed = EXCLUDED.fee_fixed,
                fee_bearer = EXCLUDED.fee_bearer, commission_bps = EXCLUDED.commission_bps,
                platform_settlement_id = EXCLUDED.platform_settlement_id,
                send_split_instruction = EXCLUDED.send_split_instruction, updated_at = now()
            RETURNING *
            """,
            platform_id,
            client_id,
            secret_key,
            base_url,
            refund_path,
            fee_bps,
            fee_fixed,
            fee_bearer,
            commission_bps,
            platform_settlement_id,
            send_split_instruction,
        )
    return _gateway(row)


async def get_gateway(conn: asyncpg.Connection | asyncpg.Pool, platform_id: str) -> Gateway:
    row = await conn.fetchrow("SELECT * FROM gateways WHERE platform_id = $1", platform_id)
    if row is None:
        raise errors.GatewayNotConfigured("configure DOKU credentials first (PUT /v1/platform/gateway)")
    return _gateway(row)


async def gateway_for_client_id(conn: asyncpg.Connection | asyncpg.Pool, client_id: str) -> Gateway | None:
    """One lookup per notification: the routing row and the platform's gateway together."""
    row = await conn.fetchrow(
        """
        SELECT g.* FROM doku_client_ids c
          JOIN gateways g ON g.platform_id = c.platform_id
         WHERE c.client_id = $1
        """,
        client_id,
    )
    return _gateway(row) if row is not None else None


class GatewayClients:
    """One ``JeniusClient`` per platform, rebuilt when its configuration changes."""

    def __init__(self, settings: Settings, transport: object | None = None) -> None:
        self.settings = settings
        self.transport = transport
        self._clients: dict[str, tuple[Gateway, JeniusClient]] = {}

    def config_for(self, gateway: Gateway) -> JeniusConfig:
        return JeniusConfig(
            client_id=gateway.client_id,
            secret_key=gateway.secret_key,
            base_url=gateway.base_url or self.settings.doku_base_url,
            refund_path=gateway.refund_path or self.settings.doku_refund_path,
            timeout_s=self.settings.doku_timeout_s,
            reject_bad_response_signature=self.settings.doku_reject_bad_response_signature,
        )

    async def client(self, gateway: Gateway) -> JeniusClient:
        cached = self._clients.get(gateway.platform_id)
        if cached is not None and cached[0] == gateway:
            return cached[1]
        client = JeniusClient(self.config_for(gateway), transport=self.transport)
        await client.__aenter__()
        self._clients[gateway.platform_id] = (gateway, client)
        if cached is not None:
            await cached[1].__aexit__(None, None, None)
        return client

    def base_urls(self) -> set[str]:
        """The DOKU base URLs of the clients built so far."""
        return {client.config.base_url for _, client in self._clients.values()}

    async def aclose(self) -> None:
        for _, client in self._clients.values():
            await client.__aexit__(None, None, None)
        self._clients.clear()
