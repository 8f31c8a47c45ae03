"""Where the sealing key comes from: ``SPLITLEDGER_SEAL_KEY`` (base64 of a raw 32-byte Ed25519 private
key), or ``SPLITLEDGER_SEAL_KEY_FILE``, or — the embedded default — a key generated once beside the
data directory (``<data dir>/seal.key``, mode 0600), so the two-command start needs nothing.
``SPLITLEDGER_SEAL_RETIRED_KEYS`` lists retired public keys (hex, comma-separated) verify still accepts.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from api.database import default_data_dir
from api.settings import Settings
from ledger.service.sealer import Signer


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def generate_key_file(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(base64.b64encode(_raw(key)) + b"\n")
    return key


def _from_text(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text.strip()))


def load_signer(settings: Settings) -> Signer:
    if settings.seal_key:
        private = _from_text(settings.seal_key)
    else:
        path = Path(settings.seal_key_file) if settings.seal_key_file else default_data_dir() / "seal.key"
        try:
            private = _from_text(path.read_text())
        except FileNotFoundError:
            try:
                private = generate_key_file(path)
            except FileExistsError:  # another process made it first
                private = _from_text(path.read_text())
    retired = tuple(
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(k)) for k in settings.seal_retired_keys.split(",") if k
    )
    return Signer(private, retired)
