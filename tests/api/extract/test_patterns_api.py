"""extract patterns and webhooks over HTTP: CRUD, ownership, validation, headers."""

from __future__ import annotations

import pytest

from tests.api.extract.conftest import SCHEMA, Env

# Records on both backends: the database_url fixture runs SQLite and PostgreSQL.


async def test_create_get_list_patch_delete(env: Env) -> None:
    c = env.client
    r = await c.post(
        "/patterns",
        json={
            "name": "Invoice Data Extractor",
            "output_format": "json",
            "instructions": "Extract vendor, number, date and total",
            "schema": {**SCHEMA, "line_items": [{"description": "string", "amount": "number"}]},
            "webhook_url": "https://hooks.example.com/imggo",
            "metadata": {"environment": "production"},
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["success"] is True
    data = created["data"]
    pid = data["pattern_id"]
    assert pid.startswith("pat_") and len(pid) == 14
    assert data["endpoint"] == f"https://extract.example.com/extract/api/patterns/{pid}/ingest"
    assert data["status"] == "active" and data["created_at"].endswith("Z")
    assert r.headers["X-Request-ID"] and r.headers["X-RateLimit-Limit"] == "1000"
    assert int(r.headers["X-RateLimit-Remaining"]) < 1000 and r.headers["X-RateLimit-Reset"]

    got = (await c.get(f"/patterns/{pid}")).json()["data"]
    assert got["schema"]["line_items"] == [{"description": "string", "amount": "number"}]
    assert got["instructions"] == "Extract vendor, number, date and total"
    assert got["webhook_url"] == "https://hooks.example.com/imggo"
    assert got["metadata"] == {"environment": "production"}
    assert got["statistics"] == {
        "total_requests": 0,
        "success_rate": 0.0,
        "avg_processing_time_ms": 0,
        "usage_units": 0,
    }

    r = await c.patch(
        f"/patterns/{pid}",
        json={"instructions": "Only the total", "webhook_url": None, "status": "draft"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["pattern_id"] == pid and r.json()["data"]["updated_at"]
    got = (await c.get(f"/patterns/{pid}")).json()["data"]
    assert got["instructions"] == "Only the total" and got["webhook_url"] is None
    assert got["status"] == "draft" and got["name"] == "Invoice Data Extractor"

    r = await c.delete(f"/patterns/{pid}")
    assert r.json() == {"success": True, "message": "Pattern deleted successfully"}
    r = await c.get(f"/patterns/{pid}")
    assert r.status_code == 404
    assert r.json()["success"] is False and r.json()["error"]["code"] == "not_found"


async def test_list_paginates_and_filters_by_status(env: Env) -> None:
    ids = [await env.pattern(name=f"p{n}") for n in range(5)]
    await env.pattern(name="drafty", status="draft")
    r = (await env.client.get("/patterns", params={"page": 2, "limit": 2})).json()["data"]
    assert r["pagination"] == {"current_page": 2, "total_pages": 3, "total_count": 6}
    assert len(r["patterns"]) == 2
    assert set(r["patterns"][0]) == {
        "pattern_id",
        "name",
        "output_format",
        "status",
        "created_at",
        "updated_at",
        "request_count",
    }
    drafts = (await env.client.get("/patterns", params={"status": "draft"})).json()["data"]
    assert [p["name"] for p in drafts["patterns"]] == ["drafty"]
    active = (await env.client.get("/patterns", params={"status": "active", "limit": 100})).json()
    assert {p["pattern_id"] for p in active["data"]["patterns"]} == set(ids)
    r = await env.client.get("/patterns", params={"limit": 101})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = await env.client.get("/patterns", params={"status": "deleted"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


async def test_patterns_belong_to_their_key(env: Env) -> None:
    pid = await env.pattern()
    other_key, _ = env.ctx.keys.create("someone else")
    other = env.client_for(other_key)
    for method, path in (
        ("GET", f"/patterns/{pid}"),
        ("PATCH", f"/patterns/{pid}"),
        ("DELETE", f"/patterns/{pid}"),
        ("POST", f"/patterns/{pid}/ingest"),
    ):
        r = await other.request(method, path, json={"name": "x"} if method == "PATCH" else {})
        assert r.status_code == 404, (method, r.text)
        assert r.json()["error"]["code"] == "not_found"
    assert (await other.get("/patterns")).json()["data"]["pagination"]["total_count"] == 0


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"total": "money"}, "total"),
        ({"items": [{"price": "nope"}]}, "items"),
        ({"a": {"b": {"c": 42}}}, "a.b.c"),
        ({}, None),
        (
            {"type": "object", "properties": {"when": {"type": "strnig"}}},
            "when",
        ),
    ],
)
async def test_invalid_schema_names_the_path(env: Env, schema: dict, path: str | None) -> None:
    r = await env.client.post("/patterns", json={"name": "bad", "schema": schema})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert r.json()["success"] is False and error["code"] == "invalid_schema"
    if path:
        assert path in error["message"], error["message"]


async def test_schema_limits_are_invalid_schema(env: Env) -> None:
    wide = {f"field_{n}": "string" for n in range(500)}
    r = await env.client.post("/patterns", json={"name": "wide", "schema": wide})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_schema"
    deep: dict = {"leaf": "string"}
    for n in range(20):
        deep = {f"level{n}": deep}
    r = await env.client.post("/patterns", json={"name": "deep", "schema": deep})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_schema"
    pid = await env.pattern()
    r = await env.client.patch(f"/patterns/{pid}", json={"schema": {"x": "colour"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_schema"


async def test_bad_requests_use_the_contract_body(env: Env) -> None:
    c = env.client
    cases = [
        ({"schema": SCHEMA}, "name"),  # missing name
        ({"name": "x", "schema": SCHEMA, "output_format": "pdf"}, "output_format"),
        ({"name": "x", "schema": SCHEMA, "webhook_url": "ftp://host/x"}, "webhook_url"),
        ({"name": "x", "schema": SCHEMA, "colour": "red"}, "colour"),
        ({"name": "x", "schema": SCHEMA, "engine": "vlm"}, "engine"),  # no VLM configured
    ]
    for body, field in cases:
        r = await c.post("/patterns", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["success"] is False
        assert r.json()["error"]["code"] == "invalid_request", r.json()
        assert field in r.json()["error"]["message"] or field in str(r.json()["error"])
    pid = await env.pattern()
    r = await c.patch(f"/patterns/{pid}", json={})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = await c.patch(f"/patterns/{pid}", json={"name": None})
    assert r.status_code == 400 and "name" in r.json()["error"]["message"]


async def test_every_route_needs_a_key(env: Env) -> None:
    anonymous = env.client_for(None)
    for method, path in (
        ("GET", "/patterns"),
        ("POST", "/patterns"),
        ("GET", "/jobs"),
        ("GET", "/jobs/x"),
        ("GET", "/webhooks"),
        ("POST", "/webhooks"),
        ("DELETE", "/webhooks/wh_x"),
        ("POST", "/patterns/pat_x/ingest"),
    ):
        r = await anonymous.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["X-Request-ID"]
    bad = env.client_for("vs_nope_nope")
    assert (await bad.get("/patterns")).status_code == 401


async def test_rate_limit_is_the_contract_error(build_env) -> None:  # type: ignore[no-untyped-def]
    env = build_env()
    env.ctx.settings.limits.rate_limits["extract"] = 2
    for _ in range(2):
        assert (await env.client.get("/patterns")).status_code == 200
    r = await env.client.get("/patterns")
    assert r.status_code == 429 and r.headers["Retry-After"]
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert r.headers["X-RateLimit-Remaining"] == "0"


async def test_webhooks_create_list_delete(env: Env) -> None:
    c = env.client
    r = await c.post(
        "/webhooks",
        json={
            "url": "https://your-app.com/webhooks/imggo",
            "events": ["job.completed"],
            "secret": "my_secret_for_signing",
        },
    )
    assert r.status_code == 201, r.text
    hook = r.json()["data"]
    assert hook["webhook_id"].startswith("wh_") and hook["active"] is True
    assert hook["secret"] == "my_secret_for_signing" and hook["events"] == ["job.completed"]
    generated = (await c.post("/webhooks", json={"url": "https://b.example.com/h"})).json()["data"]
    assert generated["secret"].startswith("whsec_") and len(generated["secret"]) > 20
    assert generated["events"] == ["job.completed", "job.failed"]
    listed = (await c.get("/webhooks")).json()["data"]["webhooks"]
    assert [h["webhook_id"] for h in listed] == [hook["webhook_id"], generated["webhook_id"]]
    assert all("secret" not in h for h in listed)  # shown once, at creation
    r = await c.delete(f"/webhooks/{hook['webhook_id']}")
    assert r.json() == {"success": True, "message": "Webhook deleted successfully"}
    assert (await c.delete(f"/webhooks/{hook['webhook_id']}")).status_code == 404
    for body in (
        {"url": "https://x.example.com", "events": ["job.started"]},
        {"url": "https://x.example.com", "events": []},
        {"url": "not a url"},
        {"url": "https://x.example.com", "secret": "short"},
    ):
        r = await c.post("/webhooks", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == "invalid_request"


async def test_openapi_lists_every_contract_path(env: Env) -> None:
    doc = (await env.client.get("/openapi.json")).json()
    paths = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert {
        ("GET", "/patterns"),
        ("POST", "/patterns"),
        ("GET", "/patterns/{pattern_id}"),
        ("PATCH", "/patterns/{pattern_id}"),
        ("DELETE", "/patterns/{pattern_id}"),
        ("POST", "/patterns/{pattern_id}/ingest"),
        ("GET", "/jobs/{job_id}"),
        ("GET", "/jobs"),
        ("GET", "/webhooks"),
        ("POST", "/webhooks"),
        ("DELETE", "/webhooks/{webhook_id}"),
    } <= paths
    ingest = doc["paths"]["/patterns/{pattern_id}/ingest"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(ingest)
