"""The ``gateways`` and ``doku_client_ids`` tables: each platform's DOKU merchant account, and the
routing of DOKU's Client-Id to its platform."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from ledger import errors


class GatewayView(msgspec.Struct, frozen=True, kw_only=True):
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


class Gateway(GatewayView, frozen=True, kw_only=True):
    """The stored account: what the API shows, plus whose it is and the secret that signs."""

    platform_id: str
    secret_key: str


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    secret_key: str
    base_url: str | None = None
    refund_path: str | None = None
    fee_bps: int = 0
    fee_fixed: int = 0
    fee_bearer: str = "platform"
    commission_bps: int = 0
    platform_settlement_id: str | None = None
    send_split_instruction: bool = False


def _gateway(row: asyncpg.Record) -> Gateway:
    return Gateway(**{f: row[f] for f in Gateway.__struct_fields__})


class GatewaysTable:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def configure(self, platform_id: str, settings: GatewaySettings) -> Gateway:
        owner = await self.conn.fetchval(
            "SELECT platform_id FROM doku_client_ids WHERE client_id = $1", settings.client_id
        )
        if owner is not None and owner != platform_id:
            raise errors.ClientIdTaken("this DOKU Client-Id belongs to another platform")
        await self.conn.execute(
            "DELETE FROM doku_client_ids WHERE platform_id = $1 AND client_id <> $2", platform_id, settings.client_id
        )
        await self.conn.execute(
            "INSERT INTO doku_client_ids (client_id, platform_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            settings.client_id,
            platform_id,
        )
        row = await self.conn.fetchrow(
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
            settings.client_id,
            settings.secret_key,
            settings.base_url,
            settings.refund_path,
            settings.fee_bps,
            settings.fee_fixed,
            settings.fee_bearer,
            settings.commission_bps,
            settings.platform_settlement_id,
            settings.send_split_instruction,
        )
        return _gateway(row)

    async def get(self, platform_id: str) -> Gateway:
        row = await self.conn.fetchrow("SELECT * FROM gateways WHERE platform_id = $1", platform_id)
        if row is None:
            raise errors.GatewayNotConfigured("configure DOKU credentials first (PUT /v1/platform/gateway)")
        return _gateway(row)

    async def for_client_id(self, client_id: str) -> Gateway | None:
        """One lookup per notification: the routing row and the platform's gateway together."""
        row = await self.conn.fetchrow(
            """
            SELECT g.* FROM doku_client_ids c
              JOIN gateways g ON g.platform_id = c.platform_id
             WHERE c.client_id = $1
            """,
            client_id,
        )
        return _gateway(row) if row is not None else None

    async def platform_ids(self) -> list[str]:
        return [r["platform_id"] for r in await self.conn.fetch("SELECT platform_id FROM gateways ORDER BY 1")]
