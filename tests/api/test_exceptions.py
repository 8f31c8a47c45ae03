"""An operator resolves a reconciliation exception: it leaves the open list and the reconciliation,
and stays on record with what was done."""

from __future__ import annotations

from tests.api.conftest import Stack, assert_problem, notification_body


async def test_resolving_an_exception_closes_it_and_keeps_the_record(stack: Stack) -> None:
    r = await stack.notify(notification_body("INV-NOBODY", 50_000))  # an invoice nobody ordered
    assert r.status_code == 200
    (exception,) = await stack.exceptions()
    assert exception["kind"] == "unknown_invoice" and exception["resolved_at"] is None
    rec = (await stack.client.get("/v1/reconciliation")).json()
    assert rec["open_exceptions"] == 1 and rec["clean"] is False

    path = f"/v1/reconciliation/exceptions/{exception['exception_id']}/resolve"
    r = await stack.client.post(path, json={"resolution": "test payment from DOKU support"})
    assert r.status_code == 200, r.text
    assert r.json()["resolved_at"] is not None
    assert r.json()["detail"]["resolution"] == "test payment from DOKU support"

    assert await stack.exceptions() == []
    everything = (await stack.client.get("/v1/reconciliation/exceptions", params={"open_only": "false"})).json()[
        "items"
    ]
    assert [e["exception_id"] for e in everything] == [exception["exception_id"]]
    rec = (await stack.client.get("/v1/reconciliation")).json()
    assert rec["open_exceptions"] == 0 and rec["clean"] is True


async def test_resolving_an_unknown_or_foreign_exception_is_not_found(stack: Stack) -> None:
    await stack.notify(notification_body("INV-NOBODY", 50_000))
    (exception,) = await stack.exceptions()
    other = await stack.new_platform("Toko Lain")
    path = f"/v1/reconciliation/exceptions/{exception['exception_id']}/resolve"
    assert_problem(await other.client.post(path, json={"resolution": "mine now"}), 404, "not_found")
    assert_problem(
        await stack.client.post("/v1/reconciliation/exceptions/999999/resolve", json={"resolution": "x"}),
        404,
        "not_found",
    )
    assert (await stack.exceptions())[0]["resolved_at"] is None
