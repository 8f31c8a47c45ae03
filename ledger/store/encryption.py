"""Secrets at rest: DOKU Secret Keys encrypted with AES-256-GCM before they reach the database.

Rules:
* An encrypted value is ``version (1 byte) ‖ key id (8) ‖ nonce (12, random) ‖ ciphertext ‖ tag (16)``.
  The key id is the first 8 bytes of SHA-256 of the key: it names the key without revealing it.
* The associated data binds an encrypted value to its row (``context``, e.g. ``gateways:<platform>``):
  an encrypted secret copied into another platform's row does not open.
* A ``Keyring`` encrypts with its first key and decrypts with any of its keys; rotation re-encrypts every
  value under the first key (``ledger.store.gateways.GatewaysTable.reencrypt``). Keys come from the
  environment or a key file (``api.keyring``); a keyring built from a file re-reads it before it
  encrypts and when it meets a key it does not know (another process rotated).
* A decrypted secret is a ``Secret``: its ``repr`` is ``Secret(***)``, so a record holding one can be
  logged; ``reveal()`` is called only where the secret signs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger import errors

VERSION = b"\x01"
KEY_BYTES = 32
_ID = slice(1, 9)
_NONCE = slice(9, 21)


class Secret:
    """A secret that says nothing about itself when printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:8]


def key_id_of(encrypted: bytes) -> bytes:
    return bytes(encrypted[_ID])


class Keyring:
    def __init__(self, keys: Sequence[bytes], *, reload: Callable[[], Sequence[bytes]] | None = None) -> None:
        self._reload = reload
        self._set(keys)

    def _set(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise errors.SecretsKeyMissing("no key to encrypt secrets with")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise errors.SecretsKeyMissing(f"a secrets key is {KEY_BYTES} bytes, not {len(key)}")
        self._keys = {key_id(key): AESGCM(key) for key in keys}
        self.current_id = key_id(keys[0])
        self._current = self._keys[self.current_id]

    def knows(self, encrypted: bytes) -> bool:
        if key_id_of(encrypted) in self._keys:
            return True
        if self._reload is not None:
            self._set(self._reload())
        return key_id_of(encrypted) in self._keys

    def encrypt(self, plaintext: str, context: str) -> bytes:
        if self._reload is not None:  # a key file may have been rotated since: encrypt with its first key
            self._set(self._reload())
        nonce = os.urandom(12)
        return VERSION + self.current_id + nonce + self._current.encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, encrypted: bytes, context: str) -> Secret:
        encrypted = bytes(encrypted)
        if encrypted[:1] != VERSION or len(encrypted) < 21 + 16:
            raise errors.SecretUnreadable("not an encrypted secret")
        if not self.knows(encrypted):
            raise errors.SecretUnreadable(
                f"encrypted under a key this service does not have ({key_id_of(encrypted).hex()})"
            )
        try:
            plain = self._keys[key_id_of(encrypted)].decrypt(bytes(encrypted[_NONCE]), encrypted[21:], context.encode())
        except InvalidTag as exc:
            raise errors.SecretUnreadable(
                "the encrypted secret does not open (altered, or moved from another row)"
            ) from exc
        return Secret(plain.decode())
