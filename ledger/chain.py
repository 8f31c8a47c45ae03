"""Tamper evidence, pure: entry hashes, Merkle trees, block hashes, signed checkpoints and the checks
`splitledger verify` runs over rows read from the database.

Rules:
* An entry's hash is SHA-256 over ``canonical_entry`` ("splitledger-entry-v1"): the entry's fields and
  every posting (id, account, amount, currency, running balance, version, time), times as epoch
  microseconds, text fields length-prefixed (``<bytes>:<text>``, NULL as ``-``), lines joined by
  ``\\n``. The migration's trigger builds the same text in SQL; a test proves the two agree.
* A block's Merkle root follows RFC 6962 (leaf ``SHA-256(0x00 || h)``, node ``SHA-256(0x01 || l || r)``,
  an odd node promoted); its hash covers the platform, block number, entry count, first and last
  entry id, root and the previous block's hash (32 zero bytes for the first block).
* A checkpoint is the statement ``checkpoint_statement`` signed with Ed25519. Only its signature and
  the public key are needed to check it outside the database.
* Findings are data (beancount style): every check returns all it finds, each with a stable ``kind``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ENTRY_FORMAT = "splitledger-entry-v1"
CHECKPOINT_FORMAT = "splitledger-checkpoint-v1"
GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EntryRow(msgspec.Struct, frozen=True, kw_only=True):
    platform_id: str
    entry_id: int
    kind: str
    idempotency_key: str
    content_hash: bytes
    external_ref: str | None
    multi_currency: bool
    effective_at: datetime
    created_at: datetime
    metadata_text: str  # metadata::text, as PostgreSQL prints the jsonb


class PostingRow(msgspec.Struct, frozen=True, kw_only=True):
    posting_id: int
    entry_id: int
    account_id: int
    amount: int
    currency: str
    balance_after: int
    account_version: int
    created_at: datetime


def _field(value: str | None) -> str:
    return "-" if value is None else f"{len(value.encode())}:{value}"


def _micros(moment: datetime) -> str:
    return str((moment - _EPOCH) // timedelta(microseconds=1))


def canonical_entry(entry: EntryRow, postings: Sequence[PostingRow]) -> bytes:
    lines = [
        ENTRY_FORMAT,
        _field(entry.platform_id),
        str(entry.entry_id),
        _field(entry.kind),
        _field(entry.idempotency_key),
        entry.content_hash.hex(),
        _field(entry.external_ref),
        "true" if entry.multi_currency else "false",
        _micros(entry.effective_at),
        _micros(entry.created_at),
        _field(entry.metadata_text),
    ]
    lines += [
        ",".join(
            (
                str(p.posting_id),
                str(p.account_id),
                str(p.amount),
                _field(p.currency),
                str(p.balance_after),
                str(p.account_version),
                _micros(p.created_at),
            )
        )
        for p in sorted(postings, key=lambda p: p.posting_id)
    ]
    return "\n".join(lines).encode()


def entry_hash(entry: EntryRow, postings: Sequence[PostingRow]) -> bytes:
    return hashlib.sha256(canonical_entry(entry, postings)).digest()


# -- Merkle tree (RFC 6962 shape) -------------------------------------------------------------------


def leaf_hash(entry_hash_: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry_hash_).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(entry_hashes: Sequence[bytes]) -> bytes:
    if not entry_hashes:
        raise ValueError("a block has at least one entry")
    level = [leaf_hash(h) for h in entry_hashes]
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0]


class ProofStep(msgspec.Struct, frozen=True, kw_only=True):
    side: str  # "left" or "right": where the sibling sits
    hash: str  # hex


def merkle_path(entry_hashes: Sequence[bytes], index: int) -> list[ProofStep]:
    """The sibling hashes from leaf ``index`` up to the root."""
    level = [leaf_hash(h) for h in entry_hashes]
    path: list[ProofStep] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(ProofStep(side="left" if sibling < index else "right", hash=level[sibling].hex()))
        level = [node_hash(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        index //= 2
    return path


def root_from_path(entry_hash_: bytes, path: Iterable[ProofStep]) -> bytes:
    """What an auditor computes from one entry's hash and its proof: the block's Merkle root."""
    node = leaf_hash(entry_hash_)
    for step in path:
        sibling = bytes.fromhex(step.hash)
        node = node_hash(sibling, node) if step.side == "left" else node_hash(node, sibling)
    return node


def block_hash(
    platform_id: str, block_no: int, entry_count: int, first_entry_id: int, last_entry_id: int, root: bytes, prev: bytes
) -> bytes:
    text = (
        f"splitledger-block-v1\n{_field(platform_id)}\n{block_no}\n{entry_count}\n{first_entry_id}\n{last_entry_id}\n"
    )
    return hashlib.sha256(text.encode() + root + prev).digest()


# -- checkpoints ----------------------------------------------------------------------------------


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    platform_id: str
    block_no: int
    block_hash: str  # hex
    total_entries: int
    sealed_at: datetime
    key_id: str
    public_key: str  # hex of the raw Ed25519 public key
    signature: str  # hex
    statement: str  # exactly the bytes that were signed, as text


def checkpoint_statement(platform_id: str, block_no: int, block_hash_: bytes, total_entries: int) -> str:
    return (
        f"{CHECKPOINT_FORMAT}\nplatform {platform_id}\nblock {block_no}\nhash {block_hash_.hex()}\n"
        f"entries {total_entries}\n"
    )


def public_key_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def sign(private: Ed25519PrivateKey, statement: str) -> bytes:
    return private.sign(statement.encode())


def is_signed_by(checkpoint: Checkpoint) -> bool:
    """The checkpoint's signature holds for its statement and the public key it names."""
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(checkpoint.public_key))
        public.verify(bytes.fromhex(checkpoint.signature), checkpoint.statement.encode())
    except (InvalidSignature, ValueError):
        return False
    expected = checkpoint_statement(
        checkpoint.platform_id, checkpoint.block_no, bytes.fromhex(checkpoint.block_hash), checkpoint.total_entries
    )
    return expected == checkpoint.statement and key_id(public) == checkpoint.key_id


# -- the checks ------------------------------------------------------------------------------------


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One thing verify found wrong; ``kind`` is stable, ``detail`` names exactly what."""

    kind: str  # entry_edited, entry_unhashed, entry_deleted, entry_unsealed, entries_reordered, block_broken,
    # chain_broken, signature_invalid, running_balance_broken, balance_mismatch, trial_balance_off,
    # checkpoint_mismatch, checkpoint_invalid
    platform_id: str
    detail: str
    entry_id: int | None = None
    block_no: int | None = None
    account_id: int | None = None


class BlockRow(msgspec.Struct, frozen=True, kw_only=True):
    platform_id: str
    block_no: int
    entry_count: int
    total_entries: int
    first_entry_id: int
    last_entry_id: int
    merkle_root: bytes
    prev_hash: bytes
    block_hash: bytes
    key_id: str
    signature: bytes
    sealed_at: datetime | None = None


def check_entries(
    platform_id: str,
    entries: Mapping[int, EntryRow],
    postings: Mapping[int, Sequence[PostingRow]],
    stored: Mapping[int, bytes],
) -> list[Finding]:
    """Every entry's hash recomputed from its rows against the hash stored when it was posted."""
    found: list[Finding] = []
    for entry_id, entry in sorted(entries.items()):
        if entry_id not in stored:
            found.append(
                Finding(
                    kind="entry_unhashed",
                    platform_id=platform_id,
                    entry_id=entry_id,
                    detail=f"entry {entry_id} has no hash: written outside the posting path",
                )
            )
        elif entry_hash(entry, postings.get(entry_id, ())) != stored[entry_id]:
            found.append(
                Finding(
                    kind="entry_edited",
                    platform_id=platform_id,
                    entry_id=entry_id,
                    detail=f"entry {entry_id} or one of its postings was changed after it was posted",
                )
            )
    for entry_id in sorted(set(stored) - set(entries)):
        found.append(
            Finding(
                kind="entry_deleted",
                platform_id=platform_id,
                entry_id=entry_id,
                detail=f"entry {entry_id} was hashed when posted and is gone",
            )
        )
    orphans = sorted(set(postings) - set(entries))
    for entry_id in orphans:
        found.append(
            Finding(
                kind="entry_deleted",
                platform_id=platform_id,
                entry_id=entry_id,
                detail=f"postings of entry {entry_id} remain, the entry is gone",
            )
        )
    return found


def check_blocks(
    platform_id: str,
    blocks: Sequence[BlockRow],
    members: Mapping[int, Sequence[tuple[int, int]]],  # block_no -> [(position, entry_id)]
    stored: Mapping[int, bytes],
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    prev_hash: bytes = GENESIS,
    prev_total: int = 0,
) -> list[Finding]:
    """Every block against its members' hashes, its predecessor and its signature."""
    found: list[Finding] = []
    prev, total = prev_hash, prev_total
    for block in blocks:

        def finding(kind: str, detail: str, block: BlockRow = block) -> Finding:
            return Finding(kind=kind, platform_id=platform_id, block_no=block.block_no, detail=detail)

        ordered = sorted(members.get(block.block_no, ()))
        ids = [entry_id for _, entry_id in ordered]
        missing = [i for i in ids if i not in stored]
        if missing:
            found.append(finding("entry_deleted", f"block {block.block_no} seals entries {missing} that are gone"))
        hashes = [stored.get(i, GENESIS) for i in ids]
        if len(ids) != block.entry_count or not ids:
            found.append(
                finding("block_broken", f"block {block.block_no} lists {len(ids)} entries, sealed {block.entry_count}")
            )
        elif merkle_root(hashes) != block.merkle_root:
            by_id = sorted(ids)
            if by_id != ids and not missing and merkle_root([stored[i] for i in by_id]) == block.merkle_root:
                found.append(finding("entries_reordered", f"block {block.block_no}: its entries were reordered"))
            elif not missing:
                found.append(finding("block_broken", f"block {block.block_no}: Merkle root does not match its entries"))
        elif (min(ids), max(ids)) != (block.first_entry_id, block.last_entry_id) or ids != sorted(ids):
            found.append(finding("entries_reordered", f"block {block.block_no}: entry order or range changed"))
        if block.prev_hash != prev:
            found.append(finding("chain_broken", f"block {block.block_no} does not follow the block before it"))
        total += block.entry_count
        expected = block_hash(
            platform_id,
            block.block_no,
            block.entry_count,
            block.first_entry_id,
            block.last_entry_id,
            block.merkle_root,
            block.prev_hash,
        )
        if expected != block.block_hash or block.total_entries != total:
            found.append(finding("block_broken", f"block {block.block_no}: its hash does not match its contents"))
        key = public_keys.get(block.key_id)
        statement = checkpoint_statement(platform_id, block.block_no, block.block_hash, block.total_entries)
        try:
            if key is None:
                raise InvalidSignature
            key.verify(block.signature, statement.encode())
        except InvalidSignature:
            found.append(
                finding(
                    "signature_invalid", f"block {block.block_no}: signature does not verify with key {block.key_id}"
                )
            )
        prev = block.block_hash
    return found


def check_accounts(
    platform_id: str,
    accounts: Mapping[int, tuple[int, int, int]],  # account_id -> (normal_sign, balance, version)
    postings: Iterable[PostingRow],
) -> list[Finding]:
    """Running balances step by step from the postings; stored balance and version; the trial balance."""
    found: list[Finding] = []
    by_account: dict[int, list[PostingRow]] = {}
    totals: dict[str, int] = {}
    for p in postings:
        by_account.setdefault(p.account_id, []).append(p)
        totals[p.currency] = totals.get(p.currency, 0) + p.amount
    for account_id, (sign, balance, version) in sorted(accounts.items()):
        running, expected_version = 0, 0
        for p in sorted(by_account.get(account_id, ()), key=lambda p: p.account_version):
            expected_version += 1
            running += p.amount * sign
            if p.balance_after != running or p.account_version != expected_version:
                found.append(
                    Finding(
                        kind="running_balance_broken",
                        platform_id=platform_id,
                        account_id=account_id,
                        entry_id=p.entry_id,
                        detail=f"account {account_id}: posting {p.posting_id} says balance "
                        f"{p.balance_after} v{p.account_version}, its postings give {running} "
                        f"v{expected_version}",
                    )
                )
                running, expected_version = p.balance_after * 1, p.account_version
        if (running, expected_version) != (balance, version):
            found.append(
                Finding(
                    kind="balance_mismatch",
                    platform_id=platform_id,
                    account_id=account_id,
                    detail=f"account {account_id}: stored balance {balance} v{version}, its postings "
                    f"give {running} v{expected_version}",
                )
            )
    for currency, total in sorted(totals.items()):
        if total != 0:
            found.append(
                Finding(
                    kind="trial_balance_off",
                    platform_id=platform_id,
                    detail=f"postings in {currency} sum to {total}, not 0",
                )
            )
    return found


def check_checkpoint(checkpoint: Checkpoint, blocks: Mapping[int, BlockRow]) -> list[Finding]:
    """An exported checkpoint against the database: its signature, and the block it names."""
    if not is_signed_by(checkpoint):
        return [
            Finding(
                kind="checkpoint_invalid",
                platform_id=checkpoint.platform_id,
                block_no=checkpoint.block_no,
                detail="the checkpoint's signature does not verify",
            )
        ]
    block = blocks.get(checkpoint.block_no)
    if block is None:
        return [
            Finding(
                kind="checkpoint_mismatch",
                platform_id=checkpoint.platform_id,
                block_no=checkpoint.block_no,
                detail=f"block {checkpoint.block_no} of the checkpoint is gone",
            )
        ]
    if block.block_hash.hex() != checkpoint.block_hash or block.total_entries != checkpoint.total_entries:
        return [
            Finding(
                kind="checkpoint_mismatch",
                platform_id=checkpoint.platform_id,
                block_no=checkpoint.block_no,
                detail=f"block {checkpoint.block_no} was rewritten since the checkpoint was exported",
            )
        ]
    return []
