"""A platform's DOKU merchant account: credentials, DOKU's fee and the platform's default commission.

Rule: a base URL or refund path that could send the platform's signed requests anywhere but DOKU
(``ledger.gateway_urls``) is refused before anything is stored; the Secret Key is stored encrypted
(``ledger.store.gateways``). ``encrypt_secrets``/``reencrypt_secrets`` are the start-up and rotation steps.
"""

from __future__ import annotations

from ledger import errors
from ledger.gateway_urls import base_url_problem, refund_path_problem
from ledger.store.database import Database
from ledger.store.gateways import Gateway, GatewaySettings


def check_gateway_urls(settings: GatewaySettings, *, allow_loopback_http: bool) -> None:
    if settings.base_url is not None:
        problem = base_url_problem(settings.base_url, allow_loopback_http=allow_loopback_http)
        if problem is not None:
            raise errors.InvalidBaseUrl(f"base_url: {problem}")
    if settings.refund_path is not None:
        problem = refund_path_problem(settings.refund_path)
        if problem is not None:
            raise errors.InvalidRefundPath(f"refund_path: {problem}")


async def configure_gateway(
    db: Database, platform_id: str, settings: GatewaySettings, *, allow_loopback_http: bool = False
) -> Gateway:
    check_gateway_urls(settings, allow_loopback_http=allow_loopback_http)
    return await db.transaction(lambda uow: uow.gateways.configure(platform_id, settings))


async def get_gateway(db: Database, platform_id: str) -> Gateway:
    return await db.read(lambda uow: uow.gateways.get(platform_id))


async def gateway_for_client_id(db: Database, client_id: str) -> Gateway | None:
    return await db.read(lambda uow: uow.gateways.for_client_id(client_id))


async def encrypt_secrets(db: Database) -> int:
    """Encrypt the secrets still stored in plaintext; refuse to go on if any encrypted one does not open."""
    encrypted = await db.transaction(lambda uow: uow.gateways.encrypt_plaintext())
    unreadable = await db.read(lambda uow: uow.gateways.unreadable())
    if unreadable:
        raise errors.SecretUnreadable(
            f"the secrets key does not open the DOKU Secret Key of {len(unreadable)} platform(s) "
            f"({', '.join(unreadable[:5])}): start with the key they were encrypted under",
            platforms=unreadable,
        )
    return encrypted


async def reencrypt_secrets(db: Database) -> int:
    """Re-encrypt every secret under the keyring's first key (key rotation); the count re-encrypted."""
    return await db.transaction(lambda uow: uow.gateways.reencrypt())
