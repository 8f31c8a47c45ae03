"""The sealer: chains each platform's posted entries into signed blocks, off the posting path.

Rules: posting never waits for it (entries are hashed in their own transaction by the database; the
sealer only reads committed hashes); one sealer per platform at a time (an advisory lock only it
takes); an entry is sealed once (``chain_members`` keys it); entries that commit late with a lower id
are picked up by a periodic full sweep. Each block is signed with the configured Ed25519 key.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import chain, errors
from ledger.chain import BlockRow, Checkpoint, Finding, ProofStep
from ledger.store.database import Database, UnitOfWork

log = logging.getLogger("splitledger.sealer")


class Signer:
    """The sealing key, and the public keys verify accepts (the current one, plus retired ones)."""

    def __init__(self, private: Ed25519PrivateKey, retired: tuple[Ed25519PublicKey, ...] = ()) -> None:
        self.private = private
        self.public = private.public_key()
        self.key_id = chain.key_id(self.public)
        self.public_keys = {chain.key_id(k): k for k in (*retired, self.public)}


async def seal_platform(uow: UnitOfWork, signer: Signer, platform_id: str, *, max_entries: int, sweep: bool) -> int:
    """Seal what is committed and unsealed into one block; returns how many entries it sealed."""
    await uow.chain.lock_platform(platform_id)
    last = await uow.chain.last_block(platform_id)
    after = 0 if sweep or last is None else last.first_entry_id - 1
    found = await uow.chain.unsealed(platform_id, after=after, limit=max_entries)
    if not found:
        return 0
    ids = [entry_id for entry_id, _ in found]
    root = chain.merkle_root([h for _, h in found])
    block_no = 1 if last is None else last.block_no + 1
    prev = chain.GENESIS if last is None else last.block_hash
    total = (0 if last is None else last.total_entries) + len(ids)
    digest = chain.block_hash(platform_id, block_no, len(ids), ids[0], ids[-1], root, prev)
    signature = chain.sign(signer.private, chain.checkpoint_statement(platform_id, block_no, digest, total))
    block = BlockRow(
        platform_id=platform_id,
        block_no=block_no,
        entry_count=len(ids),
        total_entries=total,
        first_entry_id=ids[0],
        last_entry_id=ids[-1],
        merkle_root=root,
        prev_hash=prev,
        block_hash=digest,
        key_id=signer.key_id,
        signature=signature,
    )
    await uow.chain.add_block(block, ids)
    return len(ids)


class Sealer:
    def __init__(
        self, db: Database, signer: Signer, *, interval_s: float = 1.0, max_entries: int = 5_000, sweep_every: int = 60
    ) -> None:
        self.db = db
        self.signer = signer
        self.interval_s = interval_s
        self.max_entries = max_entries
        self.sweep_every = sweep_every
        self.rounds = 0
        self.sealed = 0
        self.lag: Lag | None = None  # as of the last round

    async def seal_once(self) -> int:
        sweep = self.rounds % self.sweep_every == 0
        self.rounds += 1
        sealed = 0
        for platform_id in await self.db.read(lambda uow: uow.chain.platform_ids()):
            while True:

                async def seal(uow: UnitOfWork, platform_id: str = platform_id) -> int:
                    return await seal_platform(uow, self.signer, platform_id, max_entries=self.max_entries, sweep=sweep)

                n = await self.db.transaction(seal)
                sealed += n
                if n < self.max_entries:
                    break
        self.sealed += sealed
        self.lag = await sealer_lag(self.db)
        return sealed

    async def run(self) -> None:
        while True:
            try:
                await self.seal_once()
            except asyncio.CancelledError:
                raise
            except errors.StoreUnavailable:
                pass  # the database is away; the next round seals what is left
            except Exception:
                log.exception("sealing failed; will try again")
            await asyncio.sleep(self.interval_s)


class Lag(msgspec.Struct, frozen=True, kw_only=True):
    unsealed_entries: int
    seconds_behind: float


async def sealer_lag(db: Database, now: datetime | None = None) -> Lag:
    async def read(uow: UnitOfWork) -> Lag:
        count, oldest_at = 0, None
        for platform_id in await uow.chain.platform_ids():
            n, oldest = await uow.chain.lag(platform_id)
            count += n
            if oldest is not None and (oldest_at is None or oldest < oldest_at):
                oldest_at = oldest
        moment = now or datetime.now(UTC)
        return Lag(
            unsealed_entries=count, seconds_behind=round((moment - oldest_at).total_seconds(), 3) if oldest_at else 0.0
        )

    return await db.read(read)


# -- what a platform and an auditor read ---------------------------------------------------------


def checkpoint_of(block: BlockRow, signer: Signer) -> Checkpoint:
    assert block.sealed_at is not None
    return Checkpoint(
        platform_id=block.platform_id,
        block_no=block.block_no,
        block_hash=block.block_hash.hex(),
        total_entries=block.total_entries,
        sealed_at=block.sealed_at,
        key_id=block.key_id,
        public_key=chain.public_key_hex(signer.public_keys.get(block.key_id, signer.public)),
        signature=block.signature.hex(),
        statement=chain.checkpoint_statement(block.platform_id, block.block_no, block.block_hash, block.total_entries),
    )


async def latest_checkpoint(db: Database, signer: Signer, platform_id: str) -> Checkpoint:
    async def read(uow: UnitOfWork) -> Checkpoint:
        block = await uow.chain.last_block(platform_id)
        if block is None:
            raise errors.NotSealedYet("no block is sealed yet for this platform")
        return checkpoint_of(block, signer)

    return await db.read(read)


class InclusionProof(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: int
    entry_hash: str
    block_no: int
    position: int
    entry_count: int
    path: list[ProofStep]
    merkle_root: str
    prev_hash: str
    first_entry_id: int
    last_entry_id: int
    block_hash: str
    checkpoint: Checkpoint


async def inclusion_proof(db: Database, signer: Signer, platform_id: str, entry_id: int) -> InclusionProof:
    async def read(uow: UnitOfWork) -> InclusionProof:
        await uow.ledger.get_entry(platform_id, entry_id)  # entry_not_found for a stranger's or no entry
        where = await uow.chain.membership(platform_id, entry_id)
        if where is None:
            raise errors.NotSealedYet(f"entry {entry_id} is not sealed yet; try again in a few seconds")
        block_no, position = where
        block = await uow.chain.block(platform_id, block_no)
        assert block is not None
        hashes = await uow.chain.block_hashes(platform_id, block_no)
        return InclusionProof(
            entry_id=entry_id,
            entry_hash=hashes[position].hex(),
            block_no=block_no,
            position=position,
            entry_count=block.entry_count,
            path=chain.merkle_path(hashes, position),
            merkle_root=block.merkle_root.hex(),
            prev_hash=block.prev_hash.hex(),
            first_entry_id=block.first_entry_id,
            last_entry_id=block.last_entry_id,
            block_hash=block.block_hash.hex(),
            checkpoint=checkpoint_of(block, signer),
        )

    return await db.read(read)


# -- verify ----------------------------------------------------------------------------------------


async def verify(
    db: Database,
    signer: Signer,
    *,
    platform_id: str | None = None,
    since_block: int = 1,
    checkpoint: Checkpoint | None = None,
) -> tuple[list[Finding], dict[str, int]]:
    """Recompute everything from the raw rows; returns the findings and what was checked."""

    async def run(uow: UnitOfWork) -> tuple[list[Finding], dict[str, int]]:
        platforms = [platform_id] if platform_id else await uow.chain.platform_ids()
        found: list[Finding] = []
        counted = {"platforms": 0, "entries": 0, "blocks": 0, "postings": 0}
        for pid in platforms:
            entries = await uow.chain.entries(pid)
            postings = await uow.chain.postings(pid)
            by_entry: dict[int, list[chain.PostingRow]] = {}
            for p in postings:
                by_entry.setdefault(p.entry_id, []).append(p)
            stored = await uow.chain.hashes(pid)
            found += chain.check_entries(pid, entries, by_entry, stored)
            before = await uow.chain.block(pid, since_block - 1) if since_block > 1 else None
            blocks = await uow.chain.blocks(pid, since=since_block)
            found += chain.check_blocks(
                pid,
                blocks,
                await uow.chain.members(pid, since=since_block),
                stored,
                signer.public_keys,
                prev_hash=before.block_hash if before else chain.GENESIS,
                prev_total=before.total_entries if before else 0,
            )
            found += chain.check_accounts(pid, await uow.chain.accounts(pid), postings)
            if checkpoint is not None and checkpoint.platform_id == pid:
                every = {b.block_no: b for b in await uow.chain.blocks(pid)}
                found += chain.check_checkpoint(checkpoint, every)
            counted["platforms"] += 1
            counted["entries"] += len(entries)
            counted["blocks"] += len(blocks)
            counted["postings"] += len(postings)
        if checkpoint is not None and checkpoint.platform_id not in platforms:
            found += chain.check_checkpoint(checkpoint, {})
        return found, counted

    return await db.transaction(run, isolation="repeatable_read", readonly=True)
