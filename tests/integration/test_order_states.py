"""The order's state machine as docs/order-states.md writes it down, row by row, on real PostgreSQL:
DOKU's word moves an order (and its money) only as the table says; a contradiction moves no money,
opens a ``status_conflict`` with the evidence, and an operator resolving it captures the order."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.keyring import generate_key, parse_keys
from ledger import errors
from ledger.service import capture as capture_service
from ledger.service import exceptions, gateways, orders
from ledger.service.capture import Applied, Member, PaymentWord
from ledger.service.gateway import PaymentStatus
from ledger.service.settlement import import_settlement_report
from ledger.store import Database
from ledger.store.encryption import Keyring
from ledger.store.gateways import GatewaySettings
from ledger.store.inbox import Delivery
from tests.integration.marketplace_fixtures import (  # noqa: F401 (market_pool is a fixture)
    Market,
    line_for,
    market_pool,
    new_market,
    plain,
    report_csv,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "order-states.md"


def table_rows() -> list[tuple[str, str, str, str, str, str]]:
    """The rows of the table under "## DOKU's word"."""
    text = DOC.read_text()
    section = text[text.index("## DOKU's word") : text.index("## A contradiction")]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] not in ("order status", "") and not set(cells[0]) <= {"-"}:
            rows.append(tuple(cells))
    return rows  # type: ignore[return-value]


ROWS = table_rows()


def test_the_table_is_read_whole():
    assert len(ROWS) >= 18
    assert {row[0] for row in ROWS} == {"created", "send_failed", "pending", "captured", "failed", "expired"}


class DirectApply:
    """A batcher whose every batch is one word, applied at once (``apply_words``, in a transaction)."""

    def __init__(self, m: Market) -> None:
        self.m = m

    async def apply(self, platform_id: str, word: PaymentWord | None, delivery: Delivery | None = None) -> Applied:
        member = Member(word=word, delivery=delivery)
        (applied,) = await self.m.db.transaction(lambda uow: capture_service.apply_words(uow, platform_id, [member]))
        return applied


async def order_in(m: Market, invoice: str, status: str):
    order = await m.add_order(invoice, {"alice": 50_000}, capture=status == "captured")
    if status in ("send_failed", "pending", "failed", "expired"):
        reason = {"failed": "doku_failed", "expired": "doku_expired"}.get(status)
        await m.db.transaction(
            lambda uow: uow.orders.set_status(m.pid, invoice, status, closed_reason=reason)  # type: ignore[arg-type]
        )
    return order


async def counts(m: Market) -> tuple[int, list[str]]:
    entries = await m.pool.fetchval("SELECT count(*) FROM journal_entries WHERE platform_id = $1", m.pid)
    kinds = [k for k, _ in await m.exception_kinds()]
    return entries, kinds


@pytest.mark.parametrize(("status", "says", "outcome", "becomes", "money", "exception"), ROWS)
async def test_dokus_word_moves_the_order_as_the_table_says(
    market_pool, status, says, outcome, becomes, money, exception
):
    m = await new_market(market_pool, "alice")
    order = await order_in(m, "INV-1", status)
    before_entries, before_kinds = await counts(m)
    doku_status, _, other = says.partition(", ")
    amount = order.amount + (1 if other == "another amount" else 0)

    got = await orders.apply_payment_status(
        DirectApply(m),  # type: ignore[arg-type]
        m.pid,
        "INV-1",
        amount,
        doku_status,
        "2024-05-03T03:00:00Z",
        "notification",
    )

    assert got == outcome
    after = await m.order("INV-1")
    assert after.status == becomes
    entries, kinds = await counts(m)
    assert entries - before_entries == (1 if money == "capture entry" else 0)
    assert kinds[len(before_kinds) :] == ([exception] if exception else [])
    if exception == "status_conflict":
        (found,) = await exceptions.list_exceptions(m.db, m.pid)
        (evidence,) = found.detail["evidence"]
        assert (evidence["doku_status"], evidence["amount"], evidence["order_status"], evidence["source"]) == (
            doku_status,
            amount,
            status,
            "notification",
        )
        assert (found.expected, found.actual) == (order.amount, amount)


async def test_a_second_contradiction_adds_evidence_to_the_open_conflict(market_pool):
    m = await new_market(market_pool, "alice")
    await order_in(m, "INV-1", "captured")
    batcher = DirectApply(m)
    for status in ("FAILED", "EXPIRED"):
        outcome = await orders.apply_payment_status(batcher, m.pid, "INV-1", 50_000, status, None, "notification")  # type: ignore[arg-type]
        assert outcome == "conflict"
    (found,) = await exceptions.list_exceptions(m.db, m.pid)
    assert [e["doku_status"] for e in found.detail["evidence"]] == ["FAILED", "EXPIRED"]
    assert (await m.order("INV-1")).status == "captured"


class AnswersSuccess:
    """A DOKU whose status API says SUCCESS (as a status check after a contradiction asks it)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def check_status(self, gateway: object, invoice_number: str) -> PaymentStatus:
        self.asked.append(invoice_number)
        return PaymentStatus(
            invoice_number=invoice_number, amount=50_000, status="SUCCESS", date="2024-05-03T03:00:00Z"
        )


async def test_success_after_failure_is_captured_only_by_the_operator_and_the_report_is_then_rebooked(market_pool):
    m = await new_market(market_pool, "alice")
    await order_in(m, "INV-1", "failed")
    # A gateway for the status check to read (its secret sealed under a throwaway key).
    m.db = Database(m.pool, keyring=Keyring(parse_keys(generate_key())))
    await gateways.configure_gateway(m.db, m.pid, GatewaySettings(client_id=f"MCH-{m.pid}", secret_key="SK-x"))
    # DOKU's settlement report comes first: the order is not captured, so its line is an exception.
    report = report_csv([("INV-1", 50_000, 0, 50_000, "2024-05-06")])
    first = await import_settlement_report(m.db, m.pid, source_name="r.csv", content=report)
    assert first.exceptions == {"not_captured": 1}

    # DOKU says SUCCESS: nothing moves, a conflict opens; the status check adds DOKU's own answer.
    outcome = await orders.apply_payment_status(
        DirectApply(m),  # type: ignore[arg-type]
        m.pid,
        "INV-1",
        50_000,
        "SUCCESS",
        "2024-05-03T03:00:00Z",
        "notification",
    )
    assert outcome == "conflict" and (await m.order("INV-1")).status == "failed"
    doku = AnswersSuccess()
    await orders.check_order_status(m.db, doku, DirectApply(m), plain(m.db, m.pid), m.pid, "INV-1")  # type: ignore[arg-type]
    assert doku.asked == ["INV-1"]
    conflict = next(e for e in await exceptions.list_exceptions(m.db, m.pid) if e.kind == "status_conflict")
    assert [c["status"] for c in conflict.detail["status_checks"]] == ["SUCCESS"]
    assert (await m.order("INV-1")).status == "failed"  # the status check moved nothing either

    # The operator captures it; re-importing the report books the line and resolves its exception.
    resolved = await exceptions.resolve_exception(
        m.db, plain(m.db, m.pid), m.pid, conflict.exception_id, "DOKU confirmed it", "capture"
    )
    assert resolved.resolved_at is not None and resolved.detail["resolution"].startswith("capture:")
    order = await m.order("INV-1")
    assert (order.status, order.closed_reason, order.captured_at.isoformat()) == (
        "captured",
        None,
        "2024-05-03T03:00:00+00:00",
    )
    again = await import_settlement_report(m.db, m.pid, source_name="r.csv", content=report)
    assert (again.already_imported, again.reevaluated, again.rebooked) == (True, 1, 1)
    assert (again.booked, again.exceptions) == (1, {})
    assert (await m.order("INV-1")).settled_at is not None
    assert await exceptions.list_exceptions(m.db, m.pid) == []  # both resolved
    assert (await m.store.trial_balance(m.pid)).is_balanced


async def test_capture_is_refused_for_an_exception_it_does_not_fit(market_pool):
    m = await new_market(market_pool, "alice")
    await order_in(m, "INV-1", "captured")
    await orders.apply_payment_status(DirectApply(m), m.pid, "INV-1", 50_000, "FAILED", None, "notification")  # type: ignore[arg-type]
    (conflict,) = await exceptions.list_exceptions(m.db, m.pid)
    before = await m.snapshot()
    with pytest.raises(errors.ExceptionActionInvalid) as refused:
        await exceptions.resolve_exception(m.db, plain(m.db, m.pid), m.pid, conflict.exception_id, "x", "capture")
    assert refused.value.code == "exception_action_invalid"
    with pytest.raises(errors.ExceptionActionInvalid):
        await exceptions.resolve_exception(m.db, plain(m.db, m.pid), m.pid, conflict.exception_id, "x", "write_off")
    assert await m.snapshot() == before
    # A note resolves it; the order stays captured.
    done = await exceptions.resolve_exception(m.db, plain(m.db, m.pid), m.pid, conflict.exception_id, "stale FAILED")
    assert done.resolved_at is not None and (await m.order("INV-1")).status == "captured"
