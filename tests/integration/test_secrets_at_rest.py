"""DOKU Secret Keys at rest: encrypted with AES-256-GCM under a key the database never sees, bound to
their platform's row, refused in plaintext by the table, encrypted at start-up when a row predates
the rule, re-encrypted under a new key by the rotation command; the key file of the embedded default
is made with mode 0600 beside the data directory."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path

import asyncpg
import pytest

from api.cli import main
from api.database import EmbeddedPostgres
from api.keyring import KEY_FILE_NAME, generate_key, key_file_environment, load_keyring, parse_keys, read_key_file
from api.settings import load_settings
from ledger import errors
from ledger.service.gateways import configure_gateway, encrypt_secrets, get_gateway, reencrypt_secrets
from ledger.service.platforms import create_platform
from ledger.store import Database
from ledger.store.database import create_pool
from ledger.store.driver import constraint_name
from ledger.store.encryption import Keyring, Secret, key_id, key_id_of
from ledger.store.gateways import GatewaySettings

SECRET = "SK-very-secret-4711"


def keyring(*keys: str) -> Keyring:
    return Keyring([k for key in keys for k in parse_keys(key)])


async def _platform(db: Database, name: str = "Toko Rahasia") -> str:
    platform_id, _ = await create_platform(db, name)
    await configure_gateway(db, platform_id, GatewaySettings(client_id=f"MCH-{name[-4:]}", secret_key=SECRET))
    return platform_id


async def test_the_secret_is_stored_sealed_and_opens_only_with_the_key(database_url: str) -> None:
    key = generate_key()
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        db = Database(pool, keyring=keyring(key))
        platform_id = await _platform(db)
        row = await pool.fetchrow("SELECT * FROM gateways WHERE platform_id = $1", platform_id)
        assert row["secret_key"] is None
        encrypted = bytes(row["secret_key_encrypted"])
        assert SECRET.encode() not in encrypted and key_id_of(encrypted) == key_id(parse_keys(key)[0])
        gateway = await get_gateway(db, platform_id)
        assert gateway.secret_key.reveal() == SECRET
        assert SECRET not in repr(gateway) and SECRET not in str(gateway.secret_key)
        with pytest.raises(errors.SecretUnreadable):
            await get_gateway(Database(pool, keyring=keyring(generate_key())), platform_id)
        with pytest.raises(errors.SecretsKeyMissing):
            await get_gateway(Database(pool), platform_id)
    finally:
        await pool.close()


async def test_a_sealed_secret_moved_to_another_platform_does_not_open(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        db = Database(pool, keyring=keyring(generate_key()))
        a = await _platform(db, "Toko AAAA")
        b = await _platform(db, "Toko BBBB")
        # Read, then write (two statements: on Citus the two platforms' rows may be on two nodes).
        sealed = await pool.fetchval("SELECT secret_key_encrypted FROM gateways WHERE platform_id = $1", a)
        await pool.execute("UPDATE gateways SET secret_key_encrypted = $1 WHERE platform_id = $2", sealed, b)
        with pytest.raises(errors.SecretUnreadable):
            await get_gateway(db, b)
    finally:
        await pool.close()


async def test_the_table_refuses_a_plaintext_secret(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        platform_id = await _platform(Database(pool, keyring=keyring(generate_key())))
        with pytest.raises(asyncpg.exceptions.CheckViolationError) as refused:
            await pool.execute("UPDATE gateways SET secret_key = 'SK-plain' WHERE platform_id = $1", platform_id)
        assert constraint_name(refused.value) == "gateways_secret_key_not_plaintext"
    finally:
        await pool.close()


async def test_a_plaintext_secret_from_before_the_migration_is_sealed_at_start(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    ring = keyring(generate_key())
    db = Database(pool, keyring=ring)
    try:
        platform_id = await _platform(db)
        # What a row written before migration 0015 looks like (the rule is NOT VALID for old rows).
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("ALTER TABLE gateways DROP CONSTRAINT gateways_secret_key_not_plaintext")
            await conn.execute(
                "UPDATE gateways SET secret_key = 'SK-legacy', secret_key_encrypted = NULL WHERE platform_id = $1",
                platform_id,
            )
            await conn.execute(
                "ALTER TABLE gateways ADD CONSTRAINT gateways_secret_key_not_plaintext "
                "CHECK (secret_key IS NULL) NOT VALID"
            )
        assert (await get_gateway(db, platform_id)).secret_key == Secret("SK-legacy")  # readable until encrypted
        assert await encrypt_secrets(db) == 1
        row = await pool.fetchrow("SELECT * FROM gateways WHERE platform_id = $1", platform_id)
        assert row["secret_key"] is None and b"SK-legacy" not in bytes(row["secret_key_encrypted"])
        assert (await get_gateway(db, platform_id)).secret_key.reveal() == "SK-legacy"
        assert await encrypt_secrets(db) == 0
        with pytest.raises(errors.SecretUnreadable):  # the service refuses to start with the wrong key
            await encrypt_secrets(Database(pool, keyring=keyring(generate_key())))
    finally:
        await pool.close()


async def test_rotation_reseals_every_secret_under_the_new_key(database_url: str) -> None:
    old, new = generate_key(), generate_key()
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        ids = [await _platform(Database(pool, keyring=keyring(old)), f"Toko {n:04d}") for n in range(3)]
        both = Database(pool, keyring=keyring(f"{new},{old}"))
        assert await reencrypt_secrets(both) == 3
        assert await reencrypt_secrets(both) == 0
        only_new = Database(pool, keyring=keyring(new))
        for platform_id in ids:
            assert (await get_gateway(only_new, platform_id)).secret_key.reveal() == SECRET
            with pytest.raises(errors.SecretUnreadable):
                await get_gateway(Database(pool, keyring=keyring(old)), platform_id)
    finally:
        await pool.close()


async def test_the_rotate_command_with_a_key_file(database_url: str, tmp_path: Path, monkeypatch, capsys) -> None:
    key_file = tmp_path / "secrets.key"
    first = generate_key()
    key_file.write_text(first + "\n")
    key_file.chmod(0o600)
    monkeypatch.delenv("SPLITLEDGER_SECRETS_KEY", raising=False)
    monkeypatch.setenv("SPLITLEDGER_SECRETS_KEY_FILE", str(key_file))
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        running = Database(pool, keyring=load_keyring(load_settings()))  # a service reading the same file
        platform_id = await _platform(running)
        argv = ["--database-url", database_url, "rotate-secrets-key"]
        assert await asyncio.to_thread(main, argv) == 0
        assert "re-encrypted 1 DOKU secret key(s)" in capsys.readouterr().out
        keys = read_key_file(key_file)
        assert len(keys) == 1 and keys != parse_keys(first)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        encrypted = await pool.fetchval("SELECT secret_key_encrypted FROM gateways WHERE platform_id = $1", platform_id)
        assert key_id_of(bytes(encrypted)) == key_id(keys[0])
        # The running service meets a key it does not know, reads the file again, and still opens it.
        assert (await get_gateway(running, platform_id)).secret_key.reveal() == SECRET
        with pytest.raises(errors.SecretUnreadable):
            await get_gateway(Database(pool, keyring=keyring(first)), platform_id)
    finally:
        await pool.close()


async def test_the_rotate_command_with_keys_in_the_environment(database_url: str, monkeypatch, capsys) -> None:
    old, new = generate_key(), generate_key()
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        platform_id = await _platform(Database(pool, keyring=keyring(old)))
        monkeypatch.setenv("SPLITLEDGER_SECRETS_KEY", f"{new},{old}")
        assert await asyncio.to_thread(main, ["--database-url", database_url, "rotate-secrets-key"]) == 0
        assert "re-encrypted 1" in capsys.readouterr().out
        assert (await get_gateway(Database(pool, keyring=keyring(new)), platform_id)).secret_key.reveal() == SECRET
    finally:
        await pool.close()


def test_the_embedded_default_makes_a_private_key_file_beside_its_data_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SPLITLEDGER_SECRETS_KEY", raising=False)
    monkeypatch.delenv("SPLITLEDGER_SECRETS_KEY_FILE", raising=False)
    embedded = EmbeddedPostgres(tmp_path / "data" / "pgdata")  # not started: only its place matters
    environment = key_file_environment(embedded)
    path = Path(environment["SPLITLEDGER_SECRETS_KEY_FILE"])
    assert path == tmp_path / "data" / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.urlsafe_b64decode(path.read_text().strip())) == 32
    again = key_file_environment(embedded)
    assert again == environment and read_key_file(path) == read_key_file(Path(again["SPLITLEDGER_SECRETS_KEY_FILE"]))
    ring = load_keyring(load_settings({}), embedded)
    assert ring.current_id == key_id(read_key_file(path)[0])


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    path.write_text(generate_key())
    os.chmod(path, 0o644)
    with pytest.raises(errors.SecretsKeyMissing):
        load_keyring(load_settings({}, secrets_key_file=str(path)))


def test_without_a_key_and_with_a_database_of_its_own_the_service_does_not_start() -> None:
    with pytest.raises(errors.SecretsKeyMissing):
        load_keyring(load_settings({}, database_url="postgresql://db.example/ledger"))
    for bad in ("not base64!", base64.urlsafe_b64encode(b"short").decode()):
        with pytest.raises(errors.SecretsKeyMissing):
            load_keyring(load_settings({}, secrets_key=bad))
