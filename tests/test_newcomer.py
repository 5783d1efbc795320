"""The newcomer's path: `laas up` on an EMPTY broker and an empty state directory (a fresh Kafka
and Elasticsearch on ports of their own, SQLite users), then one record through every ingest path
(curl on HTTP NDJSON, the OpenTelemetry SDK over OTLP/HTTP and OTLP/gRPC, the laas.v1 gRPC
client, kcat straight to Kafka), each found by search within 30 s, with no restart; and the demo
tenant's own traffic: several services, patterns and an alert, within two minutes; Ctrl-C stops
it all.

Only the download cache (`downloads/`: Kafka's jars, the Elasticsearch zip) is shared with the
main stack, so the test does not fetch 150 MB again; everything else starts from nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from laas_client import Shipper
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from app.cli import demo
from app.ingest.jsonpb import pb_record_from_json
from app.kafka.client import client_options
from app.pipeline.events import DeadLetter
from app.settings import Settings, load_settings
from tests.test_kafka import free_port

ROOT = Path(__file__).resolve().parent.parent
SEARCHABLE_WITHIN = 30.0  # seconds from the ack to a search hit
DEMO_WITHIN = 120.0  # seconds from `laas up` being ready to the demo's alert


def _free_port_pair(offset: int) -> int:
    """A free port whose `port + offset` is free too (Elasticsearch's transport port)."""
    while True:
        port = free_port()
        if port + offset < 65536 and _is_free(port + offset):
            return port


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Newcomer:
    """A `laas up` of its own: fresh state directory, broker, index and user database."""

    def __init__(self, state_dir: Path, main_state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "downloads").symlink_to((main_state_dir / "downloads").resolve())
        self.state_dir = state_dir
        self.web_port, self.gateway_port = free_port(), free_port()
        self.otlp_http_port = free_port()
        self.kafka_port = free_port()
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("LAAS_")}
        self.env |= {
            "LAAS_STATE_DIR": str(state_dir),
            "LAAS_KAFKA_PORT": str(self.kafka_port),
            "LAAS_KAFKA_CONTROLLER_PORT": str(free_port()),
            "LAAS_ES_PORT": str(_free_port_pair(100)),
            "LAAS_ES_HEAP": "512m",
            "LAAS_POSTGRES_ENABLED": "false",
            "LAAS_WEB_PORT": str(self.web_port),
            "LAAS_GATEWAY_PORT": str(self.gateway_port),
            "LAAS_OTLP_HTTP_PORT": str(self.otlp_http_port),  # the gateway's OTLP/HTTP (4318)
            "LAAS_GATEWAY_METRICS_PORT": str(free_port()),  # its /metrics (default 9464)
            "LAAS_WORKER_WEB_PORT": str(free_port()),
        }
        self.output = state_dir / "up.out"
        self.up: subprocess.Popen[bytes] | None = None
        self.ready_at = 0.0  # monotonic time `laas up` printed its URL

    def laas(self, *args: str) -> str:
        """Run a `laas` command as the newcomer would; its stdout."""
        done = subprocess.run([sys.executable, "-m", "app", *args], cwd=self.state_dir,
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self) -> None:
        with self.output.open("wb") as out:
            self.up = subprocess.Popen([sys.executable, "-m", "app", "up"], cwd=self.state_dir,
                                       env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def printed(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.up.kill()
        subprocess.run([sys.executable, "-m", "app", "stack", "down"], cwd=self.state_dir,
                       env=self.env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
async def newcomer(settings: Settings) -> AsyncIterator[Newcomer]:
    # Inside the main state directory, not pytest's tmp (mode 0700): Elasticsearch runs as the
    # unprivileged user `laas`, which must reach its files.
    state_dir = settings.state_dir.resolve() / f"newcomer-{uuid.uuid4().hex[:8]}"
    one = Newcomer(state_dir, settings.state_dir)
    one.start()
    try:
        async with asyncio.timeout(600):  # first start: unpack Elasticsearch, format Kafka
            while "LaaS is up:" not in one.printed():
                assert one.up is not None and one.up.poll() is None, one.printed()
                await asyncio.sleep(0.5)
        one.ready_at = time.monotonic()
        yield one
    finally:
        one.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


async def _login(client: httpx.AsyncClient, state_dir: Path) -> str:
    saved = dict(line.split(": ", 1)
                 for line in (state_dir / "demo-login.txt").read_text().splitlines())
    response = await client.post("/api/v1/auth/login",
                                 json={"email": saved["email"], "password": saved["password"]})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _otel(exporter: LogRecordExporter, service: str, message: str) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(f"newcomer-{service}")
    logger.propagate = False
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.warning(message)
    finally:
        logger.removeHandler(handler)
        provider.shutdown()


async def _dead_letter_reason(one: Newcomer, text: str) -> str:
    """The reason of the dead letter whose original value contains `text` (waits up to 30 s)."""
    settings = load_settings(state_dir=one.state_dir, kafka_port=one.kafka_port,
                             kafka_credentials_file=one.state_dir / "kafka" / "credentials.json")
    consumer = AIOKafkaConsumer("logs.deadletter", **client_options(settings),
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        dead = DeadLetter.from_json(record.value)
                        if text.encode() in dead.value:
                            return dead.reason
    finally:
        await consumer.stop()


def _send_every_way(one: Newcomer, key: str, marks: dict[str, str]) -> None:
    """One record per ingest path, each carrying its mark; each call returns on the ack."""
    web, grpc = f"http://127.0.0.1:{one.web_port}", f"127.0.0.1:{one.gateway_port}"
    curl = subprocess.run(
        ["curl", "-sS", "-o", "/dev/stderr", "-w", "%{http_code}", "-X", "POST",
         f"{web}/api/v1/logs", "-H", f"Authorization: Bearer {key}",
         "-H", "Content-Type: application/x-ndjson",
         "--data-binary", json.dumps({"message": marks["http"], "service": "curl"}) + "\n"],
        capture_output=True, text=True, timeout=30)
    assert curl.stdout == "200", curl.stdout + curl.stderr
    now_ns = str(time.time_ns())
    loki = {"streams": [{"stream": {"service_name": "loki", "host": "h1"},
                         "values": [[now_ns, marks["loki"]]]}]}
    bulk = (json.dumps({"create": {"_index": "logs"}}) + "\n"
            + json.dumps({"message": marks["bulk"], "service": "bulk"}) + "\n")
    for path, body, media in (("/loki/api/v1/push", json.dumps(loki), "application/json"),
                              ("/_bulk", bulk, "application/x-ndjson")):
        sent = subprocess.run(
            ["curl", "-sS", "-o", "/dev/stderr", "-w", "%{http_code}", "-X", "POST",
             f"{web}{path}", "-H", f"Authorization: Bearer {key}", "-H", f"Content-Type: {media}",
             "--data-binary", body], capture_output=True, text=True, timeout=30)
        assert sent.stdout in ("200", "204"), f"{path}: {sent.stdout} {sent.stderr}"
        assert '"errors":true' not in sent.stderr, sent.stderr
    _otel(HttpLogExporter(endpoint=f"{web}/v1/logs", headers={"authorization": f"Bearer {key}"},
                          timeout=10), "otlp-http", marks["otlp-http"])
    _otel(HttpLogExporter(endpoint=f"http://127.0.0.1:{one.otlp_http_port}/v1/logs",
                          headers={"authorization": f"Bearer {key}"}, timeout=10),
          "otlp-4318", marks["otlp-4318"])
    _otel(GrpcLogExporter(endpoint=f"http://{grpc}", insecure=True,
                          headers={"authorization": f"Bearer {key}"}, timeout=10),
          "otlp-grpc", marks["otlp-grpc"])
    shipper = Shipper(f"grpc://{grpc}", key)
    try:
        result = shipper.push([pb_record_from_json({"message": marks["grpc"], "service": "grpc"})])
        assert result.accepted == 1, result
    finally:
        shipper.close()
    kcat = _kcat(one, "logs.raw", json.dumps({"message": marks["kafka"], "service": "kcat"}),
                 "-H", "content-type=application/json", "-H", f"laas-api-key={key}")
    assert kcat.returncode == 0 and "ERROR" not in kcat.stderr, kcat.stderr


def _kcat(one: Newcomer, topic: str, line: str, *headers: str
          ) -> subprocess.CompletedProcess[str]:
    """A direct producer: kcat with the stack's producer login (`laas-producer`)."""
    return subprocess.run(
        ["kcat", "-F", str(one.state_dir / "kafka" / "producer.conf"), "-t", topic, "-P",
         "-k", "kcat/kcat", *headers], input=line + "\n", capture_output=True, text=True,
        timeout=30)


async def test_every_ingest_path_is_searchable_on_a_fresh_stack(newcomer: Newcomer) -> None:
    assert "created Kafka topics: logs.raw, logs.events" in newcomer.printed()
    key = newcomer.laas("apikey", "create", "--tenant", "demo", "--name", "newcomer",
                        "--scope", "ingest").strip()
    run = uuid.uuid4().hex[:8]
    marks = {path: f"newcomer{path.replace('-', '')}{run}"
             for path in ("http", "loki", "bulk", "otlp-http", "otlp-4318", "otlp-grpc", "grpc",
                          "kafka")}
    await asyncio.to_thread(_send_every_way, newcomer, key, marks)
    acked = time.monotonic()
    found: dict[str, float] = {}
    unavailable: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{newcomer.web_port}",
                                 timeout=10) as client:
        headers = {"Authorization": f"Bearer {await _login(client, newcomer.state_dir)}"}
        while len(found) < len(marks) and time.monotonic() - acked < SEARCHABLE_WITHIN:
            for path, mark in marks.items():
                if path in found:
                    continue
                response = await client.get("/api/v1/search", headers=headers,
                                            params={"q": mark, "since": "1h"})
                if response.status_code == 503:  # "retry shortly", as a client would
                    unavailable.append(response.text)
                    continue
                assert response.status_code == 200, response.text
                if response.json()["hits"]:
                    found[path] = time.monotonic() - acked
            await asyncio.sleep(0.5)
        # A direct producer cannot claim a tenant, write past logs.raw or read any topic.
        forged = f"forged{run}"
        claim = _kcat(newcomer, "logs.raw", json.dumps({"message": forged, "service": "kcat"}),
                      "-H", "content-type=application/json", "-H", "laas-tenant-id=1")
        assert claim.returncode == 0 and "ERROR" not in claim.stderr, claim.stderr
        for topic in ("logs.events", "alerts"):
            denied = _kcat(newcomer, topic, json.dumps({"message": forged}))
            assert "Topic authorization failed" in denied.stderr, denied.stderr
        read = subprocess.run(
            ["kcat", "-F", str(newcomer.state_dir / "kafka" / "producer.conf"), "-t",
             "logs.raw", "-C", "-e", "-o", "beginning"], capture_output=True, text=True,
            timeout=30)
        assert "authorization failed" in read.stderr.lower() and marks["http"] not in read.stdout
        reason = await _dead_letter_reason(newcomer, forged)
        assert reason == "unsigned_tenant_header"
        response = await client.get("/api/v1/search", headers=headers,
                                    params={"q": forged, "since": "1h"})
        assert response.status_code == 200 and response.json()["hits"] == [], response.text
    missing = sorted(set(marks) - set(found))
    web_log = (newcomer.state_dir / "logs" / "web.log").read_text(errors="replace")
    assert not missing, (f"not searchable within {SEARCHABLE_WITHIN:.0f}s: {missing}; found "
                         f"{found}; {len(unavailable)} answers 503\n{web_log[-3000:]}")
    assert "restarted" not in newcomer.printed()


def test_the_readme_tour_works_as_written(newcomer: Newcomer) -> None:
    """The README's 60-second tour, pasted into a shell (ports moved to this stack's)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- tour:begin -->", 1)[1].split("<!-- tour:end -->", 1)[0]
    script = block.split("```sh\n", 1)[1].rsplit("```", 1)[0]
    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{newcomer.web_port}")
    script = script.replace("127.0.0.1:4317", f"127.0.0.1:{newcomer.gateway_port}")
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=newcomer.env,
                          capture_output=True, text=True, timeout=180)
    out = done.stdout
    assert '"accepted":1' in out.replace(" ", ""), out + done.stderr
    assert out.count("hello from the tour") >= 2, out + done.stderr  # search, then tail
    assert "hello over OpenTelemetry" in out, out + done.stderr


async def _answer(client: httpx.AsyncClient, path: str, headers: dict[str, str],
                  params: dict[str, Any]) -> Any:
    """The JSON answer of a GET; None while Elasticsearch is busy (503, "retry shortly")."""
    answer = await client.get(path, headers=headers, params=params)
    if answer.status_code == 503:
        return None
    assert answer.status_code == 200, (path, answer.text)
    return answer.json()


async def test_the_demo_tenant_shows_services_patterns_sources_and_an_alert(
    newcomer: Newcomer,
) -> None:
    """What the printed URL shows a newcomer within two minutes of `laas up` being up."""
    seen: dict[str, float] = {}
    last: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{newcomer.web_port}",
                                 timeout=10) as client:
        headers = {"Authorization": f"Bearer {await _login(client, newcomer.state_dir)}"}
        while not {"services", "patterns", "sources", "alert"} <= set(seen):
            elapsed = time.monotonic() - newcomer.ready_at
            demo_log = newcomer.state_dir / "logs" / "demo.log"
            assert elapsed < DEMO_WITHIN, (
                f"after {elapsed:.0f}s only {sorted(seen)}; last answers {last}\n"
                f"{demo_log.read_text(errors='replace')[-3000:] if demo_log.exists() else ''}")
            answers = [await _answer(client, path, headers, params) for path, params in (
                ("/api/v1/search", {"since": "1h", "limit": 1000}),
                ("/api/v1/patterns", {"since": "1h"}), ("/api/v1/sources", {}),
                ("/api/v1/alerts", {}))]
            if None not in answers:
                services = {hit["service"] for hit in answers[0]["hits"]} & set(demo.HOSTS)
                patterns, sources, alerts = (answers[1]["patterns"], answers[2]["sources"],
                                             answers[3]["alerts"])
                last = {"services": sorted(services), "patterns": len(patterns),
                        "sources": len(sources), "alerts": [a["title"] for a in alerts]}
                if len(services) >= 3:
                    seen.setdefault("services", elapsed)
                if len(patterns) >= 3 and all(p["template"] for p in patterns[:3]):
                    seen.setdefault("patterns", elapsed)
                if len(sources) >= 6:  # of the demo's 9 service/host pairs
                    seen.setdefault("sources", elapsed)
                if any(a["kind"] == "rule" and demo.RULE_NAME in a["title"] for a in alerts):
                    seen.setdefault("alert", elapsed)
            await asyncio.sleep(2)
        histogram = await client.get("/api/v1/histogram", headers=headers,
                                     params={"since": "15m"})
        assert histogram.status_code == 200, histogram.text
        levels: Counter[str] = Counter()
        for bucket in histogram.json()["buckets"]:
            levels.update(bucket["levels"])
        assert {"INFO", "WARN", "ERROR", "DEBUG"} <= set(levels), levels
    key_file = newcomer.state_dir / demo.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_ctrl_c_stops_every_process(newcomer: Newcomer) -> None:
    assert newcomer.up is not None
    newcomer.up.send_signal(signal.SIGINT)
    assert newcomer.up.wait(timeout=60) == 0, newcomer.printed()
    assert "restarted" not in newcomer.printed()
    assert "demo: stopped after" in (newcomer.state_dir / "logs" / "demo.log").read_text()
