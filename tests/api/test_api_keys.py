"""API keys through the API: several live keys per platform (rotation), listed without secrets,
revoked keys refused at once by the service that revoked them, and the last live key kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from api.database import create_pool
from ledger import errors
from ledger.service.platforms import ApiKeyVerifier, revoke_api_key
from ledger.store import Database
from tests.api.conftest import Stack, assert_problem


def client_for(stack: Stack, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.base_url, headers={"Authorization": f"Bearer {key}"}, trust_env=False)


async def test_keys_are_created_listed_rotated_and_revoked(stack: Stack) -> None:
    r = await stack.client.post("/v1/api-keys", json={"name": "checkout 2026-12"})
    assert r.status_code == 201, r.text
    new = r.json()
    assert set(new) == {"id", "name", "key", "created_at"} and new["name"] == "checkout 2026-12"
    assert new["key"].startswith(f"sl_{stack.platform_id}_{new['id']}_")

    async with client_for(stack, new["key"]) as rotated:
        assert (await rotated.get("/v1/sellers")).status_code == 200  # both keys live at once
        assert (await stack.client.get("/v1/sellers")).status_code == 200
        listed = (await rotated.get("/v1/api-keys")).json()["data"]
        assert [k["status"] for k in listed] == ["active", "active"]
        assert {k["id"]: k["current"] for k in listed} == {
            stack.api_key.split("_")[2]: False,
            new["id"]: True,
        }
        assert new["key"] not in (await rotated.get("/v1/api-keys")).text
        assert all("key" not in k for k in listed)

        old_id = stack.api_key.split("_")[2]
        r = await rotated.delete(f"/v1/api-keys/{old_id}")
        assert r.status_code == 204, r.text
        assert_problem(await stack.client.get("/v1/sellers"), 401, "unauthorized")  # refused at once
        assert (await rotated.get("/v1/sellers")).status_code == 200
        listed = (await rotated.get("/v1/api-keys")).json()["data"]
        assert {k["id"]: k["status"] for k in listed} == {old_id: "revoked", new["id"]: "active"}
        assert next(k for k in listed if k["id"] == old_id)["revoked_at"] is not None

        # the last live key stays: a platform never locks itself out
        assert_problem(await rotated.delete(f"/v1/api-keys/{new['id']}"), 409, "last_api_key")
        assert (await rotated.get("/v1/sellers")).status_code == 200
        assert (await rotated.delete(f"/v1/api-keys/{old_id}")).status_code == 204  # revoked again: unchanged
        assert_problem(await rotated.delete("/v1/api-keys/deadbeef"), 404, "api_key_not_found")


async def test_keys_stay_within_their_platform_and_bad_input_is_refused(stack: Stack) -> None:
    other = await stack.new_platform("Toko Lain")
    theirs = (await other.client.get("/v1/api-keys")).json()["data"]
    mine = (await stack.client.get("/v1/api-keys")).json()["data"]
    assert {k["id"] for k in theirs}.isdisjoint({k["id"] for k in mine})
    (their_key,) = theirs
    await other.client.post("/v1/api-keys")  # two live keys: revoking one would be allowed for them
    assert_problem(await stack.client.delete(f"/v1/api-keys/{their_key['id']}"), 404, "api_key_not_found")
    assert (await other.client.get("/v1/sellers")).status_code == 200
    assert_problem(await stack.client.post("/v1/api-keys", json={"name": ""}), 422, "invalid_request")
    assert_problem(await stack.client.post("/v1/api-keys", json={"scope": "all"}), 422, "unknown_field")
    assert_problem(
        await stack.client.post("/v1/api-keys", content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "malformed_json",
    )
    r = await stack.client.post("/v1/api-keys")  # no body: a key without a name
    assert r.status_code == 201 and r.json()["name"] is None
    assert_problem(await stack.anon.post("/v1/api-keys"), 401, "unauthorized")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    yield Database(pool)
    await pool.close()


async def test_another_process_stops_trusting_a_revoked_key_within_its_cache_ttl(stack: Stack, db: Database) -> None:
    """The service's own cache forgets a key it revoked; another process's lasts at most ``ttl_s``."""
    elsewhere = ApiKeyVerifier(db, ttl_s=0.3)
    assert await elsewhere.verify(stack.api_key) == stack.platform_id
    spare = (await stack.client.post("/v1/api-keys")).json()
    async with client_for(stack, spare["key"]) as spare_client:
        assert (await spare_client.delete(f"/v1/api-keys/{stack.api_key.split('_')[2]}")).status_code == 204
    assert await elsewhere.verify(stack.api_key) == stack.platform_id  # cached a moment longer
    await asyncio.sleep(0.35)
    with pytest.raises(errors.Unauthorized):
        await elsewhere.verify(stack.api_key)


async def test_revoking_forgets_the_key_in_the_verifier_at_once(stack: Stack, db: Database) -> None:
    verifier = ApiKeyVerifier(db, ttl_s=3600)
    assert await verifier.verify(stack.api_key) == stack.platform_id
    spare = (await stack.client.post("/v1/api-keys")).json()
    await revoke_api_key(db, verifier, stack.platform_id, stack.api_key.split("_")[2])
    with pytest.raises(errors.Unauthorized):
        await verifier.verify(stack.api_key)
    assert await verifier.verify(spare["key"]) == stack.platform_id
