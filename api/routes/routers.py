"""Which handlers the app mounts: public ones at the root, platform ones under ``/v1``."""

from __future__ import annotations

from typing import Any

from api.routes.chain import chain_handlers
from api.routes.events import event_handlers
from api.routes.health import health, metrics
from api.routes.keys import key_handlers
from api.routes.ledger import LedgerController
from api.routes.marketplace import marketplace_handlers
from api.routes.money import money_handlers
from api.routes.notifications import notification_handler
from api.routes.seller_updates import seller_update_handlers
from api.routes.webhooks import webhook_handlers
from api.settings import Settings


def public_handlers(settings: Settings) -> list[Any]:
    return [health, metrics, notification_handler(settings.notification_path)]


def v1_handlers() -> list[Any]:
    return [
        LedgerController,
        *chain_handlers(),
        *marketplace_handlers(),
        *money_handlers(),
        *event_handlers(),
        *webhook_handlers(),
        *key_handlers(),
        *seller_update_handlers(),
    ]
