"""Tamper evidence on real PostgreSQL: every entry hashed in its posting transaction, blocks sealed and
signed off the posting path, and ``verify`` naming precisely what a database superuser changed."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli import main
from api.sealing import load_signer
from api.settings import load_settings
from ledger import chain
from ledger.journal import build_entry
from ledger.model import AccountSpec
from ledger.service.platforms import create_platform
from ledger.service.sealer import Sealer, Signer, inclusion_proof, latest_checkpoint, seal_platform, verify
from ledger.store import Database

KEY = Ed25519PrivateKey.generate()
SIGNER = Signer(KEY)


async def ledger_with_history(pool: asyncpg.Pool, entries: int = 12) -> tuple[Database, str]:
    db = Database(pool)
    pid, _ = await create_platform(db, "Audited")
    await db.ledger.open_accounts(
        pid, [AccountSpec(code="cash", kind="asset"), AccountSpec(code="sales", kind="revenue")]
    )
    drafts = [
        build_entry(
            kind="sale",
            idempotency_key=f"sale-{i}",
            postings={"cash": 1_000 + i, "sales": -(1_000 + i)},
            metadata={"n": i},
        )
        for i in range(entries)
    ]
    await db.ledger.post(pid, drafts[: entries // 2])
    await db.ledger.post(pid, drafts[entries // 2 :])
    await Sealer(db, SIGNER, max_entries=5).seal_once()
    return db, pid


async def findings(db: Database, pid: str, **kwargs: object) -> list[tuple[str, int | None]]:
    found, _ = await verify(db, SIGNER, platform_id=pid, **kwargs)  # type: ignore[arg-type]
    return sorted(
        {(f.kind, f.entry_id if f.entry_id is not None else f.block_no) for f in found}, key=lambda x: (x[0], x[1] or 0)
    )


async def as_superuser(pool: asyncpg.Pool, *statements: tuple[str, ...]) -> None:
    """What someone with the database's keys can do: triggers off, rows changed directly."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')"):
            # On a cluster the rows live on the workers: the SET LOCAL must reach them too.
            await conn.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql, *args in statements:
            await conn.execute(sql, *args)


async def entry_ids(pool: asyncpg.Pool, pid: str) -> list[int]:
    return [
        r["entry_id"]
        for r in await pool.fetch("SELECT entry_id FROM journal_entries WHERE platform_id = $1 ORDER BY entry_id", pid)
    ]


async def test_an_untouched_ledger_verifies_and_the_database_hash_agrees_with_the_documented_one(pool) -> None:
    db, pid = await ledger_with_history(pool)
    assert await findings(db, pid) == []
    # the trigger's SQL and ledger.chain's canonical text agree, entry by entry
    entries = await db.read(lambda uow: uow.chain.entries(pid))
    postings = await db.read(lambda uow: uow.chain.postings(pid))
    stored = await db.read(lambda uow: uow.chain.hashes(pid))
    assert len(stored) == len(entries) == 12 + 0
    for entry_id, entry in entries.items():
        assert chain.entry_hash(entry, [p for p in postings if p.entry_id == entry_id]) == stored[entry_id]
    blocks = await db.read(lambda uow: uow.chain.blocks(pid))
    assert [b.entry_count for b in blocks] == [5, 5, 2] and blocks[-1].total_entries == 12


async def test_an_edited_amount_is_named_with_its_entry_and_the_broken_balances(pool) -> None:
    db, pid = await ledger_with_history(pool)
    target = (await entry_ids(pool, pid))[3]
    await as_superuser(
        pool,
        (
            "UPDATE postings SET amount = amount + 1 WHERE platform_id = $1 AND entry_id = $2 AND amount > 0",
            pid,
            target,
        ),
    )
    kinds = await findings(db, pid)
    assert ("entry_edited", target) in kinds
    assert {k for k, _ in kinds} >= {"entry_edited", "running_balance_broken", "trial_balance_off"}


async def test_a_deleted_posting_and_a_deleted_entry_are_named(pool) -> None:
    db, pid = await ledger_with_history(pool)
    ids = await entry_ids(pool, pid)
    await as_superuser(
        pool,
        (
            "DELETE FROM postings WHERE posting_id = (SELECT min(posting_id) FROM postings "
            "WHERE platform_id = $1 AND entry_id = $2)",
            pid,
            ids[1],
        ),
    )
    assert ("entry_edited", ids[1]) in await findings(db, pid)
    await as_superuser(
        pool,
        ("DELETE FROM postings WHERE platform_id = $1 AND entry_id = $2", pid, ids[5]),
        ("DELETE FROM journal_entries WHERE platform_id = $1 AND entry_id = $2", pid, ids[5]),
    )
    assert ("entry_deleted", ids[5]) in await findings(db, pid)


async def test_an_entry_inserted_behind_the_posting_path_is_named(pool) -> None:
    db, pid = await ledger_with_history(pool)
    cash, sales = [
        r["account_id"]
        for r in await pool.fetch(
            "SELECT account_id FROM accounts WHERE platform_id = $1 AND code IN ('cash', 'sales') ORDER BY code", pid
        )
    ]
    forged = await pool.fetchval("SELECT max(entry_id) + 1000 FROM journal_entries")
    await as_superuser(
        pool,
        (
            "INSERT INTO journal_entries (platform_id, entry_id, kind, idempotency_key, content_hash, effective_at) "
            "OVERRIDING SYSTEM VALUE VALUES ($1, $2, 'sale', 'forged', '\\x00', now())",
            pid,
            forged,
        ),
        (
            "INSERT INTO postings (platform_id, entry_id, account_id, amount, currency, balance_after, "
            "account_version) "
            "VALUES ($1, $2, $3, 5, 'IDR', 0, 999), ($1, $2, $4, -5, 'IDR', 0, 999)",
            pid,
            forged,
            cash,
            sales,
        ),
    )
    assert ("entry_unhashed", forged) in await findings(db, pid)


async def test_two_entries_reordered_in_a_block_are_named(pool) -> None:
    db, pid = await ledger_with_history(pool)
    await as_superuser(
        pool,
        ("UPDATE chain_members SET position = -1 WHERE platform_id = $1 AND block_no = 1 AND position = 0", pid),
        ("UPDATE chain_members SET position = 0 WHERE platform_id = $1 AND block_no = 1 AND position = 1", pid),
        ("UPDATE chain_members SET position = 1 WHERE platform_id = $1 AND block_no = 1 AND position = -1", pid),
    )
    assert ("entries_reordered", 1) in await findings(db, pid)


async def test_an_altered_account_balance_is_named(pool) -> None:
    db, pid = await ledger_with_history(pool)
    await as_superuser(
        pool, ("UPDATE accounts SET balance = balance + 1 WHERE platform_id = $1 AND code = 'cash'", pid)
    )
    assert {k for k, _ in await findings(db, pid)} == {"balance_mismatch"}


async def test_a_block_rewritten_with_its_hashes_is_caught_only_by_the_exported_checkpoint(pool) -> None:
    db, pid = await ledger_with_history(pool)
    exported = await latest_checkpoint(db, SIGNER, pid)
    assert chain.is_signed_by(exported)
    victim = (await entry_ids(pool, pid))[2]
    # A thorough forger with the sealing key: edit an entry, then recompute its hash, every block from
    # its block on, and sign them again.
    await as_superuser(
        pool,
        ("UPDATE journal_entries SET external_ref = 'forged' WHERE platform_id = $1 AND entry_id = $2", pid, victim),
    )
    entries = await db.read(lambda uow: uow.chain.entries(pid))
    postings = await db.read(lambda uow: uow.chain.postings(pid))
    forged_hash = chain.entry_hash(entries[victim], [p for p in postings if p.entry_id == victim])
    await as_superuser(
        pool, ("UPDATE entry_hashes SET hash = $3 WHERE platform_id = $1 AND entry_id = $2", pid, victim, forged_hash)
    )
    stored = await db.read(lambda uow: uow.chain.hashes(pid))
    members = await db.read(lambda uow: uow.chain.members(pid))
    prev = chain.GENESIS
    for block in await db.read(lambda uow: uow.chain.blocks(pid)):
        ids = [e for _, e in sorted(members[block.block_no])]
        root = chain.merkle_root([stored[i] for i in ids])
        digest = chain.block_hash(
            pid, block.block_no, block.entry_count, block.first_entry_id, block.last_entry_id, root, prev
        )
        signature = chain.sign(KEY, chain.checkpoint_statement(pid, block.block_no, digest, block.total_entries))
        await as_superuser(
            pool,
            (
                "UPDATE chain_blocks SET merkle_root = $3, prev_hash = $4, block_hash = $5, "
                "signature = $6 WHERE platform_id = $1 AND block_no = $2",
                pid,
                block.block_no,
                root,
                prev,
                digest,
                signature,
            ),
        )
        prev = digest
    assert await findings(db, pid) == []  # consistent inside the database …
    assert ("checkpoint_mismatch", exported.block_no) in await findings(db, pid, checkpoint=exported)  # … not outside


async def test_a_forged_checkpoint_is_refused(pool) -> None:
    db, pid = await ledger_with_history(pool)
    exported = await latest_checkpoint(db, SIGNER, pid)
    forged = msgspec.structs.replace(exported, total_entries=exported.total_entries + 1)
    assert not chain.is_signed_by(forged)
    assert ("checkpoint_invalid", exported.block_no) in await findings(db, pid, checkpoint=forged)


async def test_a_block_signed_with_another_key_is_named(pool) -> None:
    db, pid = await ledger_with_history(pool)
    other = Ed25519PrivateKey.generate()
    last = await db.read(lambda uow: uow.chain.last_block(pid))
    assert last is not None
    signature = chain.sign(other, chain.checkpoint_statement(pid, last.block_no, last.block_hash, last.total_entries))
    await as_superuser(
        pool,
        (
            "UPDATE chain_blocks SET signature = $3 WHERE platform_id = $1 AND block_no = $2",
            pid,
            last.block_no,
            signature,
        ),
    )
    assert ("signature_invalid", last.block_no) in await findings(db, pid)


async def test_an_inclusion_proof_leads_from_the_entry_to_the_signed_checkpoint(pool) -> None:
    db, pid = await ledger_with_history(pool)
    for entry_id in await entry_ids(pool, pid):
        proof = await inclusion_proof(db, SIGNER, pid, entry_id)
        root = chain.root_from_path(bytes.fromhex(proof.entry_hash), proof.path)
        assert root.hex() == proof.merkle_root
        digest = chain.block_hash(
            pid,
            proof.block_no,
            proof.entry_count,
            proof.first_entry_id,
            proof.last_entry_id,
            root,
            bytes.fromhex(proof.prev_hash),
        )
        assert digest.hex() == proof.block_hash == proof.checkpoint.block_hash
        assert chain.is_signed_by(proof.checkpoint)


async def test_sealing_never_seals_an_entry_twice_and_blocks_chain(pool) -> None:
    db, pid = await ledger_with_history(pool)
    assert await db.transaction(lambda uow: seal_platform(uow, SIGNER, pid, max_entries=100, sweep=True)) == 0
    blocks = await db.read(lambda uow: uow.chain.blocks(pid))
    assert [b.prev_hash for b in blocks[1:]] == [b.block_hash for b in blocks[:-1]]
    assert blocks[0].prev_hash == chain.GENESIS


async def test_concurrent_sealers_and_posting_seal_every_entry_exactly_once(pool) -> None:
    _, pid = await ledger_with_history(pool, entries=2)
    # 49 tasks queue for the pool's 8 connections: on a slow machine (or a cluster) the last waits
    # longer than the service's 2 s acquire timeout, which is not what this test is about.
    db = Database(pool, acquire_timeout_s=60)
    sealers = [Sealer(db, SIGNER, max_entries=7) for _ in range(3)]

    async def post(i: int) -> None:
        await db.ledger.post(
            pid, [build_entry(kind="sale", idempotency_key=f"more-{i}", postings={"cash": 10, "sales": -10})]
        )

    await asyncio.gather(*(post(i) for i in range(40)), *(s.seal_once() for s in sealers for _ in range(3)))
    await sealers[0].seal_once()
    members = await db.read(lambda uow: uow.chain.members(pid))
    sealed = [e for block in members.values() for _, e in block]
    assert sorted(sealed) == await entry_ids(pool, pid) and len(sealed) == len(set(sealed)) == 42
    assert await findings(db, pid) == []


@pytest.mark.parametrize("tamper", [False, True])
async def test_the_verify_command_exits_0_untouched_and_1_when_tampered(
    pool, database_url, tamper, capsys, monkeypatch, tmp_path
) -> None:
    key_file = tmp_path / "seal.key"
    monkeypatch.setenv("SPLITLEDGER_SEAL_KEY_FILE", str(key_file))
    db, pid = await ledger_with_history(pool)
    # the command uses the configured key: seal with it too
    signer = load_signer(load_settings())
    await as_superuser(
        pool,
        ("DELETE FROM chain_members WHERE platform_id = $1", pid),
        ("DELETE FROM chain_blocks WHERE platform_id = $1", pid),
    )
    await Sealer(db, signer).seal_once()
    out = tmp_path / "checkpoint.json"
    assert (
        await asyncio.to_thread(
            main, ["--database-url", database_url, "checkpoint", "--export", "--platform", pid, "--out", str(out)]
        )
        == 0
    )
    if tamper:
        await as_superuser(
            pool,
            (
                "UPDATE postings SET amount = amount + 1 WHERE platform_id = $1 AND posting_id = "
                "(SELECT min(posting_id) FROM postings WHERE platform_id = $1)",
                pid,
            ),
        )
    code = await asyncio.to_thread(
        main, ["--database-url", database_url, "verify", "--platform", pid, "--checkpoint", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == (1 if tamper else 0), printed
    assert ("entry_edited" in printed) == tamper
    assert printed.strip().splitlines()[-1].startswith("TAMPERED" if tamper else "verified")
