"""The hash chain's tables: ``entry_hashes`` (written by the posting trigger), ``chain_blocks`` and
``chain_members`` (written by the sealer), and the raw reads ``verify`` recomputes everything from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

import ledger.store.values as values
from ledger.chain import BlockRow, EntryRow, PostingRow


def _block(row: asyncpg.Record) -> BlockRow:
    return BlockRow(
        platform_id=row["platform_id"],
        block_no=row["block_no"],
        entry_count=row["entry_count"],
        total_entries=row["total_entries"],
        first_entry_id=row["first_entry_id"],
        last_entry_id=row["last_entry_id"],
        merkle_root=bytes(row["merkle_root"]),
        prev_hash=bytes(row["prev_hash"]),
        block_hash=bytes(row["block_hash"]),
        key_id=row["key_id"],
        signature=bytes(row["signature"]),
        sealed_at=row["sealed_at"],
    )


class ChainTable:
    def __init__(self, conn: asyncpg.Connection, *, distributed: bool = False) -> None:
        self.conn = conn
        self.distributed = distributed  # a Citus cluster: many rows as a VALUES list (ledger/store/values.py)

    async def lock_platform(self, platform_id: str) -> None:
        """One sealer at a time per platform (only the sealer takes this lock; posting never does)."""
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 11))", f"seal:{platform_id}")

    async def last_block(self, platform_id: str) -> BlockRow | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM chain_blocks WHERE platform_id = $1 ORDER BY block_no DESC LIMIT 1", platform_id
        )
        return _block(row) if row is not None else None

    async def unsealed(self, platform_id: str, *, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Committed, hashed entries with ids above ``after`` that no block seals yet, oldest first."""
        rows = await self.conn.fetch(
            """
            SELECT h.entry_id, h.hash FROM entry_hashes h
             WHERE h.platform_id = $1 AND h.entry_id > $2
               AND NOT EXISTS (SELECT 1 FROM chain_members m
                                WHERE m.platform_id = h.platform_id AND m.entry_id = h.entry_id)
             ORDER BY h.entry_id LIMIT $3
            """,
            platform_id,
            after,
            limit,
        )
        return [(r["entry_id"], bytes(r["hash"])) for r in rows]

    async def add_block(self, block: BlockRow, entry_ids: Sequence[int]) -> None:
        await self.conn.execute(
            """
            INSERT INTO chain_blocks (platform_id, block_no, entry_count, total_entries, first_entry_id,
                                      last_entry_id, merkle_root, prev_hash, block_hash, key_id, signature)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            """,
            block.platform_id,
            block.block_no,
            block.entry_count,
            block.total_entries,
            block.first_entry_id,
            block.last_entry_id,
            block.merkle_root,
            block.prev_hash,
            block.block_hash,
            block.key_id,
            block.signature,
        )
        if self.distributed:
            await values.insert_values(
                self.conn,
                "INSERT INTO chain_members (platform_id, entry_id, block_no, position)",
                ("$1", "bigint", "$2", "int"),
                [(entry_id, position) for position, entry_id in enumerate(entry_ids)],
                shared=(block.platform_id, block.block_no),
            )
            return
        await self.conn.execute(
            """
            INSERT INTO chain_members (platform_id, entry_id, block_no, position)
            SELECT $1, e, $2, p - 1 FROM unnest($3::bigint[]) WITH ORDINALITY AS s(e, p)
            """,
            block.platform_id,
            block.block_no,
            list(entry_ids),
        )

    async def lag(self, platform_id: str) -> tuple[int, datetime | None]:
        """Entries not sealed yet, and when the oldest of them was posted."""
        row = await self.conn.fetchrow(
            """
            SELECT count(*) AS n, min(e.created_at) AS oldest FROM entry_hashes h
              JOIN journal_entries e ON e.platform_id = h.platform_id AND e.entry_id = h.entry_id
             WHERE h.platform_id = $1 AND h.entry_id > coalesce(
                       (SELECT min(first_entry_id) - 1 FROM chain_blocks b WHERE b.platform_id = $1
                           AND b.block_no >= (SELECT max(block_no) FROM chain_blocks WHERE platform_id = $1)), 0)
               AND NOT EXISTS (SELECT 1 FROM chain_members m
                                WHERE m.platform_id = h.platform_id AND m.entry_id = h.entry_id)
            """,
            platform_id,
        )
        return int(row["n"]), row["oldest"]

    # -- raw reads for verify and proofs ---------------------------------------------------------

    async def entries(self, platform_id: str) -> dict[int, EntryRow]:
        rows = await self.conn.fetch(
            """
            SELECT platform_id, entry_id, kind, idempotency_key, content_hash, external_ref, multi_currency,
                   effective_at, created_at, metadata::text AS metadata_text
              FROM journal_entries WHERE platform_id = $1
            """,
            platform_id,
        )
        return {r["entry_id"]: EntryRow(**{**dict(r), "content_hash": bytes(r["content_hash"])}) for r in rows}

    async def postings(self, platform_id: str) -> list[PostingRow]:
        rows = await self.conn.fetch(
            """
            SELECT posting_id, entry_id, account_id, amount, currency, balance_after, account_version, created_at
              FROM postings WHERE platform_id = $1
            """,
            platform_id,
        )
        return [PostingRow(**dict(r)) for r in rows]

    async def accounts(self, platform_id: str) -> dict[int, tuple[int, int, int]]:
        rows = await self.conn.fetch(
            "SELECT account_id, normal_sign, balance, version FROM accounts WHERE platform_id = $1", platform_id
        )
        return {r["account_id"]: (r["normal_sign"], r["balance"], r["version"]) for r in rows}

    async def hashes(self, platform_id: str) -> dict[int, bytes]:
        rows = await self.conn.fetch("SELECT entry_id, hash FROM entry_hashes WHERE platform_id = $1", platform_id)
        return {r["entry_id"]: bytes(r["hash"]) for r in rows}

    async def blocks(self, platform_id: str, *, since: int = 1) -> list[BlockRow]:
        rows = await self.conn.fetch(
            "SELECT * FROM chain_blocks WHERE platform_id = $1 AND block_no >= $2 ORDER BY block_no",
            platform_id,
            since,
        )
        return [_block(r) for r in rows]

    async def block(self, platform_id: str, block_no: int) -> BlockRow | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM chain_blocks WHERE platform_id = $1 AND block_no = $2", platform_id, block_no
        )
        return _block(row) if row is not None else None

    async def members(self, platform_id: str, *, since: int = 1) -> dict[int, list[tuple[int, int]]]:
        rows = await self.conn.fetch(
            "SELECT block_no, position, entry_id FROM chain_members WHERE platform_id = $1 AND block_no >= $2",
            platform_id,
            since,
        )
        out: dict[int, list[tuple[int, int]]] = {}
        for r in rows:
            out.setdefault(r["block_no"], []).append((r["position"], r["entry_id"]))
        return out

    async def membership(self, platform_id: str, entry_id: int) -> tuple[int, int] | None:
        row = await self.conn.fetchrow(
            "SELECT block_no, position FROM chain_members WHERE platform_id = $1 AND entry_id = $2",
            platform_id,
            entry_id,
        )
        return (row["block_no"], row["position"]) if row is not None else None

    async def block_hashes(self, platform_id: str, block_no: int) -> list[bytes]:
        """The hashes of a block's entries in position order (as stored)."""
        rows = await self.conn.fetch(
            """
            SELECT h.hash FROM chain_members m
              JOIN entry_hashes h ON h.platform_id = m.platform_id AND h.entry_id = m.entry_id
             WHERE m.platform_id = $1 AND m.block_no = $2 ORDER BY m.position
            """,
            platform_id,
            block_no,
        )
        return [bytes(r["hash"]) for r in rows]

    async def platform_ids(self) -> list[str]:
        return [r["platform_id"] for r in await self.conn.fetch("SELECT platform_id FROM platforms ORDER BY 1")]
