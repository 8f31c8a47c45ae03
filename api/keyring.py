"""Where the key that encrypts DOKU Secret Keys comes from (``ledger.store.encryption.Keyring``).

Rules, first match wins:
1. ``SPLITLEDGER_SECRETS_KEY``: base64 of 32 bytes, or several comma-separated (the first encrypts,
   every one opens: that is how a rotation is rolled out);
2. ``SPLITLEDGER_SECRETS_KEY_FILE``: a file of such keys, one a line, first line encrypting; it must
   exist and be readable by its owner only (mode 0600);
3. the embedded PostgreSQL (no ``DATABASE_URL``): the key file ``secrets.key`` beside its data
   directory, made on first use (mode 0600), so the two-command start needs no setup;
4. otherwise the service refuses to start: with a database of its own, the key is the operator's.
The key is never logged and never leaves the process except in the file it came from.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import stat
from pathlib import Path

from api.database import EmbeddedPostgres
from api.settings import Settings
from ledger import errors
from ledger.store.encryption import KEY_BYTES, Keyring

KEY_FILE_NAME = "secrets.key"


def generate_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_keys(text: str) -> list[bytes]:
    keys = []
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            key = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError) as exc:
            raise errors.SecretsKeyMissing("a secrets key is base64 of 32 bytes") from exc
        if len(key) != KEY_BYTES:
            raise errors.SecretsKeyMissing(f"a secrets key is base64 of {KEY_BYTES} bytes, not {len(key)}")
        keys.append(key)
    if not keys:
        raise errors.SecretsKeyMissing("no secrets key given")
    return keys


def embedded_key_file(embedded: EmbeddedPostgres) -> Path:
    """The key file beside the embedded PostgreSQL's data directory (made with a fresh key if absent)."""
    path = embedded.data_dir.parent / KEY_FILE_NAME
    if not path.exists():
        write_key_file(path, [generate_key()], exclusive=True)
    return path


def read_key_file(path: Path) -> list[bytes]:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise errors.SecretsKeyMissing(f"{path} is readable by others: chmod 600 it")
        return parse_keys(path.read_text())
    except FileNotFoundError as exc:
        raise errors.SecretsKeyMissing(f"no secrets key file at {path}") from exc


def write_key_file(path: Path, keys: list[str], *, exclusive: bool = False) -> None:
    """Write ``keys`` (first line encrypts) to ``path`` atomically, mode 0600 from the first byte.

    ``exclusive``: only if no file is there yet (two processes starting at once agree on one key).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(keys) + "\n")
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            with contextlib.suppress(FileExistsError):  # another process made it first: theirs it is
                os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def key_file_of(settings: Settings, embedded: EmbeddedPostgres | None) -> Path | None:
    """The key file in use, or None when the key comes from the environment."""
    if settings.secrets_key:
        return None
    if settings.secrets_key_file:
        return Path(settings.secrets_key_file).expanduser()
    if embedded is not None:
        return embedded_key_file(embedded)
    raise errors.SecretsKeyMissing(
        "DOKU Secret Keys are stored encrypted: set SPLITLEDGER_SECRETS_KEY (base64 of 32 random bytes) "
        "or SPLITLEDGER_SECRETS_KEY_FILE"
    )


def load_keyring(settings: Settings, embedded: EmbeddedPostgres | None = None) -> Keyring:
    path = key_file_of(settings, embedded)
    if path is None:
        return Keyring(parse_keys(settings.secrets_key))
    return Keyring(read_key_file(path), reload=lambda: read_key_file(path))


def key_file_environment(embedded: EmbeddedPostgres | None) -> dict[str, str]:
    """What a process serving the embedded database's data must be told to find its key file."""
    if embedded is None or os.environ.get("SPLITLEDGER_SECRETS_KEY") or os.environ.get("SPLITLEDGER_SECRETS_KEY_FILE"):
        return {}
    return {"SPLITLEDGER_SECRETS_KEY_FILE": str(embedded_key_file(embedded))}
