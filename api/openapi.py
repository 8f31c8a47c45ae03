"""The OpenAPI document, told truthfully, and the docs UI served from the package's own assets.

Rule: litestar generates the paths and the wire types from the handlers; this module adds what it
cannot know, in one place: stable lowerCamelCase ``operationId``s, each operation's real
problem+json answers with their ``code``s (the table in ``api.problems`` gives the status), the
``Idempotency-Key`` and ``X-Request-Id`` headers, the request bodies handlers read themselves (the
settlement import's ``text/csv`` and JSON forms, ``?mapping=``, ``X-Source-Name``) and the response
schemas of answers typed ``Any`` (reconciliation, settlement reports). A route nobody listed here
still gets a derived lowerCamelCase id and the problems every ``/v1`` route can answer.

Swagger UI comes from the pinned ``swagger-ui-bundle-v2`` package and is served under
``/docs/assets``, so ``/docs`` works offline.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from api.problems import PROBLEM_JSON, PROBLEMS, Problem
from api.schemas import SettlementImportIn
from ledger.reconciliation import Reconciliation
from ledger.settlement import SettlementReport
from ledger.settlement_report import SettlementMapping

ASSETS = "/docs/assets"

# (method, path) -> operationId; the paths as litestar writes them.
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("get", "/health"): "getHealth",
    ("get", "/metrics"): "getMetrics",
    ("put", "/v1/platform/gateway"): "configureGateway",
    ("get", "/v1/platform/gateway"): "getGateway",
    ("post", "/v1/sellers"): "createSeller",
    ("get", "/v1/sellers"): "listSellers",
    ("get", "/v1/sellers/{seller_id}"): "getSeller",
    ("get", "/v1/sellers/{seller_id}/balances"): "getSellerBalances",
    ("get", "/v1/sellers/{seller_id}/statement"): "getSellerStatement",
    ("post", "/v1/orders"): "createOrder",
    ("get", "/v1/orders"): "listOrders",
    ("get", "/v1/orders/{invoice_number}"): "getOrder",
    ("post", "/v1/orders/{invoice_number}/send"): "sendOrder",
    ("post", "/v1/orders/{invoice_number}/status-check"): "checkOrderStatus",
    ("post", "/v1/orders/{invoice_number}/refunds"): "createRefund",
    ("get", "/v1/orders/{invoice_number}/refunds"): "listOrderRefunds",
    ("get", "/v1/refunds/{refund_id}"): "getRefund",
    ("post", "/v1/refunds/{refund_id}/retry"): "retryRefund",
    ("post", "/v1/payouts"): "createPayout",
    ("get", "/v1/payouts"): "listPayouts",
    ("get", "/v1/payouts/{payout_id}"): "getPayout",
    ("post", "/v1/payouts/{payout_id}/confirm"): "confirmPayout",
    ("post", "/v1/payouts/{payout_id}/fail"): "failPayout",
    ("post", "/v1/settlements"): "importSettlementReport",
    ("get", "/v1/settlements/{report_id}"): "getSettlementReport",
    ("get", "/v1/reconciliation"): "getReconciliation",
    ("get", "/v1/reconciliation/exceptions"): "listReconciliationExceptions",
    ("post", "/v1/reconciliation/exceptions/{exception_id}/resolve"): "resolveReconciliationException",
    ("get", "/v1/ledger/accounts"): "listAccounts",
    ("get", "/v1/ledger/accounts/{code}"): "getAccount",
    ("get", "/v1/ledger/accounts/{code}/balance"): "getAccountBalance",
    ("get", "/v1/ledger/accounts/{code}/statement"): "getAccountStatement",
    ("get", "/v1/ledger/entries/{entry_id}"): "getJournalEntry",
    ("get", "/v1/ledger/trial-balance"): "getTrialBalance",
}

# operationId -> the codes its handler's use case can refuse with (beyond those every route has).
CODES: dict[str, tuple[str, ...]] = {
    "configureGateway": ("client_id_taken", "invalid_base_url", "invalid_refund_path"),
    "getGateway": ("gateway_not_configured",),
    "createSeller": ("seller_exists", "reserved_seller_id"),
    "getSeller": ("seller_not_found",),
    "getSellerBalances": ("seller_not_found",),
    "getSellerStatement": ("seller_not_found",),
    "createOrder": (
        "invalid_invoice_number",
        "order_exists",
        "unknown_seller",
        "split_invalid",
        "split_error",
        "amount_mismatch",
        "gateway_not_configured",
        "settlement_instruction_invalid",
        "unavailable",
        "rejected",
        "unexpected_response",
    ),
    "sendOrder": ("order_not_found", "gateway_not_configured", "unavailable", "rejected", "unexpected_response"),
    "checkOrderStatus": ("order_not_found", "gateway_not_configured", "unavailable", "unexpected_response"),
    "createRefund": (
        "idempotency_key_required",
        "order_not_found",
        "order_not_captured",
        "refund_exceeds_captured",
        "reversal_rejected",
        "reversal_wrong_direction",
        "unknown_party",
        "explicit_amounts_do_not_sum",
        "reversal_exceeds_allocation",
        "non_positive_amount",
        "unavailable",
        "rejected",
        "unexpected_response",
    ),
    "listOrderRefunds": ("order_not_found",),
    "getOrder": ("order_not_found",),
    "getRefund": ("refund_not_found",),
    "retryRefund": ("refund_not_found", "refund_not_pending", "unavailable", "rejected", "unexpected_response"),
    "createPayout": ("idempotency_key_required", "seller_not_found", "payout_exceeds_available"),
    "getPayout": ("payout_not_found",),
    "confirmPayout": ("idempotency_key_required", "payout_not_found", "payout_not_pending"),
    "failPayout": ("idempotency_key_required", "payout_not_found", "payout_not_pending"),
    "importSettlementReport": ("settlement_report_invalid",),
    "getSettlementReport": ("not_found",),
    "resolveReconciliationException": ("not_found",),
    "getAccount": ("unknown_account",),
    "getAccountBalance": ("unknown_account",),
    "getAccountStatement": ("unknown_account",),
    "getJournalEntry": ("entry_not_found",),
    "receiveDokuNotification": (
        "invalid_signature",
        "stale_timestamp",
        "unknown_client_id",
        "malformed_message",
        "rate_limited",
    ),
    "getMetrics": ("unauthorized",),
}

SETTLEMENT_CSV_EXAMPLE = (
    "invoice_number,request_id,client_id,channel,transaction_date,status,gross_amount,fee,net_amount,settlement_date\n"
    "INV-20261201-0001,5f0c…,MCH-0001,JENIUS,2026-12-01T10:15:00+07:00,SUCCESS,400000,7000,393000,2026-12-03\n"
)


def _camel(method: str, path: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path.replace("{", "by_").replace("}", "")) if w and w != "v1"]
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words)


def _problem_response(codes: list[str]) -> dict[str, Any]:
    first = codes[0]
    status, title = PROBLEMS.get(first, (400, first))
    return {
        "description": "; ".join(f"`{c}`: {PROBLEMS.get(c, (0, c))[1]}" for c in codes),
        "headers": _response_headers(status),
        "content": {
            PROBLEM_JSON: {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Problem"},
                        {"properties": {"code": {"enum": codes}, "status": {"const": status}}},
                    ]
                },
                "example": {
                    "type": f"https://splitledger.dev/problems/{first.replace('_', '-')}",
                    "title": title,
                    "status": status,
                    "code": first,
                    "request_id": "3f2a9c0e1b7d4a65",
                },
            }
        },
        "x-problem-codes": codes,
    }


def _response_headers(status: int) -> dict[str, Any]:
    headers: dict[str, Any] = {
        "X-Request-Id": {
            "description": "the request's id (the caller's when sane), also in every log line",
            "schema": {"type": "string"},
        }
    }
    if status in (429, 503):
        headers["Retry-After"] = {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
    return headers


def _codes_for(op_id: str, method: str, path: str, operation: dict[str, Any]) -> list[str]:
    codes = list(CODES.get(op_id, ()))
    if path.startswith("/v1/"):
        codes += ["unauthorized", "database_unavailable", "rate_limited"]
    if method in ("post", "put", "patch"):
        codes += ["malformed_json", "invalid_request"]
        if op_id != "receiveDokuNotification":  # api.bodies and api.guards: strict JSON bodies
            codes += ["unknown_field", "nesting_too_deep", "unsupported_media_type", "invalid_text"]
        if method == "post" and path.startswith("/v1/"):
            codes += ["idempotency_conflict", "idempotency_in_progress"]
    elif operation.get("parameters"):
        codes += ["invalid_request", "invalid_text"]
    codes.append("internal_error")
    return list(dict.fromkeys(codes))


def _typed_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON Schemas (OpenAPI 3.1 is JSON Schema 2020-12) of the answers handlers type ``Any``."""
    (reconciliation, report, settlement_in, mapping, problem), components = msgspec.json.schema_components(
        [Reconciliation, SettlementReport, SettlementImportIn, SettlementMapping, Problem],
        ref_template="#/components/schemas/{name}",
    )
    found = {
        "reconciliation": reconciliation,
        "report": report,
        "settlement_in": settlement_in,
        "mapping": mapping,
        "problem": problem,
    }
    return _as_json(found), _as_json(components)


def _as_json(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def document(generated: dict[str, Any]) -> dict[str, Any]:
    """The document as served: litestar's, completed (see the module docstring)."""
    spec: dict[str, Any] = _as_json(generated)  # a copy, with defaults (Structs, tuples) as JSON
    refs, components = _typed_schemas()
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in components.items():
        schemas.setdefault(name, schema)
    schemas["Problem"] = schemas.get("Problem", refs["problem"])
    seen: set[str] = set()
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            op_id = OPERATION_IDS.get((method, path)) or operation.get("operationId", "")
            if not re.fullmatch(r"[a-z][A-Za-z0-9]*", op_id) or op_id in seen:
                op_id = _camel(method, path)
            seen.add(op_id)
            operation["operationId"] = op_id
            _complete(op_id, method, path, operation, refs)
    return spec


def _complete(op_id: str, method: str, path: str, operation: dict[str, Any], refs: dict[str, Any]) -> None:
    parameters = [p for p in operation.get("parameters", []) if p.get("in") != "header"]
    if method == "post" and path.startswith("/v1/"):
        required = "idempotency_key_required" in CODES.get(op_id, ())
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": required,
                "description": "1..255 characters. The same key and request answer the first answer again "
                "(`Idempotent-Replayed: true`); a different request with the key is 409 `idempotency_conflict`."
                + (" This request moves money: the key is required." if required else ""),
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "example": f"{op_id}-INV-20261201-0001",
            }
        )
    parameters.append(
        {
            "name": "X-Request-Id",
            "in": "header",
            "required": False,
            "description": "your id for this request (`[A-Za-z0-9._:-]{1,128}`), echoed in the answer",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
        }
    )
    if op_id == "importSettlementReport":
        parameters += _settlement_parameters()
        operation["requestBody"] = _settlement_body(refs)
    if op_id == "confirmPayout":
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/PayoutConfirmIn"},
                    "example": {"reference": "BCA-TRX-001"},
                }
            },
        }
    operation["parameters"] = parameters

    responses: dict[str, Any] = {k: v for k, v in operation.get("responses", {}).items() if not k.startswith("4")}
    responses.pop("500", None)
    for status, response in responses.items():
        response.setdefault("headers", {}).update(_response_headers(int(status)))
        if method == "post" and path.startswith("/v1/"):
            response["headers"]["Idempotent-Replayed"] = {
                "description": "`true` when this is the stored answer of an earlier request with the same key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        _typed_answer(op_id, response, refs)
    by_status: dict[int, list[str]] = {}
    for code in _codes_for(op_id, method, path, operation):
        by_status.setdefault(PROBLEMS.get(code, (400, code))[0], []).append(code)
    for status_code, codes in sorted(by_status.items()):
        responses[str(status_code)] = _problem_response(codes)
    operation["responses"] = responses


def _typed_answer(op_id: str, response: dict[str, Any], refs: dict[str, Any]) -> None:
    content = response.setdefault("content", {})
    if op_id == "getReconciliation":
        content["application/json"] = {"schema": refs["reconciliation"]}
        content["text/csv"] = {"schema": {"type": "string"}, "example": "figure,value\ncaptured_count,1\n"}
    elif op_id == "getSettlementReport":
        content["application/json"] = {"schema": refs["report"]}
    elif op_id == "getSellerStatement":
        content["text/csv"] = {"schema": {"type": "string"}, "example": "posting_id,entry_id,at,account,kind,…\n"}
    elif op_id == "getMetrics":
        response["content"] = {"text/plain": {"schema": {"type": "string"}}}
    for media in content.values():
        if not media.get("schema"):
            media["schema"] = {"type": "object"}


def _settlement_parameters() -> list[dict[str, Any]]:
    fields = ", ".join(SettlementMapping.__struct_fields__)
    return [
        {
            "name": "mapping",
            "in": "query",
            "required": False,
            "description": "for a `text/csv` body: which column holds each field, `field=Column,…` "
            f"(fields: {fields}; `payment_types` separated by `|`; an empty `settled_on`/`type` means none)",
            "schema": {"type": "string"},
            "example": "invoice_number=Invoice,gross=Amount,fee=MDR,net=Net,settled_on=",
        },
        {
            "name": "X-Source-Name",
            "in": "header",
            "required": False,
            "description": "the report's file name, kept with the import (default `api`)",
            "schema": {"type": "string"},
            "example": "doku-2026-12-01.csv",
        },
    ]


def _settlement_body(refs: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "description": "DOKU's settlement report: the CSV itself (`text/csv`, columns mapped with `?mapping=`), "
        "or JSON with exactly one of `csv` (the CSV as a string) and `lines` (one object per row), and an "
        "optional `mapping` of our fields to its columns (a `SettlementMapping`'s fields).",
        "content": {
            "text/csv": {"schema": {"type": "string"}, "example": SETTLEMENT_CSV_EXAMPLE},
            "application/json": {
                "schema": refs["settlement_in"],
                "examples": {
                    "csv": {"value": {"source_name": "doku-2026-12-01.csv", "csv": SETTLEMENT_CSV_EXAMPLE}},
                    "lines": {
                        "value": {
                            "lines": [
                                {"Invoice": "INV-20261201-0001", "Amount": "400000", "MDR": "7000", "Net": "393000"}
                            ],
                            "mapping": {"invoice_number": "Invoice", "gross": "Amount", "fee": "MDR", "net": "Net"},
                        }
                    },
                },
            },
        },
    }


# -- serving --------------------------------------------------------------------------------

_cache: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}


def served(openapi_schema: dict[str, Any]) -> dict[str, Any]:
    """``document`` of this schema, computed once per app."""
    found = _cache.get(id(openapi_schema))
    if found is None or found[0] is not openapi_schema:
        found = _cache[id(openapi_schema)] = (openapi_schema, document(openapi_schema))
    return found[1]


class TruthfulJson(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, served(openapi_schema))


class OfflineSwagger(SwaggerRenderPlugin):
    def __init__(self) -> None:
        super().__init__(
            path="/",
            js_url=f"{ASSETS}/swagger-ui-bundle.js",
            css_url=f"{ASSETS}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, served(openapi_schema))


def docs_assets() -> Router:
    """Swagger UI's files, from the installed package (no CDN)."""
    return create_static_files_router(
        path=ASSETS, directories=[str(swagger_ui_path)], include_in_schema=False, name="docs-assets"
    )
