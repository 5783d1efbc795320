"""Elasticsearch `_bulk` compatibility: per-item answers, key forms, bad input (real Kafka), and
elasticsearch-py's `helpers.bulk` end to end into the right tenant (real web server, worker,
Elasticsearch, search through our API)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import ApiError, Elasticsearch, helpers
from starlette.applications import Starlette

from app.ingest.convert import from_any
from app.ingest.service import IngestService
from app.ingest.shippers import shipper_document
from app.settings import Settings
from protos.laas.v1 import LogRecord
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import KeyTable, consume
from tests.shipper_fixtures import *  # noqa: F403
from tests.shipper_fixtures import Site
from web import ingest_bulk, ui

NDJSON = {"content-type": "application/x-ndjson", "authorization": "Bearer ingest-key"}


def bulk_body(*lines: object) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n"
                    for x in lines)


@pytest.fixture
async def es_web(raw_settings: Settings, keys: KeyTable,
                 tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The bulk routes and the UI in-process (ASGI), writing to the test's Kafka topic."""
    app = Starlette(routes=[*ingest_bulk.routes, *ui.routes])
    app.state.ingest = IngestService(raw_settings, keys)
    (tmp_path / "index.html").write_text("<!doctype html><title>LaaS</title>")
    app.state.ui_dist = tmp_path
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://laas") as client:
        yield client
    await app.state.ingest.close()


async def test_bulk_items_in_order_with_per_item_errors(
        es_web: httpx.AsyncClient, raw_settings: Settings) -> None:
    now = time.time()
    body = bulk_body(
        {"index": {"_index": "app-logs", "_id": "a1"}},
        {"@timestamp": _iso(now), "message": "first",
         "log.level": "warn", "host": {"name": "node-1", "ip": "10.0.0.1"},
         "service": {"name": "shop"}, "order": 42},
        {"create": {}},
        {"log": "fluent line\n", "kubernetes": {"pod_name": "web-7", "namespace_name": "prod",
                                                "container_name": "web",
                                                "labels": {"app": "storefront"}}},
        {"delete": {"_index": "x", "_id": "1"}},
        {"update": {"_id": "2"}},
        {"doc": {"a": 1}},
        b"{not json",
        {"frobnicate": {}},
        {"index": {}},
        b"[1, 2",
        {"index": {}},
        {"message": "too old", "@timestamp": "2001-01-01T00:00:00Z"},
        {"index": {"_index": "other"}},
        {"msg": "last", "severity": "error", "hostname": "h9"},
    )
    r = await es_web.post("/default-idx/_bulk", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text
    assert r.headers["x-elastic-product"] == "Elasticsearch"
    out = r.json()
    assert out["errors"] is True and isinstance(out["took"], int)
    shown = [(next(iter(i)), i[next(iter(i))]["status"]) for i in out["items"]]
    assert shown == [("index", 201), ("create", 201), ("delete", 400), ("update", 400),
                     ("index", 400), ("index", 400), ("index", 400), ("index", 400),
                     ("index", 201)]
    items = [i[next(iter(i))] for i in out["items"]]
    assert items[0]["_index"] == "app-logs" and items[0]["_id"] == "a1"
    assert items[1]["_index"] == "default-idx" and len(items[1]["_id"]) == 20
    assert items[8]["_index"] == "other"
    assert "append-only" in items[2]["error"]["reason"]
    assert "not JSON" in items[4]["error"]["reason"]
    assert "unknown action 'frobnicate'" in items[5]["error"]["reason"]
    assert items[6]["error"]["type"] == "document_parsing_exception"
    assert "time_unix_nano" in items[7]["error"]["reason"]
    records = [LogRecord().parse(m.value) for m in await consume(raw_settings, 3, timeout=10)]
    assert [from_any(rec.body) for rec in records] == ["first", "fluent line\n", "last"]
    first, second, third = records
    assert (first.severity_text, first.resource.host, first.resource.service_name) == (
        "warn", "node-1", "shop")
    assert abs(first.time_unix_nano - int(now * 1e9)) < 1e6
    assert from_any(first.attributes["order"]) == 42
    assert from_any(first.attributes["host"]) == {"ip": "10.0.0.1"}
    assert second.resource.service_name == "storefront"
    assert {k: from_any(second.attributes[k]) for k in
            ("k8s.pod.name", "k8s.namespace.name", "k8s.container.name")} == {
        "k8s.pod.name": "web-7", "k8s.namespace.name": "prod", "k8s.container.name": "web"}
    assert from_any(second.attributes["kubernetes"]) == {"labels": {"app": "storefront"}}
    assert (third.severity_number, third.resource.host) == (17, "h9")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@pytest.mark.parametrize("auth", [
    {"authorization": "Bearer ingest-key"},
    {"authorization": "Basic " + base64.b64encode(b"anyone:ingest-key").decode()},
    {"authorization": "ApiKey ingest-key"},
    {"authorization": "ApiKey " + base64.b64encode(b"some-id:ingest-key").decode()},
    {"x-api-key": "ingest-key"},
])
async def test_every_key_form_is_accepted(es_web: httpx.AsyncClient,
                                          auth: dict[str, str]) -> None:
    r = await es_web.post("/_bulk", content=bulk_body({"index": {}}, {"message": "hi"}),
                          headers={"content-type": "application/x-ndjson", **auth})
    assert r.status_code == 200, r.text
    assert r.json()["errors"] is False


@pytest.mark.parametrize("auth,status", [
    ({}, 401), ({"authorization": "Bearer nope"}, 401),
    ({"authorization": "Basic " + base64.b64encode(b"u:nope").decode()}, 401),
    ({"authorization": "ApiKey !!!"}, 401), ({"authorization": "Bearer read-key"}, 403),
])
async def test_bad_keys_are_es_errors(es_web: httpx.AsyncClient, raw_settings: Settings,
                                      auth: dict[str, str], status: int) -> None:
    r = await es_web.post("/_bulk", content=bulk_body({"index": {}}, {"message": "no"}),
                          headers={"content-type": "application/x-ndjson", **auth})
    assert r.status_code == status
    assert r.headers["x-elastic-product"] == "Elasticsearch"
    body = r.json()
    assert body["status"] == status and body["error"]["type"] == "security_exception"
    assert body["error"]["root_cause"][0]["reason"]
    for path in ("/", "/_license"):
        got = await es_web.get(path, headers={"accept": "application/json", **auth})
        assert got.status_code == status, got.text


async def test_bad_requests_are_clear_4xx(raw_settings: Settings, keys: KeyTable) -> None:
    settings = raw_settings.model_copy(update={"ingest_max_batch_bytes": 2000})
    app = Starlette(routes=ingest_bulk.routes)
    app.state.ingest = IngestService(settings, keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://laas") as client:
        cases: list[tuple[dict[str, str], bytes, int, str]] = [
            ({"content-type": "text/html"}, bulk_body({"index": {}}, {"message": "x"}), 406,
             "text/html"),
            ({}, b"", 400, "request body is required"),
            ({}, b"\n\n", 400, "request body is required"),
            ({}, bulk_body({"index": {}}, {"message": "x" * 3000}), 413, "at most 2000"),
            ({"content-encoding": "gzip"}, b"not gzip", 400, "not valid gzip"),
            ({"content-encoding": "br"}, b"x", 415, "content-encoding"),
            ({"content-encoding": "gzip"}, gzip.compress(b"{}\n" * 2000), 413, "decompressed"),
        ]
        for extra, body, status, text in cases:
            r = await client.post("/_bulk", content=body, headers={**NDJSON, **extra})
            assert r.status_code == status, (extra, r.text)
            assert text in r.json()["error"]["reason"]
            assert r.headers["x-elastic-product"] == "Elasticsearch"
        # only bad lines: 200 with every item an error, nothing written
        r = await client.post("/_bulk", content=b"garbage\n{\"index\": {}}\n[\n", headers=NDJSON)
        assert r.status_code == 200 and r.json()["errors"] is True
        assert [i["index"]["status"] for i in r.json()["items"]] == [400, 400]
    await app.state.ingest.close()
    assert await consume(raw_settings, 1, timeout=2) == []


async def test_root_is_es_info_for_es_clients_and_the_ui_for_browsers(
        es_web: httpx.AsyncClient) -> None:
    es = await es_web.get("/", headers={
        "accept": "application/vnd.elasticsearch+json; compatible-with=8",
        "authorization": "ApiKey ingest-key"})
    assert es.status_code == 200 and es.headers["x-elastic-product"] == "Elasticsearch"
    assert es.json()["version"]["number"].startswith("8.")
    for headers in ({}, {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
                    {"accept": "text/html", "authorization": "Bearer ingest-key"}):
        page = await es_web.get("/", headers=headers)
        assert page.status_code == 200 and "<title>LaaS</title>" in page.text, headers
    license_ = await es_web.get("/_license", headers=NDJSON)
    assert license_.json()["license"]["status"] == "active"
    assert (await es_web.get("/_cluster/health", headers=NDJSON)).json()["status"] == "green"
    put = await es_web.put("/_index_template/filebeat-8", json={"index_patterns": ["x"]},
                           headers=NDJSON)
    assert put.json() == {"acknowledged": True}
    get = await es_web.get("/_ilm/policy/filebeat", headers=NDJSON)
    assert get.status_code == 404 and get.json()["error"]["type"] == "resource_not_found_exception"
    assert (await es_web.head("/_template/x", headers=NDJSON)).status_code == 404


def test_field_conventions_pass_other_documents_through() -> None:
    plain = {"message": "m", "level": "info", "service": "api"}
    assert shipper_document(plain) is plain
    full = {"body": "b", "severityNumber": 9}
    assert shipper_document(full) is full
    both = {"message": "kept", "log": "also kept"}
    assert shipper_document(both)["log"] == "also kept"
    ecs = shipper_document({"message": "m", "log": {"level": "error", "logger": "db"},
                            "@timestamp": "2026-01-01T00:00:00Z", "timestamp": "other"})
    assert ecs["level"] == "error" and ecs["log"] == {"logger": "db"}
    assert ecs["ts"] == "2026-01-01T00:00:00Z" and ecs["timestamp"] == "other"
    assert shipper_document({"message": "m", "severity": 3})["severity"] == 3  # not a name
    vector = shipper_document({"message": "m", "kubernetes": {
        "pod_name": "p", "pod_namespace": "ns", "pod_node_name": "node-2",
        "container_name": "c", "pod_labels": {"app.kubernetes.io/name": "cart"}}})
    assert (vector["service"], vector["host"]) == ("cart", "node-2")
    assert vector["attributes"]["k8s.namespace.name"] == "ns"


# --- end to end: elasticsearch-py into the right tenant ---------------------------------------


def _ship(url: str, auth: dict[str, Any], docs: list[dict[str, Any]]) -> tuple[Any, Any]:
    client = Elasticsearch(url, request_timeout=30, **auth)
    try:
        info = client.info()
        return info, helpers.bulk(client, docs, index="app-logs", chunk_size=3)
    finally:
        client.close()


async def test_elasticsearch_py_helpers_bulk_lands_in_the_keys_tenant(site: Site) -> None:
    mark = uuid.uuid4().hex[:10]
    now = time.time()
    acme_docs: list[dict[str, Any]] = [
        {"_index": "filebeat-x", "@timestamp": _iso(now - i), "message": f"{mark} a{i}",
         "log.level": "error" if i == 0 else "info", "host": {"name": "node-a"},
         "service": {"name": "checkout"}, "latency_ms": 100 + i, "ok": i % 2 == 0}
        for i in range(5)]
    acme_docs.append({"log": f"{mark} fluent", "kubernetes": {
        "pod_name": "cart-1", "namespace_name": "shop", "container_name": "cart",
        "labels": {"app": "cart"}}})
    info, (ok, errors) = await asyncio.to_thread(
        _ship, site.url, {"api_key": site.acme_key}, acme_docs)
    assert info["version"]["number"].startswith("8.")
    assert (ok, errors) == (6, [])
    beta = [{"message": f"{mark} beta", "level": "warn", "hostname": "b-host", "service": "b"}]
    _, (ok, errors) = await asyncio.to_thread(
        _ship, site.url, {"basic_auth": ("filebeat", site.beta_key), "http_compress": True},
        beta)
    assert (ok, errors) == (1, [])

    hits = await site.wait_hits(f'"{mark}"', 6)
    assert len(hits) == 6
    by_message = {h["message"]: h for h in hits}
    first = by_message[f"{mark} a0"]
    assert (first["service"], first["host"], first["level"]) == ("checkout", "node-a", "ERROR")
    assert first["attributes"]["latency_ms"] in (100, "100")
    assert first["time"].startswith(_iso(now)[:19])
    fluent = by_message[f"{mark} fluent"]
    assert fluent["service"] == "cart"
    assert fluent["attributes"]["k8s.pod.name"] == "cart-1"
    assert fluent["attributes"]["k8s.namespace.name"] == "shop"
    assert f"{mark} beta" not in by_message  # the beta key's record is not acme's
    theirs = await site.wait_hits(f'"{mark}"', 1, who="b_admin")
    assert [(h["message"], h["host"], h["level"]) for h in theirs] == [
        (f"{mark} beta", "b-host", "WARN")]

    # what the client sees of a refused item, and of a bad key
    docs = [{"message": "fine"}, {"message": "stale", "@timestamp": "2001-01-01T00:00:00Z"}]
    _, (ok, errors) = await asyncio.to_thread(
        _ship_lenient, site.url, {"bearer_auth": site.acme_key}, docs)
    assert ok == 1 and len(errors) == 1
    assert errors[0]["index"]["status"] == 400
    assert "time_unix_nano" in errors[0]["index"]["error"]["reason"]
    with pytest.raises(ApiError) as err:
        await asyncio.to_thread(_ship, site.url, {"api_key": "laas_nope"}, docs)
    assert err.value.meta.status == 401


def _ship_lenient(url: str, auth: dict[str, Any], docs: list[dict[str, Any]]) -> tuple[Any, Any]:
    client = Elasticsearch(url, request_timeout=30, **auth)
    try:
        return None, helpers.bulk(client, docs, index="x", raise_on_error=False)
    finally:
        client.close()


async def test_rate_limit_is_an_es_429_with_retry_after(es_web: httpx.AsyncClient) -> None:
    lines: list[dict[str, Any]] = []
    for i in range(50):
        lines += [{"index": {}}, {"message": f"m{i}"}]
    body = bulk_body(*lines)
    r = await es_web.post("/_bulk", content=body, headers={
        "content-type": "application/x-ndjson", "authorization": "Bearer slow-key"})
    assert r.status_code == 200  # the first batch passes on a full bucket and leaves it in debt
    r = await es_web.post("/_bulk", content=body, headers={
        "content-type": "application/x-ndjson", "authorization": "Bearer slow-key"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["type"] == "es_rejected_execution_exception"


async def test_random_and_mutated_bulk_bodies_are_never_5xx(es_web: httpx.AsyncClient) -> None:
    rng = random.Random(17)
    good = bulk_body({"index": {"_index": "a"}}, {"message": "m", "@timestamp": _iso(time.time()),
                                                  "host": {"name": "h"}, "kubernetes": {
                                                      "pod_name": "p", "labels": {"app": "x"}}},
                     {"create": {}}, {"log": "l", "log.level": "warn"})
    statuses = set()
    for i in range(200):
        if i % 2:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        else:
            mutated = bytearray(good)
            for _ in range(rng.randrange(1, 5)):
                mutated[rng.randrange(len(mutated))] = rng.choice(b'{}[]":,\n\\x0 ')
            body = bytes(mutated)
        r = await es_web.post("/_bulk", content=body, headers=NDJSON)
        assert r.status_code < 500, (body, r.text)
        statuses.add(r.status_code)
        if r.status_code == 200:
            assert len(r.json()["items"]) >= 1
    assert 200 in statuses
