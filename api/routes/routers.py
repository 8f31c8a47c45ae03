"""Which handlers the app mounts: public ones at the root, platform ones under ``/v1``."""

from __future__ import annotations

from typing import Any

from api.settings import Settings


def public_handlers(settings: Settings) -> list[Any]:
    from api.routes.health import health, metrics

    handlers: list[Any] = [health, metrics]
    try:
        from api.routes.notifications import notification_handler
    except ImportError:
        return handlers
    return [*handlers, notification_handler(settings.notification_path)]


def v1_handlers() -> list[Any]:
    from api.routes.ledger import LedgerController

    handlers: list[Any] = [LedgerController]
    try:
        from api.routes.marketplace import marketplace_handlers
    except ImportError:
        return handlers
    return [*handlers, *marketplace_handlers()]
