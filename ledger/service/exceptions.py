"""Reconciliation exceptions an operator reads and resolves (with a note of what was done).

Resolving is a note by default; two actions also move money, in the transaction that resolves:
* ``capture``: a ``status_conflict`` whose evidence is DOKU's SUCCESS for an order that failed or
  expired: DOKU did take the money, so the order is captured now (the one capture path, reopened).
  Importing the order's settlement report again then books the lines that were ``not_captured``.
* ``write_off``: an ``adjustment`` DOKU made: its money leaves ``doku:suspense`` for
  ``platform:commission`` (the platform bears a deduction, or keeps an addition).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from ledger import bookings, chart, errors, settlement
from ledger.orders import STATUS_CONFLICT, CaptureRequest
from ledger.service.capture import capture_batch
from ledger.service.events import exception_resolved
from ledger.service.gateway import PaymentStatus, Unreachable
from ledger.service.idempotency import Keyed
from ledger.store.database import Database, UnitOfWork
from ledger.store.exceptions import ReconciliationException

Action = Literal["note", "capture", "write_off"]


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
    db: Database, keyed: Keyed, platform_id: str, exception_id: int, resolution: str, action: Action = "note"
) -> ReconciliationException:
    async def resolve(uow: UnitOfWork) -> ReconciliationException:
        found = await uow.exceptions.get(platform_id, exception_id, for_update=True)
        if found is None:
            raise errors.ExceptionNotFound(f"no reconciliation exception {exception_id}")
        if action != "note":
            if found.resolved_at is not None:
                raise errors.ExceptionActionInvalid(f"exception {exception_id} is resolved already")
            if action == "capture":
                await _capture(uow, platform_id, found)
            else:
                await _write_off(uow, platform_id, found)
        resolved = await uow.exceptions.resolve(
            platform_id, exception_id, resolution if action == "note" else f"{action}: {resolution}"
        )
        assert resolved is not None
        exception_resolved(uow, platform_id, resolved)
        return resolved

    return await keyed.finish(resolve)


async def _capture(uow: UnitOfWork, platform_id: str, found: ReconciliationException) -> None:
    """Capture an order that failed or expired, as DOKU's SUCCESS in the evidence says."""
    success = [e for e in found.detail.get("evidence", []) if e.get("doku_status") == "SUCCESS"]
    if found.kind != STATUS_CONFLICT or not success or found.invoice_number is None:
        raise errors.ExceptionActionInvalid("only a status_conflict with DOKU's SUCCESS in its evidence is captured")
    said = success[-1]
    request = CaptureRequest(
        invoice_number=found.invoice_number,
        amount=int(said["amount"]),
        at=_doku_time(said.get("date")),
        source="operator",
    )
    (result,) = await capture_batch(uow, platform_id, [request], reopen=True)
    if result.outcome != "captured":
        raise errors.ExceptionActionInvalid(
            f"order {found.invoice_number!r} cannot be captured: {result.outcome}", outcome=result.outcome
        )


async def _write_off(uow: UnitOfWork, platform_id: str, found: ReconciliationException) -> None:
    """Move an adjustment's money from doku:suspense to platform:commission."""
    if found.kind != settlement.ADJUSTMENT or not found.actual:
        raise errors.ExceptionActionInvalid("only an adjustment's money in doku:suspense is written off")
    await uow.ledger.lock_balances(platform_id, [chart.SUSPENSE, chart.COMMISSION])
    entry = bookings.suspense_release_entry(found.exception_id, amount=found.actual, to=chart.COMMISSION)
    await uow.ledger.post_one(platform_id, entry)


def _doku_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- contradicting words from DOKU --------------------------------------------------------------


async def record_status_check(
    uow: UnitOfWork, platform_id: str, invoice_number: str, answer: PaymentStatus | Unreachable
) -> None:
    """DOKU's answer to a status check, kept on the order's open conflicts (nothing else changes)."""
    open_ = await uow.exceptions.open_of(platform_id, invoice_number, STATUS_CONFLICT)
    if not open_:
        return
    checked: dict[str, Any] = {"checked_at": datetime.now(UTC).isoformat()}
    if isinstance(answer, Unreachable):
        checked |= {"unreachable": answer.code, "detail": answer.detail}
    else:
        checked |= {"status": answer.status.upper(), "amount": answer.amount, "date": answer.date}
    await uow.exceptions.add_evidence(platform_id, [e.exception_id for e in open_], "status_checks", checked)
