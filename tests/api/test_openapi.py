"""The OpenAPI document tells the truth (validated with openapi-spec-validator; problems, headers,
bodies and operationIds as the service answers them), and ``/docs`` works offline: Swagger UI from
the package's own assets, loaded in headless Chromium, lists every operation."""

from __future__ import annotations

import asyncio
import re
import shutil

import httpx
from openapi_spec_validator import validate

from api.problems import PROBLEMS
from tests.api.conftest import Stack, assert_problem, order_body

METHODS = ("get", "put", "post", "delete", "patch")


async def _spec(stack: Stack) -> dict:
    r = await stack.anon.get("/docs/openapi.json")
    assert r.status_code == 200
    return r.json()


def _operations(spec: dict) -> dict[str, tuple[str, str, dict]]:
    return {
        op["operationId"]: (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


async def test_the_document_is_valid_openapi_with_stable_lower_camel_case_operation_ids(stack: Stack) -> None:
    spec = await _spec(stack)
    validate(spec)
    ops = _operations(spec)
    assert len(ops) == sum(1 for item in spec["paths"].values() for m in item if m in METHODS), "ids are unique"
    for op_id in ops:
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*", op_id), op_id
    assert {"createOrder", "listPayouts", "createRefund", "importSettlementReport", "getReconciliation"} <= set(ops)


async def test_every_operation_documents_its_problems_headers_and_answers(stack: Stack) -> None:
    ops = _operations(await _spec(stack))
    for op_id, (method, path, op) in ops.items():
        params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
        assert ("header", "X-Request-Id") in params, op_id
        if method == "post" and path.startswith("/v1/"):
            key = params[("header", "Idempotency-Key")]
            assert key["required"] is (op_id in {"createRefund", "createPayout", "confirmPayout", "failPayout"})
        problems = {s: r for s, r in op["responses"].items() if int(s) >= 400}
        assert "500" in problems and (not path.startswith("/v1/") or {"401", "503"} <= set(problems)), op_id
        for status, response in problems.items():
            assert "application/problem+json" in response["content"], (op_id, status)
            for code in response["x-problem-codes"]:
                assert PROBLEMS[code][0] == int(status), (op_id, code)
        for status, response in op["responses"].items():
            assert "X-Request-Id" in response["headers"], (op_id, status)
            if int(status) < 400 and status != "204":
                assert all(m.get("schema") for m in response["content"].values()), (op_id, status)
    assert "ValidationException" not in str(ops), "litestar's own 400 shape is not what the service answers"


async def test_the_settlement_import_documents_both_forms_the_mapping_and_the_source_name(stack: Stack) -> None:
    spec = await _spec(stack)
    _, _, op = _operations(spec)["importSettlementReport"]
    assert {"text/csv", "application/json"} <= set(op["requestBody"]["content"])
    json_form = op["requestBody"]["content"]["application/json"]["schema"]
    json_form = spec["components"]["schemas"][json_form["$ref"].rsplit("/", 1)[1]]
    assert {"csv", "lines", "mapping", "source_name"} <= set(json_form["properties"])
    params = {(p["in"], p["name"]) for p in op["parameters"]}
    assert {("query", "mapping"), ("header", "X-Source-Name"), ("header", "Idempotency-Key")} <= params
    assert "settlement_report_invalid" in op["responses"]["422"]["x-problem-codes"]
    assert "201" in op["responses"]


async def test_answers_are_among_the_documented_ones(stack: Stack) -> None:
    ops = _operations(await _spec(stack))

    def documented(op_id: str, r: httpx.Response) -> None:
        response = ops[op_id][2]["responses"].get(str(r.status_code))
        assert response is not None, (op_id, r.status_code, r.text)
        if r.status_code >= 400:
            assert r.json()["code"] in response["x-problem-codes"], (op_id, r.json()["code"])

    await stack.create_seller("tenun")
    body = order_body("INV-DOC-1", [("Tenun", 120_000, 1, "tenun")])
    documented("createOrder", await stack.client.post("/v1/orders", json=body))
    documented("createOrder", await stack.client.post("/v1/orders", json=body))  # order_exists
    documented("createOrder", await stack.client.post("/v1/orders", json={**body, "amount": "1"}))
    refund = {"amount": 1_000, "reason": "x"}
    r = await stack.client.post("/v1/orders/INV-DOC-1/refunds", json=refund, headers={"Idempotency-Key": "-"})
    assert_problem(r, 400, "idempotency_key_required")
    documented("createRefund", r)
    documented("createRefund", await stack.client.post("/v1/orders/INV-DOC-1/refunds", json=refund))
    documented("listSellers", await stack.client.get("/v1/sellers", params={"limit": 0}))
    documented("listSellers", await stack.anon.get("/v1/sellers"))
    documented("getOrder", await stack.client.get("/v1/orders/INV-NONE"))
    documented("importSettlementReport", await stack.client.post("/v1/settlements", json={"csv": "a\n1\n"}))


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert found, "headless Chromium is needed for this test (.ci/run installs Debian's chromium)"
    return found


async def test_docs_load_offline_in_headless_chromium_and_list_every_operation(stack: Stack) -> None:
    html = (await stack.anon.get("/docs")).text
    assert not re.search(r"""(src|href)=["']https?://""", html), "the docs page loads nothing from the internet"
    for asset in re.findall(r"""(?:src|href)=["'](/docs/assets/[^"']+)""", html):
        assert (await stack.anon.get(asset)).status_code == 200, asset
    proc = await asyncio.create_subprocess_exec(
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--proxy-server=127.0.0.1:9",  # nothing but loopback: a request to the internet would fail
        "--proxy-bypass-list=127.0.0.1",
        "--virtual-time-budget=20000",
        "--dump-dom",
        f"{stack.base_url}/docs",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    dom = out.decode()
    listed = set(re.findall(r'id="operations-[^"]*?-([A-Za-z0-9]+)"', dom))
    wanted = set(_operations(await _spec(stack)))
    assert wanted <= listed, f"missing from the page: {sorted(wanted - listed)}; stderr: {err.decode()[-500:]}"
