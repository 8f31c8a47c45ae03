"""The ``gateways`` and ``doku_client_ids`` tables: each platform's DOKU merchant account, and the
routing of DOKU's Client-Id to its platform.

Rule: the DOKU Secret Key is written only encrypted (``secret_key_encrypted``, AES-256-GCM under the
``Keyring``, bound to the platform's row) and read back as a ``Secret``; the plaintext column is
NULL (the database refuses anything else since migration 0015). Rows from before 0015 are encrypted
by ``encrypt_plaintext`` when the service starts.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from ledger import errors
from ledger.store.encryption import Keyring, Secret, key_id_of


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
    secret_key: Secret


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

    def __repr__(self) -> str:  # the secret key must never reach a log line
        return f"GatewaySettings(client_id={self.client_id!r}, base_url={self.base_url!r}, secret_key=***)"


_SHOWN = tuple(f for f in Gateway.__struct_fields__ if f != "secret_key")


def _context(platform_id: str) -> str:
    return f"gateways:{platform_id}"


class GatewaysTable:
    def __init__(self, conn: asyncpg.Connection, keyring: Keyring | None = None) -> None:
        self.conn = conn
        self._keyring = keyring

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            raise errors.SecretsKeyMissing("this Database was opened without a secrets keyring")
        return self._keyring

    def _gateway(self, row: asyncpg.Record) -> Gateway:
        encrypted = row["secret_key_encrypted"]
        secret = (
            self.keyring.decrypt(encrypted, _context(row["platform_id"]))
            if encrypted is not None
            else Secret(row["secret_key"])
        )
        return Gateway(**{f: row[f] for f in _SHOWN}, secret_key=secret)

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
            INSERT INTO gateways (platform_id, client_id, secret_key_encrypted, base_url, refund_path, fee_bps,
                                  fee_fixed, fee_bearer, commission_bps, platform_settlement_id, send_split_instruction)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (platform_id) DO UPDATE SET
                client_id = EXCLUDED.client_id, secret_key = NULL, secret_key_encrypted = EXCLUDED.secret_key_encrypted,
                base_url = EXCLUDED.base_url,
                refund_path = EXCLUDED.refund_path, fee_bps = EXCLUDED.fee_bps, fee_fixed = EXCLUDED.fee_fixed,
                fee_bearer = EXCLUDED.fee_bearer, commission_bps = EXCLUDED.commission_bps,
                platform_settlement_id = EXCLUDED.platform_settlement_id,
                send_split_instruction = EXCLUDED.send_split_instruction, updated_at = EXCLUDED.updated_at
            RETURNING *
            """,
            platform_id,
            settings.client_id,
            self.keyring.encrypt(settings.secret_key, _context(platform_id)),
            settings.base_url,
            settings.refund_path,
            settings.fee_bps,
            settings.fee_fixed,
            settings.fee_bearer,
            settings.commission_bps,
            settings.platform_settlement_id,
            settings.send_split_instruction,
        )
        return self._gateway(row)

    async def get(self, platform_id: str) -> Gateway:
        row = await self.conn.fetchrow("SELECT * FROM gateways WHERE platform_id = $1", platform_id)
        if row is None:
            raise errors.GatewayNotConfigured("configure DOKU credentials first (PUT /v1/platform/gateway)")
        return self._gateway(row)

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
        return self._gateway(row) if row is not None else None

    async def platform_ids(self) -> list[str]:
        return [r["platform_id"] for r in await self.conn.fetch("SELECT platform_id FROM gateways ORDER BY 1")]

    # -- secrets at rest ----------------------------------------------------------------------

    async def _lock_each(self, query: str) -> list[asyncpg.Record]:
        """Each platform's gateway row, locked, in platform order: one platform per statement, which a
        Citus cluster runs on that platform's shard (it runs no FOR UPDATE over many shards)."""
        rows = []
        for platform_id in await self.platform_ids():
            rows += await self.conn.fetch(query, platform_id)
        return rows

    async def encrypt_plaintext(self) -> int:
        """Encrypt every secret still stored in plaintext (rows from before migration 0015)."""
        rows = await self._lock_each(
            "SELECT platform_id, secret_key FROM gateways WHERE platform_id = $1 AND secret_key IS NOT NULL FOR UPDATE"
        )
        for row in rows:
            await self._store_encrypted(
                row["platform_id"], self.keyring.encrypt(row["secret_key"], _context(row["platform_id"]))
            )
        return len(rows)

    async def reencrypt(self) -> int:
        """Re-encrypt under the keyring's first key every secret encrypted under another one (rotation)."""
        rows = await self._lock_each(
            "SELECT platform_id, secret_key, secret_key_encrypted FROM gateways WHERE platform_id = $1 FOR UPDATE"
        )
        count = 0
        for row in rows:
            encrypted = row["secret_key_encrypted"]
            if encrypted is not None and key_id_of(encrypted) == self.keyring.current_id:
                continue
            context = _context(row["platform_id"])
            plain = self.keyring.decrypt(encrypted, context).reveal() if encrypted is not None else row["secret_key"]
            await self._store_encrypted(row["platform_id"], self.keyring.encrypt(plain, context))
            count += 1
        return count

    async def unreadable(self) -> list[str]:
        """The platforms whose encrypted secret no key of the keyring opens."""
        rows = await self.conn.fetch(
            "SELECT platform_id, secret_key_encrypted FROM gateways WHERE secret_key_encrypted IS NOT NULL ORDER BY 1"
        )
        found = []
        for row in rows:
            try:
                self.keyring.decrypt(row["secret_key_encrypted"], _context(row["platform_id"]))
            except errors.SecretUnreadable:
                found.append(row["platform_id"])
        return found

    async def _store_encrypted(self, platform_id: str, encrypted: bytes) -> None:
        await self.conn.execute(
            "UPDATE gateways SET secret_key = NULL, secret_key_encrypted = $2 WHERE platform_id = $1",
            platform_id,
            encrypted,
        )
