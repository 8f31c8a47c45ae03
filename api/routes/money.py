"""Where the money is and where it went: seller balances and statements, payouts, DOKU settlement
reports, and the reconciliation an operator opens every morning."""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from api.app import PlatformId, ServicesDep
from api.idempotency import idempotent
from api.problems import ApiError
from api.routes.marketplace import decode_cursor, json_response, page_size, split_page
from api.schemas import (
    PayoutConfirmIn,
    PayoutFailIn,
    PayoutIn,
    SettlementImportIn,
    strict,
)
from ledger import balances, payouts, reconciliation, sellers, settlement
from ledger.balances import SellerBalances, SellerStatement
from ledger.payouts import Payout
from ledger.reconciliation import WIB, Reconciliation
from ledger.settlement import ImportSummary


class PayoutPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Payout]
    next_cursor: str | None


class ExceptionOut(msgspec.Struct, frozen=True, kw_only=True):
    exception_id: int
    kind: str
    source: str
    invoice_number: str | None
    expected: int | None
    actual: int | None
    detail: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None


def _csv(text: str, filename: str) -> Response:
    return Response(
        text.encode(),
        media_type="text/csv; charset=utf-8",
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
        await sellers.get_seller(services.pool, platform_id, seller_id)
        return await balances.seller_balances(services.ledger, platform_id, seller_id, as_of=as_of)

    @get("/statement", summary="Statement lines with running balance (JSON, or CSV with format=csv)")
    async def statement(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        seller_id: FromPath[str],
        account: FromQuery[Literal["all", "pending", "available", "debt"]] = "all",
        after: FromQuery[int | None] = None,
        limit: FromQuery[int] = 100,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        format: FromQuery[Literal["json", "csv"]] = "json",
    ) -> Any:
        await sellers.get_seller(services.pool, platform_id, seller_id)
        if format == "csv":
            lines: list[Any] = []
            cursor = after
            while True:
                page = await balances.seller_statement(
                    services.ledger,
                    platform_id,
                    seller_id,
                    account=account,
                    after=cursor,
                    limit=1000,
                    since=since,
                    until=until,
                )
                lines.extend(page.lines)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            return _csv(balances.statement_csv(lines), f"statement-{seller_id}.csv")
        page: SellerStatement = await balances.seller_statement(
            services.ledger,
            platform_id,
            seller_id,
            account=account,
            after=after,
            limit=max(1, min(limit, 1000)),
            since=since,
            until=until,
        )
        return page


class PayoutController(Controller):
    path = "/payouts"
    tags = ["payouts"]

    @post("/", summary="Pay a seller out (at most available minus debt)", status_code=201)
    async def create(
        self, request: Request, services: ServicesDep, platform_id: PlatformId, data: JSONBody[PayoutIn]
    ) -> Response[Payout]:
        data = await strict(request, data)

        async def run() -> Response:
            payout = await payouts.create_payout(
                services.pool,
                services.ledger,
                platform_id,
                payout_id=f"po-{secrets.token_hex(10)}",
                seller_id=data.seller_id,
                amount=data.amount,
                reference=data.reference,
                mark_paid=data.status == "paid",
            )
            return json_response(payout, 201)

        return await idempotent(request, services.pool, platform_id, run)

    @get("/", summary="List payouts (keyset by creation time)")
    async def list_(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        seller_id: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
    ) -> PayoutPage:
        limit = page_size(limit)
        found = await payouts.list_payouts(
            services.pool, platform_id, seller_id=seller_id, status=status, after=decode_cursor(cursor), limit=limit + 1
        )
        page, next_cursor = split_page(found, limit, lambda p: (p.created_at, p.payout_id))
        return PayoutPage(items=page, next_cursor=next_cursor)

    @get("/{payout_id:str}", summary="One payout")
    async def get_one(self, services: ServicesDep, platform_id: PlatformId, payout_id: FromPath[str]) -> Payout:
        return await payouts.get_payout(services.pool, platform_id, payout_id)

    @post("/{payout_id:str}/confirm", summary="The bank confirmed the transfer: book it as paid", status_code=200)
    async def confirm(
        self,
        request: Request,
        services: ServicesDep,
        platform_id: PlatformId,
        payout_id: FromPath[str],
        data: JSONBody[PayoutConfirmIn | None] = None,
    ) -> Response[Payout]:
        data = await strict(request, data)

        async def run() -> Response:
            payout = await payouts.confirm_payout(
                services.pool, services.ledger, platform_id, payout_id, reference=data.reference if data else None
            )
            return json_response(payout)

        return await idempotent(request, services.pool, platform_id, run)

    @post("/{payout_id:str}/fail", summary="The transfer failed: the money returns to available", status_code=200)
    async def fail(
        self,
        request: Request,
        services: ServicesDep,
        platform_id: PlatformId,
        payout_id: FromPath[str],
        data: JSONBody[PayoutFailIn],
    ) -> Response[Payout]:
        data = await strict(request, data)

        async def run() -> Response:
            payout = await payouts.fail_payout(
                services.pool, services.ledger, platform_id, payout_id, reason=data.reason
            )
            return json_response(payout)

        return await idempotent(request, services.pool, platform_id, run)


class SettlementController(Controller):
    path = "/settlements"
    tags = ["settlement"]

    @post(
        "/", summary="Import a DOKU settlement report: text/csv body, or JSON {csv | lines, mapping}", status_code=200
    )
    async def import_report(
        self, request: Request, services: ServicesDep, platform_id: PlatformId
    ) -> Response[ImportSummary]:
        async def run() -> Response:
            body = await request.body()
            content_type = request.headers.get("content-type", "")
            mapping = settlement.DEFAULT_MAPPING
            source = request.headers.get("x-source-name", "api")
            fmt: Literal["csv", "json"] | None = None
            if content_type.startswith("text/csv"):
                content, fmt = body, "csv"
                spec = request.query_params.get("mapping")
                if spec:
                    mapping = settlement.mapping_from_spec(spec)
            else:
                try:
                    data = msgspec.json.decode(body, type=SettlementImportIn)
                except msgspec.DecodeError as exc:
                    raise ApiError("malformed_json", str(exc)) from exc
                except msgspec.ValidationError as exc:
                    raise ApiError("invalid_request", str(exc)) from exc
                if (data.csv is None) == (data.lines is None):
                    raise ApiError("invalid_request", "send exactly one of csv or lines")
                if data.mapping:
                    mapping = settlement.mapping_from_spec(data.mapping)
                source = data.source_name
                if data.csv is not None:
                    content, fmt = data.csv.encode(), "csv"
                else:
                    content, fmt = msgspec.json.encode(data.lines), "json"
            summary = await settlement.import_settlement_report(
                services.pool,
                services.ledger,
                platform_id,
                source_name=source,
                content=content,
                mapping=mapping,
                fmt=fmt,
            )
            out = msgspec.to_builtins(summary)
            out["exception_count"] = sum(summary.exceptions.values())
            return json_response(out)

        return await idempotent(request, services.pool, platform_id, run)

    @get("/{report_id:str}", summary="An imported report with its lines")
    async def get_report(self, services: ServicesDep, platform_id: PlatformId, report_id: FromPath[str]) -> Any:
        report = await services.pool.fetchrow(
            "SELECT report_id, source_name, line_count, summary, imported_at FROM settlement_reports "
            "WHERE platform_id = $1 AND report_id = $2",
            platform_id,
            report_id,
        )
        if report is None:
            raise ApiError("not_found", f"no settlement report {report_id!r}")
        lines = await services.pool.fetch(
            "SELECT line_no, invoice_number, gross, fee, net, settled_on, status, entry_id, detail "
            "FROM settlement_lines WHERE platform_id = $1 AND report_id = $2 ORDER BY line_no",
            platform_id,
            report_id,
        )
        return {
            "report_id": report["report_id"],
            "source_name": report["source_name"],
            "line_count": report["line_count"],
            "imported_at": report["imported_at"],
            "summary": msgspec.json.decode(report["summary"])
            if isinstance(report["summary"], str)
            else report["summary"],
            "lines": [dict(r) for r in lines],
        }


class ReconciliationController(Controller):
    path = "/reconciliation"
    tags = ["reconciliation"]

    @get("/", summary="What DOKU captured, refunded, settled and still owes; what sellers are owed and were paid")
    async def reconcile(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        period_start: FromQuery[date | None] = None,
        period_end: FromQuery[date | None] = None,
        format: FromQuery[Literal["json", "csv"]] = "json",
    ) -> Any:
        """Period days are WIB calendar days, inclusive (default: yesterday and today); positions
        (owed by DOKU, balances, open exceptions) are as of now."""
        end = period_end or datetime.now(WIB).date()
        start = period_start or end - timedelta(days=1)
        rec: Reconciliation = await reconciliation.reconcile(
            services.pool,
            services.ledger,
            platform_id,
            period_start=start,
            period_end=end,
            settlement_days=services.settings.settlement_days,
        )
        if format == "csv":
            return _csv(reconciliation.reconciliation_csv(rec), f"reconciliation-{rec.period_start}.csv")
        return rec

    @get("/exceptions", summary="Reconciliation exceptions (unknown invoices, mismatched amounts, duplicates …)")
    async def exceptions(
        self,
        services: ServicesDep,
        platform_id: PlatformId,
        open_only: FromQuery[bool] = True,
        limit: FromQuery[int] = 100,
    ) -> list[ExceptionOut]:
        rows = await services.pool.fetch(
            """
            SELECT * FROM reconciliation_exceptions
             WHERE platform_id = $1 AND (NOT $2 OR resolved_at IS NULL)
             ORDER BY created_at DESC LIMIT $3
            """,
            platform_id,
            open_only,
            max(1, min(limit, 1000)),
        )
        return [_exception_out(r) for r in rows]

    @post(
        "/exceptions/{exception_id:int}/resolve",
        summary="Mark an exception resolved, with what was done about it",
        status_code=200,
    )
    async def resolve(
        self,
        request: Request,
        services: ServicesDep,
        platform_id: PlatformId,
        exception_id: FromPath[int],
        data: JSONBody[ResolveIn],
    ) -> Response[ExceptionOut]:
        data = await strict(request, data)

        async def run() -> Response:
            row = await services.pool.fetchrow(
                """
                UPDATE reconciliation_exceptions
                   SET resolved_at = coalesce(resolved_at, now()),
                       detail = detail || jsonb_build_object('resolution', $3::text)
                 WHERE platform_id = $1 AND exception_id = $2
                RETURNING *
                """,
                platform_id,
                exception_id,
                data.resolution,
            )
            if row is None:
                raise ApiError("not_found", f"no reconciliation exception {exception_id}")
            return json_response(_exception_out(row))

        return await idempotent(request, services.pool, platform_id, run)


class ResolveIn(msgspec.Struct, frozen=True, kw_only=True):
    resolution: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, examples=["DOKU corrected the report"])]


def _exception_out(row: Any) -> ExceptionOut:
    return ExceptionOut(
        **{
            f: (msgspec.json.decode(row[f]) if f == "detail" and isinstance(row[f], str) else row[f])
            for f in ExceptionOut.__struct_fields__
        }
    )


def money_handlers() -> list[Any]:
    return [SellerMoneyController, PayoutController, SettlementController, ReconciliationController]
