"""Loki push compatibility: JSON and snappy protobuf, label mapping, bad input (real Kafka), and
end to end into the right tenant with python-logging-loki (JSON) and a protobuf push built
from Loki's push.proto (real web server, worker, Elasticsearch, search through our API)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import os
import random
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import cramjam
import httpx
import logging_loki
import pytest
from starlette.applications import Starlette

from app.ingest.convert import ConversionError, from_any
from app.ingest.service import IngestService
from app.settings import Settings
from protos.laas.v1 import LogRecord
from protos.loki import push_pb2
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import KeyTable, consume
from tests.shipper_fixtures import *  # noqa: F403
from tests.shipper_fixtures import Site
from web import ingest_loki
from web.ingest_loki import parse_labels

PUSH = "/loki/api/v1/push"
# Grafana's Go Loki client (snappy protobuf), built by `bash deploy/bootstrap.sh install`
LOKIPUSH = Path(__file__).resolve().parent.parent / ".laas" / "bin" / "lokipush"
JSON_HEADERS = {"content-type": "application/json", "authorization": "Bearer ingest-key"}
PB_HEADERS = {"content-type": "application/x-protobuf", "authorization": "Bearer ingest-key"}


def pb_push(streams: list[tuple[str, list[tuple[int, str, dict[str, str]]]]]) -> bytes:
    """A snappy-compressed `logproto.PushRequest`, as Promtail and Alloy send it."""
    request = push_pb2.PushRequest()
    for labels, entries in streams:
        stream = request.streams.add(labels=labels)
        for ns, line, metadata in entries:
            entry = stream.entries.add(line=line)
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(ns, 1_000_000_000)
            for name, value in metadata.items():
                entry.structuredMetadata.add(name=name, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


@pytest.fixture
async def loki(raw_settings: Settings, keys: KeyTable) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=ingest_loki.routes)
    app.state.ingest = IngestService(raw_settings, keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://laas") as client:
        yield client
    await app.state.ingest.close()


def test_labels_parse_like_prometheus_text() -> None:
    assert parse_labels('{job="var\\"logs", host="n1",app="a\\\\b\\n"}') == {
        "job": 'var"logs', "host": "n1", "app": "a\\b\n"}
    assert parse_labels("{}") == {} and parse_labels(' { a = "1" , } ') == {"a": "1"}
    for bad in ("job=x", '{job="x" host="y"}', '{job=x}', '{="x"}', '{job="x}'):
        with pytest.raises(ConversionError):
            parse_labels(bad)


async def test_json_push_maps_labels_and_metadata(loki: httpx.AsyncClient,
                                                  raw_settings: Settings) -> None:
    now = time.time_ns()
    body = {"streams": [
        {"stream": {"service_name": "api", "job": "varlogs", "instance": "node-3",
                    "level": "error", "pod": "api-7", "namespace": "prod", "env": "eu"},
         "values": [[str(now), "boom", {"trace_id": "abc", "user": "u1"}],
                    [str(now + 1), "second"]]},
        {"stream": {"container": "worker"}, "values": [[str(now + 2), "from k8s"]]},
    ]}
    r = await loki.post(PUSH, json=body, headers={"authorization": "Bearer ingest-key"})
    assert r.status_code == 204, r.text
    records = [LogRecord().parse(m.value) for m in await consume(raw_settings, 3, timeout=10)]
    first, second, third = records
    assert from_any(first.body) == "boom" and first.time_unix_nano == now
    assert (first.resource.service_name, first.resource.host) == ("api", "node-3")
    assert (first.severity_number, first.severity_text) == (17, "error")
    attrs = {k: from_any(v) for k, v in first.attributes.items()}
    assert attrs == {"job": "varlogs", "k8s.pod.name": "api-7", "k8s.namespace.name": "prod",
                     "env": "eu", "trace_id": "abc", "user": "u1"}
    assert "user" not in second.attributes and second.time_unix_nano == now + 1
    assert third.resource.service_name == "worker"
    assert from_any(third.attributes["k8s.container.name"]) == "worker"


async def test_protobuf_push_with_snappy(loki: httpx.AsyncClient, raw_settings: Settings) -> None:
    now = time.time_ns()
    body = pb_push([('{app="shop", hostname="h1", detected_level="warn"}',
                     [(now, "line one", {"span": "s1"}), (now + 5, "line two", {})]),
                    ('{job="other"}', [(now + 9, "third", {})])])
    r = await loki.post(PUSH, content=body, headers=PB_HEADERS)
    assert r.status_code == 204, r.text
    records = [LogRecord().parse(m.value) for m in await consume(raw_settings, 3, timeout=10)]
    assert [from_any(x.body) for x in records] == ["line one", "line two", "third"]
    assert [x.time_unix_nano for x in records] == [now, now + 5, now + 9]
    assert (records[0].resource.service_name, records[0].resource.host) == ("shop", "h1")
    assert records[0].severity_number == 13 and from_any(records[0].attributes["span"]) == "s1"
    assert records[2].resource.service_name == "other"


async def test_bad_entries_are_named_and_the_good_ones_kept(
        loki: httpx.AsyncClient, raw_settings: Settings) -> None:
    now = time.time_ns()
    body = {"streams": [
        {"stream": {"app": "a"}, "values": [[str(now), "good 1"], ["yesterday", "bad ts"],
                                            [str(now), 42], [str(now), "x", "meta"],
                                            ["1000", "ancient"], [str(2**64), "too far"]]},
        {"stream": {"app": 7}, "values": [[str(now), "bad labels"]]},
        {"stream": {"app": "b"}},
        "not a stream",
        {"stream": {"app": "c"}, "values": [[str(now), "good 2"]]},
    ]}
    r = await loki.post(PUSH, json=body, headers=JSON_HEADERS)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith("8 of 10 entries rejected, 2 accepted: ")
    for text in ("'yesterday' is not a number of nanoseconds", "line: a string expected",
                 "structured_metadata", "time_unix_nano", "streams[1].stream",
                 "streams[2].values", "streams[3].stream"):
        assert text in r.text, text
    # protobuf: one stream with bad labels, one entry with invalid UTF-8 in its line, one
    # past what a uint64 of nanoseconds holds
    request = push_pb2.PushRequest()
    request.streams.add(labels="not labels").entries.add(line="lost")
    request.streams.add(labels='{app="far"}').entries.add(line="far").timestamp.seconds = 2**62
    ok = request.streams.add(labels='{app="p"}')
    ok.entries.add(line="good 3").timestamp.seconds = now // 10**9
    raw = bytearray(request.SerializeToString())
    broken = push_pb2.StreamAdapter(labels='{app="q"}')
    broken.entries.add(line="good 4").timestamp.seconds = now // 10**9
    broken.entries.add(line="bad \xff")
    part = bytearray(broken.SerializeToString())
    at = part.index("bad \xff".encode())
    part[at + 4: at + 6] = b"\xff\xfe"  # invalid UTF-8 of the same length
    raw += b"\x0a" + bytes([len(part)]) + bytes(part)
    r = await loki.post(PUSH, content=bytes(cramjam.snappy.compress_raw(bytes(raw))),
                        headers=PB_HEADERS)
    assert r.status_code == 400, r.text
    assert "3 of 5 entries rejected, 2 accepted" in r.text and "labels" in r.text
    assert "not a time between the epoch and the year 2554" in r.text
    assert "EntryAdapter" in r.text
    msgs = await consume(raw_settings, 4, timeout=10)
    assert sorted(str(from_any(LogRecord().parse(m.value).body)) for m in msgs) == [
        "good 1", "good 2", "good 3", "good 4"]


async def test_bad_requests_are_clear_4xx(raw_settings: Settings, keys: KeyTable) -> None:
    settings = raw_settings.model_copy(update={"ingest_max_batch_bytes": 5000})
    app = Starlette(routes=ingest_loki.routes)
    app.state.ingest = IngestService(settings, keys)
    big = b"x" * 6000
    huge_length = b"\xff\xff\xff\xff\x0f" + b"\x00" * 10  # claims 4 GiB uncompressed
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        (PB_HEADERS, b"not snappy at all", 400, "not snappy-compressed"),
        (PB_HEADERS, huge_length, 413, "uncompressed body of 4294967295 bytes"),
        (PB_HEADERS, bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff")), 400,
         "not a Loki PushRequest"),
        (PB_HEADERS, bytes(cramjam.snappy.compress_raw(b"\x00" * 6000)), 413,
         "uncompressed body of 6000 bytes"),
        (PB_HEADERS, big, 413, "at most 5000"),
        (JSON_HEADERS, b"{not json", 400, "not JSON"),
        (JSON_HEADERS, b"[" * 4000, 400, "nested too deeply"),
        (JSON_HEADERS, b'{"streamz": []}', 400, '{"streams": [...]} expected'),
        ({**JSON_HEADERS, "content-encoding": "gzip"}, b"nope", 400, "not valid gzip"),
        ({**JSON_HEADERS, "content-type": "text/plain"}, b"{}", 415, "text/plain"),
        ({"content-type": "application/json"}, b'{"streams": []}', 401, "no API key"),
        ({"content-type": "application/json", "authorization": "Bearer nope"},
         b'{"streams": []}', 401, "unknown"),
        ({"content-type": "application/json", "authorization": "Bearer read-key"},
         b'{"streams": []}', 403, "scope"),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://laas") as client:
        for headers, body, status, text in cases:
            r = await client.post(PUSH, content=body, headers=headers)
            assert (r.status_code, text in r.text) == (status, True), (headers, body[:20], r.text)
            assert r.headers["content-type"].startswith("text/plain")
        ok = gzip.compress(json.dumps({"streams": []}).encode())
        r = await client.post(PUSH, content=ok, headers={**JSON_HEADERS,
                                                          "content-encoding": "gzip"})
        assert r.status_code == 204
        basic = base64.b64encode(b"promtail:ingest-key").decode()
        r = await client.post(PUSH, content=pb_push([]), headers={
            "content-type": "application/x-protobuf", "authorization": f"Basic {basic}"})
        assert r.status_code == 204
    await app.state.ingest.close()
    assert await consume(raw_settings, 1, timeout=2) == []


# --- end to end ------------------------------------------------------------------------------


def _log_with_python_logging_loki(url: str, key: str, mark: str) -> None:
    handler = logging_loki.LokiHandler(url=f"{url}{PUSH}", tags={"application": "billing"},
                                       auth=("any-user", key), version="1")
    logger = logging.getLogger(f"loki-e2e-{mark}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.warning("%s invoice failed", mark, extra={"tags": {"customer": "c-42"}})
        logger.info("%s invoice sent", mark)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _ship_with_lokipush(url: str, key: str, lines: list[str]) -> None:
    if not LOKIPUSH.exists():
        pytest.fail(f"{LOKIPUSH} missing: run `bash deploy/bootstrap.sh install`")
    done = subprocess.run(
        [str(LOKIPUSH), "-url", f"{url}{PUSH}", "-labels", "job=payments,host=pay-1,level=warn",
         "-user", "promtail"], input="\n".join(lines) + "\n", text=True, capture_output=True,
        env={**os.environ, "LOKI_PASSWORD": key}, timeout=60)
    assert done.returncode == 0, done.stderr


async def test_loki_clients_land_in_the_keys_tenant(site: Site) -> None:
    mark = uuid.uuid4().hex[:10]
    await asyncio.to_thread(_log_with_python_logging_loki, site.url, site.acme_key, mark)
    shipped = [f"{mark} paid order {i}" for i in range(3)]
    await asyncio.to_thread(_ship_with_lokipush, site.url, site.acme_key, shipped)
    now = time.time_ns()
    body = pb_push([(f'{{service_name="ledger", host="db-1", level="error", run="{mark}"}}',
                     [(now, f"{mark} from protobuf", {"order_id": "o-9"})])])
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{site.url}{PUSH}", content=body, headers={
            "content-type": "application/x-protobuf",
            "authorization": f"Bearer {site.beta_key}"})
    assert r.status_code == 204, r.text

    hits = await site.wait_hits(f'"{mark}"', 5)
    assert sorted((h["message"], h["level"], h["service"]) for h in hits) == [
        (f"{mark} invoice failed", "WARN", "billing"), (f"{mark} invoice sent", "INFO", "billing"),
        *((line, "WARN", "payments") for line in shipped)]
    assert {h["host"] for h in hits if h["service"] == "payments"} == {"pay-1"}
    failed = next(h for h in hits if "failed" in h["message"])
    assert failed["attributes"]["customer"] == "c-42"
    assert failed["attributes"]["logger"] == f"loki-e2e-{mark}"
    theirs = await site.wait_hits(f'"{mark}"', 1, who="b_admin")
    assert len(theirs) == 1
    hit = theirs[0]
    assert (hit["message"], hit["service"], hit["host"], hit["level"]) == (
        f"{mark} from protobuf", "ledger", "db-1", "ERROR")
    assert hit["attributes"]["order_id"] == "o-9" and hit["attributes"]["run"] == mark
    assert hit["time"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now / 1e9)))
    mine = await site.search(f'"{mark}"')
    assert mine is not None and len(mine) == 5  # acme does not see beta's record
    assert all(h["message"] != hit["message"] for h in mine)


async def test_rate_limit_is_429_with_retry_after(loki: httpx.AsyncClient) -> None:
    now = time.time_ns()
    body = {"streams": [{"stream": {"app": "a"}, "values": [[str(now + i), f"m{i}"]
                                                            for i in range(50)]}]}
    headers = {"authorization": "Bearer slow-key"}
    assert (await loki.post(PUSH, json=body, headers=headers)).status_code == 204
    r = await loki.post(PUSH, json=body, headers=headers)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "rate limit" in r.text


async def test_random_and_mutated_pushes_are_never_5xx(loki: httpx.AsyncClient) -> None:
    rng = random.Random(17)
    now = time.time_ns()
    valid = push_pb2.PushRequest()
    stream = valid.streams.add(labels='{app="a", host="h"}')
    for i in range(3):
        entry = stream.entries.add(line=f"line {i}")
        entry.timestamp.seconds, entry.timestamp.nanos = divmod(now + i, 10**9)
        entry.structuredMetadata.add(name="k", value="v")
    good = valid.SerializeToString()
    good_json = json.dumps({"streams": [{"stream": {"app": "a"},
                                         "values": [[str(now), "x", {"k": "v"}]]}]}).encode()
    statuses = set()
    for i in range(300):
        if i % 3 == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
            raw = body if i % 2 else bytes(cramjam.snappy.compress_raw(body))
            headers = PB_HEADERS
        elif i % 3 == 1:
            mutated = bytearray(good)
            for _ in range(rng.randrange(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            raw, headers = bytes(cramjam.snappy.compress_raw(bytes(mutated))), PB_HEADERS
        else:
            mutated = bytearray(good_json)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            raw, headers = bytes(mutated), JSON_HEADERS
        r = await loki.post(PUSH, content=raw, headers=headers)
        assert r.status_code < 500, (raw, r.text)
        statuses.add(r.status_code)
    assert {204, 400} <= statuses
