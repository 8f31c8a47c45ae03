"""Reconciliation exceptions an operator reads and resolves (with a note of what was done)."""

from __future__ import annotations

from datetime import datetime

from ledger import errors
from ledger.service.events import exception_resolved
from ledger.service.idempotency import Keyed
from ledger.store.database import Database, UnitOfWork
from ledger.store.exceptions import ReconciliationException


async def list_exceptions(
    db: Database,
    platform_id: str,
    *,
    open_only: bool = True,
    before: tuple[datetime, int] | None = None,
    limit: int = 100,
) -> list[ReconciliationException]:
    """Newest first; ``before`` is the ``(created_at, exception_id)`` of the last one seen."""
    return await db.read(lambda uow: uow.exceptions.page(platform_id, open_only=open_only, before=before, limit=limit))


async def resolve_exception(
    db: Database, keyed: Keyed, platform_id: str, exception_id: int, resolution: str
) -> ReconciliationException:
    async def resolve(uow: UnitOfWork) -> ReconciliationException:
        found = await uow.exceptions.resolve(platform_id, exception_id, resolution)
        if found is None:
            raise errors.ExceptionNotFound(f"no reconciliation exception {exception_id}")
        exception_resolved(uow, platform_id, found)
        return found

    return await keyed.finish(resolve)
