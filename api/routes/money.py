"""Where the money is and where it went: seller balances and statements, payouts, DOKU settlement
reports, and the reconciliation an operator opens every morning."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from api.bodies import Strict, decode_strict
from api.deps import HttpRequest, KeyedDep, PlatformId, ServicesDep
from api.idempotency import REQUIRED, answer
from api.params import RowId
from api.problems import ApiError
from api.routes.pages import Cursor, Limit, decode_cursor, encode_cursor, split_page
from api.schemas import PayoutConfirmIn, PayoutFailIn, PayoutIn, SettlementImportIn, payout_draft
from ledger import reports_csv
from ledger.balances import SellerBalances, SellerStatement, SellerStatementLine
from ledger.calendar import WIB
from ledger.payouts import Payout, PayoutStatus
from ledger.reconciliation import Reconciliation
from ledger.service import balances, exceptions, payouts, reconciliation, sellers
from ledger.service import settlement as settlement_service
from ledger.settlement import ImportSummary
from ledger.settlement_report import DEFAULT_MAPPING, Format, SettlementMapping, mapping_from_spec
from ledger.store.database import UnitOfWork
from ledger.store.exceptions import ReconciliationException
from ledger.views import ImportOut, import_out


class PayoutPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Payout]
    has_more: bool
    next_cursor: str | None


class ExceptionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ReconciliationException]
    has_more: bool
    next_cursor: str | None


class SellerStatementOut(msgspec.Struct, frozen=True, kw_only=True):
    """A statement page: ``lines`` oldest first, each with the running balance."""

    seller_id: str
    account: str
    lines: tuple[SellerStatementLine, ...]
    has_more: bool
    next_cursor: str | None


class ResolveIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What was done. ``action`` "note" (default) only records it; "capture" captures the order of a
    ``status_conflict`` whose evidence is DOKU's SUCCESS after FAILED/EXPIRED (DOKU did take the
    money); "write_off" books an ``adjustment``'s money from doku:suspense to platform:commission."""

    resolution: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, examples=["DOKU corrected the report"])]
    action: Literal["note", "capture", "write_off"] = "note"


def _csv(text: str, filename: str) -> Response[bytes]:
    return Response(
        text.encode(),
        media_type="text/csv",  # litestar adds "; charset=utf-8" to text/* itself
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


class SellerMoneyController(Controller):
    path = "/sellers/{seller_id:str}"
    tags = ["sellers"]

    @get("/balances", summary="Pending, available and debt now or as recorded at an instant")
    async def seller_balances(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        seller_id: FromPath[str],
        as_of: FromQuery[datetime | None] = None,
    ) -> SellerBalances:
        await sellers.get_seller(services.db, platform_id, seller_id)
        return await balances.seller_balances(services.db, platform_id, seller_id, as_of=as_of)

    @get("/statement", summary="Statement lines with running balance (JSON, or CSV with format=csv)")
    async def statement(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        seller_id: FromPath[str],
        account: FromQuery[Literal["all", "pending", "available", "debt"]] = "all",
        cursor: Cursor = None,
        limit: Limit = 100,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        format: FromQuery[Literal["json", "csv"]] = "json",
    ) -> Any:
        await sellers.get_seller(services.db, platform_id, seller_id)
        position = decode_cursor(cursor, tuple[int])
        after = position[0] if position else None
        if format == "json":
            page: SellerStatement = await balances.seller_statement(
                services.db,
                platform_id,
                seller_id,
                account=account,
                after=after,
                limit=limit,
                since=since,
                until=until,
            )
            next_cursor = encode_cursor(page.next_cursor) if page.next_cursor is not None else None
            return SellerStatementOut(
                seller_id=page.seller_id,
                account=page.account,
                lines=page.lines,
                has_more=next_cursor is not None,
                next_cursor=next_cursor,
            )
        lines: list[Any] = []
        position_id = after
        while True:
            part = await balances.seller_statement(
                services.db,
                platform_id,
                seller_id,
                account=account,
                after=position_id,
                limit=1000,
                since=since,
                until=until,
            )
            lines.extend(part.lines)
            if part.next_cursor is None:
                break
            position_id = part.next_cursor
        return _csv(reports_csv.statement_csv(lines), f"statement-{seller_id}.csv")


class PayoutController(Controller):
    path = "/payouts"
    tags = ["payouts"]

    @post(
        "/",
        summary="Pay a seller out (at most available minus debt; Idempotency-Key required)",
        status_code=201,
        dto=Strict[PayoutIn],
        return_dto=None,
        opt=REQUIRED,
    )
    async def create(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        data: JSONBody[PayoutIn],
    ) -> Response[Payout]:
        return await answer(
            request, keyed, lambda: payouts.create_payout(services.db, keyed, platform_id, payout_draft(data))
        )

    @get("/", summary="List payouts (keyset by creation time)")
    async def list_(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        seller_id: FromQuery[str | None] = None,
        status: FromQuery[PayoutStatus | None] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> PayoutPage:
        after = decode_cursor(cursor, tuple[datetime, str])
        found = await payouts.list_payouts(
            services.db, platform_id, seller_id=seller_id, status=status, after=after, limit=limit + 1
        )
        page, next_cursor = split_page(found, limit, lambda p: (p.created_at, p.payout_id))
        return PayoutPage(items=page, has_more=next_cursor is not None, next_cursor=next_cursor)

    @get("/{payout_id:str}", summary="One payout")
    async def get_one(self, services: ServicesDep, platform_id: PlatformId, payout_id: FromPath[str]) -> Payout:
        return await payouts.get_payout(services.db, platform_id, payout_id)

    @post(
        "/{payout_id:str}/confirm",
        summary="The bank confirmed the transfer: book it as paid",
        status_code=200,
        opt=REQUIRED,
    )
    async def confirm(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        payout_id: FromPath[str],
    ) -> Response[Payout]:
        body = await request.body()
        data = decode_strict(body, PayoutConfirmIn) if body.strip() else PayoutConfirmIn()
        return await answer(
            request,
            keyed,
            lambda: payouts.confirm_payout(services.db, keyed, platform_id, payout_id, reference=data.reference),
        )

    @post(
        "/{payout_id:str}/fail",
        summary="The transfer failed: the money returns to available",
        status_code=200,
        dto=Strict[PayoutFailIn],
        return_dto=None,
        opt=REQUIRED,
    )
    async def fail(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        payout_id: FromPath[str],
        data: JSONBody[PayoutFailIn],
    ) -> Response[Payout]:
        return await answer(
            request, keyed, lambda: payouts.fail_payout(services.db, keyed, platform_id, payout_id, reason=data.reason)
        )


def _report_input(
    request_body: bytes, content_type: str, query_mapping: str | None, source_header: str | None
) -> tuple[bytes, Format, SettlementMapping, str]:
    """A report as sent: a text/csv body (mapping in ``?mapping=``), or JSON ``{csv | lines, mapping}``."""
    source = source_header or "api"
    if content_type.startswith("text/csv"):
        return request_body, "csv", mapping_from_spec(query_mapping) if query_mapping else DEFAULT_MAPPING, source
    data: SettlementImportIn = decode_strict(request_body, SettlementImportIn)
    if (data.csv is None) == (data.lines is None):
        raise ApiError("invalid_request", "send exactly one of csv or lines")
    mapping = mapping_from_spec(data.mapping) if data.mapping else DEFAULT_MAPPING
    if data.csv is not None:
        return data.csv.encode(), "csv", mapping, data.source_name
    return msgspec.json.encode(data.lines), "json", mapping, data.source_name


SETTLEMENT_DESCRIPTION = """
Every row of DOKU's report is booked by its type, or becomes a reconciliation exception (never skipped).

Columns (the default mapping, the DOKU sandbox's; change any with `?mapping=field=Column,...` or the JSON
`mapping`): `invoice_number`, `gross_amount` (`gross`), `fee`, `net_amount` (`net`), `settlement_date`
(`settled_on`), `type`, `request_id` (`reference`: the Request-Id of the payment or refund). Amounts are
whole rupiah (`50000`, `50,000`, `50000.00`; `number_format=1.234,00` for Indonesian grouping).

Row types (`type` column; lists in the mapping: `payment_types`, `refund_types`, `chargeback_types`,
`adjustment_types`, `fee_correction_types`, `|`-separated in `?mapping=`):

- **payment** (PAYMENT, SUCCESS): gross > 0, fee, net = gross - fee. Dr platform:bank net,
  Dr doku:fees_withheld fee, Cr doku:clearing; the sellers' shares move from pending to available.
- **refund** (REFUND): the refund, the fee DOKU gives back on it (usually 0), the deduction; either sign.
  Dr doku:clearing, Cr platform:bank: the gateway refund (matched by `request_id`, else by amount) is deducted.
- **chargeback** (CHARGEBACK): like a refund row. The order is refunded by that amount (a refund of mode
  chargeback, reversed from each party under the order's refund policy) and the deduction is booked.
- **adjustment** (ADJUSTMENT): the signed net (+ DOKU adds, - DOKU deducts). Dr/Cr platform:bank against
  doku:suspense, and an `adjustment` exception: an operator books it where it belongs (`write_off`).
- **fee_correction** (FEE_CORRECTION): the signed net (+ DOKU gives fee back). Dr/Cr platform:bank against
  platform:commission (the allocation is frozen: the platform bears fee differences).

A row whose type the mapping does not know is an `unknown_line_type` exception; a report without a `type`
column is all payments. The same bytes are imported once: importing them again re-evaluates the report's
lines whose exceptions are still open (e.g. the order was captured meanwhile) and books those that now can be
(`reevaluated`, `rebooked`, `already_imported: true`).
"""


class SettlementController(Controller):
    path = "/settlements"
    tags = ["settlement"]

    @post(
        "/",
        summary="Import a DOKU settlement report, every row type booked: text/csv, or JSON {csv | lines, mapping}",
        description=SETTLEMENT_DESCRIPTION,
        status_code=201,
        opt={"body_media_types": ("application/json", "text/csv")},
    )
    async def import_report(
        self, request: HttpRequest, services: ServicesDep, platform_id: PlatformId, keyed: KeyedDep
    ) -> Response[ImportOut]:
        content, fmt, mapping, source = _report_input(
            await request.body(),
            request.headers.get("content-type", ""),
            request.query_params.get("mapping"),
            request.headers.get("x-source-name"),
        )

        async def run() -> ImportSummary:
            await keyed.check()
            summary: ImportSummary | None = None

            async def finish(uow: UnitOfWork, done: ImportSummary) -> None:
                nonlocal summary
                summary = done
                await keyed.finish_in(uow, done)

            result = await settlement_service.import_settlement_report(
                services.db,
                platform_id,
                source_name=source,
                content=content,
                mapping=mapping,
                fmt=fmt,
                on_finish=finish,
            )
            if summary is None:  # imported before: answer now
                return await keyed.finish(lambda uow: _same(result))
            return result

        return await answer(request, keyed, run, import_out)

    @get("/{report_id:str}", summary="An imported report with its lines")
    async def get_report(self, services: ServicesDep, platform_id: PlatformId, report_id: FromPath[str]) -> Any:
        return await settlement_service.get_report(services.db, platform_id, report_id)


async def _same(summary: ImportSummary) -> ImportSummary:
    return summary


class ReconciliationController(Controller):
    path = "/reconciliation"
    tags = ["reconciliation"]

    @get(
        "/",
        summary="What DOKU captured, refunded, settled and still owes; what sellers are owed and were paid",
        description=(
            "`clean` is true only when every rupiah in doku:clearing, doku:suspense, doku:fees_withheld and "
            "doku:deposit_refunds_in_flight is explained by an open item (`open_items`: an order awaiting "
            "settlement within T+2 working days, a refund awaiting DOKU's deduction, a deposit refund in flight, "
            "each by order, with aging buckets) and nothing else is wrong; `unexplained` shows the rest by "
            "account and by order. `view=capture_date` (default): the orders captured in the period and what "
            "became of them; `view=settlement_date`: each flow by its own date (DOKU's lines by settlement date)."
        ),
    )
    async def reconcile(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        period_start: FromQuery[date | None] = None,
        period_end: FromQuery[date | None] = None,
        view: FromQuery[Literal["capture_date", "settlement_date"]] = "capture_date",
        format: FromQuery[Literal["json", "csv"]] = "json",
    ) -> Any:
        """Period days are WIB calendar days, inclusive (default: yesterday and today); positions
        (owed by DOKU, open items, balances, open exceptions) are as of now."""
        end = period_end or datetime.now(WIB).date()
        start = period_start or end - timedelta(days=1)
        rec: Reconciliation = await reconciliation.reconcile(
            services.db,
            platform_id,
            period_start=start,
            period_end=end,
            settlement_days=services.settings.settlement_days,
            view=view,
        )
        if format == "csv":
            return _csv(reports_csv.reconciliation_csv(rec), f"reconciliation-{rec.period_start}.csv")
        return rec

    @get("/exceptions", summary="Reconciliation exceptions (unknown invoices, mismatched amounts, duplicates …)")
    async def exceptions(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        open_only: FromQuery[bool] = True,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> ExceptionPage:
        found = await exceptions.list_exceptions(
            services.db,
            platform_id,
            open_only=open_only,
            before=decode_cursor(cursor, tuple[datetime, int]),
            limit=limit + 1,
        )
        page, next_cursor = split_page(found, limit, lambda e: (e.created_at, e.exception_id))
        return ExceptionPage(items=page, has_more=next_cursor is not None, next_cursor=next_cursor)

    @post(
        "/exceptions/{exception_id:int}/resolve",
        summary="Resolve an exception with what was done (note; capture a status conflict; write off an adjustment)",
        status_code=200,
        dto=Strict[ResolveIn],
        return_dto=None,
    )
    async def resolve(
        self,
        request: HttpRequest,
        services: ServicesDep,
        platform_id: PlatformId,
        keyed: KeyedDep,
        exception_id: RowId,
        data: JSONBody[ResolveIn],
    ) -> Response[ReconciliationException]:
        return await answer(
            request,
            keyed,
            lambda: exceptions.resolve_exception(
                services.db, keyed, platform_id, exception_id, data.resolution, data.action
            ),
        )


def money_handlers() -> list[Any]:
    return [SellerMoneyController, PayoutController, SettlementController, ReconciliationController]
