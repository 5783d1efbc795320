"""The web UI end to end: the real web app (uvicorn) over real Kafka and Elasticsearch, driven in
Debian's Chromium by `web/ui/e2e/run.mjs` (playwright-core).

The test builds two tenants with users and keys (one user is a member of both), indexes known
logs (their template ids mined by the real `TenantMiner`, the template texts in the patterns
snapshot index as the worker writes them) and source statistics, starts a real worker
(`python -m app worker` on the test's topics, indices and user database), sends another known
set of logs through the HTTP ingest API with the tenant's ingest key and waits until the worker
has indexed them, serves the built UI and runs the browser script. When the script says it is
watching the live tail the test sends a new log through the ingest API (worker → `logs.events` →
tail); when it watches the Alerts page it publishes an alert to `alerts`. The alert is the real
detection's: tenant acme's checkout events replayed through `Windows` and a `SourceMonitor`,
ending in an error burst that is also indexed, turned into alert documents by
`app.pipeline.alerting.anomaly_alert`, stored with the alert stage's `store_alert` and published as
the detect stage publishes (the worker's alert stage stores it too). When tenant beta's admin has
created a webhook in the browser (pointing at a receiver in this test), the test sends beta
error logs through the ingest API until the worker's rule (`level:error`, made through the
rules API) fires and the worker delivers the alert; it checks the signature with the secret the page
showed once, waits for the delivery log row and tells the script, which finds it in the page.
Screenshots land in `web/ui/e2e/screenshots/`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from elasticsearch import AsyncElasticsearch

from agents.alerts import ensure_alerts_index, store_alert
from agents.stats import ensure_sources_index
from app.anomaly import MonitorConfig, SourceMonitor, Windows
from app.db.models import Role
from app.elastic import esindex
from app.elastic.template_index import ensure_patterns_index, patterns_index
from app.kafka.stamp import Stamps
from app.kafka.topics import ALERTS, topic_name
from app.pipeline.alerting import Grouper, anomaly_alert, encode
from app.pipeline.events import NS, LogEvent
from app.pipeline.stats import fold, snapshot_doc
from app.settings import Settings
from app.templates import TenantMiner
from tests.auth_fixtures import (
    PASSWORD,
    World,
    build_world,
    client_for,
    make_settings,
    running_app,
)
from tests.conftest import kafka_options
from tests.search_fixtures import event, index_events
from tests.serving import served
from tests.stream_fixtures import StreamEnv
from tests.ui_fixtures import Receiver, add_membership, delivered, ingest, receiving, wait_indexed

UI = Path(__file__).resolve().parent.parent / "web" / "ui"
SCRIPT = UI / "e2e" / "run.mjs"
SCREENSHOTS = UI / "e2e" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FIX = "run `bash deploy/bootstrap.sh install` (installs chromium, node_modules and builds the UI)"


def require_tools() -> str:
    """The `node` binary; fails (never skips) when the browser, packages or build are missing."""
    node = shutil.which("node")
    problems = []
    if node is None:
        problems.append("node (Node.js 20) is not installed")
    if not Path(CHROMIUM).exists():
        problems.append(f"chromium is not installed at {CHROMIUM}")
    if not (UI / "node_modules" / "playwright-core").is_dir():
        problems.append("web/ui/node_modules is missing")
    if not (UI / "dist" / "index.html").is_file():
        problems.append("the UI is not built (web/ui/dist)")
    if problems:
        pytest.fail(f"{'; '.join(problems)}: {FIX}", pytrace=False)
    assert node is not None
    return node


@dataclass
class UIWorld:
    world: World
    settings: Settings
    url: str
    producer: AIOKafkaProducer
    marker: str
    beta_marker: str
    api_marker: str
    alerts: list[dict[str, Any]]
    es: AsyncElasticsearch
    env: StreamEnv
    receiver: Receiver


# Known logs sent through the HTTP ingest API (JSON shorthand): 12, of which 3 errors.
API_LOGS = 12


def api_logs(marker: str) -> list[dict[str, Any]]:
    return [{"message": f"order {i} routed {marker}", "level": "error" if i % 4 == 0 else "info",
             "service": "api-gateway", "host": "gw-1", "attributes": {"route": "/orders"}}
            for i in range(API_LOGS)]


def source_docs(events: list[LogEvent]) -> list[tuple[str, dict[str, Any]]]:
    """Sources snapshot documents (and their ids) as the stats agent writes them (10 s
    windows)."""
    totals: dict[str, dict[str, Any]] = {}
    windows: dict[str, dict[float, dict[str, Any]]] = defaultdict(dict)
    for ev in sorted(events, key=lambda e: e.time):
        key = ev.source_key
        totals[key] = fold(totals.get(key), ev) or totals[key]
        start = float(ev.time // (10 * NS) * 10)
        window = windows[key].setdefault(start, {"count": 0, "bytes": 0, "severity": {}})
        window["count"] += 1
        window["severity"][ev.severity] = window["severity"].get(ev.severity, 0) + 1
    return [
        (key, snapshot_doc(totals[key], sorted(windows[key].items()), 10)) for key in totals
    ]


def mine(events: list[LogEvent]) -> tuple[list[LogEvent], list[dict[str, Any]]]:
    """The events with template ids from one real miner per tenant (in time order, as the
    normalize stage assigns them), and the snapshot documents the worker writes for them."""
    miners: dict[str, TenantMiner] = defaultdict(TenantMiner)
    out = []
    for ev in sorted(events, key=lambda e: e.time):
        match = miners[ev.tenant_id].add(ev.message, ev.time / NS)
        out.append(dataclasses.replace(ev, template_id=match.template_id,
                                       template_new=match.is_new))
    docs = [{"tenant_id": tenant, "template_id": tid, "template": record[1],
             "first_seen": int(record[4] * 1000), "last_seen": int(record[5] * 1000),
             "updated": int(time.time() * 1000)}
            for tenant, miner in miners.items()
            for tid, record in miner.take_changes().items() if record is not None]
    return out, docs


def detect(events: list[LogEvent], source: str) -> list[dict[str, Any]]:
    """Alert documents of one source's events replayed through the detection windows and a
    `SourceMonitor` (event time instead of ingest time: the fixture's history has no arrival
    spread), in the order the detect stage would send them."""
    windows, monitor, grouper = Windows(size=10), SourceMonitor(source, MonitorConfig()), \
        Grouper(300)
    alerts: list[dict[str, Any]] = []

    def close(now: float) -> None:
        for window in windows.close(now):
            for finding in monitor.observe(window):
                alerts.append(anomaly_alert(grouper, finding, now))

    for ev in sorted((e for e in events if e.source_key == source), key=lambda e: e.time):
        close(ev.time / NS)
        windows.add(source, ev.time / NS, ev.severity, ev.template_id, ev.template_new,
                    ev.message)
    close(time.time() + 20)
    return alerts


async def index_world(world: World, settings: Settings, es: AsyncElasticsearch, marker: str,
                      beta_marker: str) -> list[dict[str, Any]]:
    """Index the known logs, their templates and source statistics of both tenants; the
    alerts the real detection raises for acme's checkout error burst."""
    now = time.time_ns()
    acme = [  # 40 known logs over the last 10 minutes, one source, for search and context
        event(world, "acme", i, message=f"checkout step {i} {marker} order={1000 + i}",
              level=("ERROR" if i % 7 == 0 else "WARN" if i % 5 == 0 else "INFO"),
              service="checkout", host="web-1", at=now - (40 - i) * 15 * NS,
              attributes={"region": "eu-west"})
        for i in range(40)
    ]
    acme += [  # 150 more from another source: the unfiltered list needs two pages
        event(world, "acme", 100 + i, message=f"payment authorised id={i}", service="payments",
              host="pay-2", partition=1, at=now - (150 - i) * 4 * NS,
              level="DEBUG" if i % 3 else "INFO")
        for i in range(150)
    ]
    acme += [  # the payments template was already seen three hours ago: not new
        event(world, "acme", 300 + i, message=f"payment authorised id={9000 + i}",
              service="payments", host="pay-2", partition=1, at=now - 3 * 3600 * NS - i * NS)
        for i in range(3)
    ]
    acme += [  # an error burst on checkout just now: the detectors' evidence
        event(world, "acme", 400 + i, message=f"gateway timeout after {3000 + i} ms",
              level="ERROR", service="checkout", host="web-1", at=now - 9 * NS + i * NS // 4)
        for i in range(30)
    ]
    old = [  # a source that went silent two hours ago
        event(world, "acme", 900 + i, message=f"nightly batch {i}", service="legacy-batch",
              host="cron-9", partition=2, at=now - 2 * 3600 * NS - (5 - i) * 60 * NS)
        for i in range(5)
    ]
    beta = [  # offsets of their own: the shared index would take acme's ids as updates
        event(world, "beta", 500 + i, message=f"beta job {i} {beta_marker}", service="beta-svc",
              host="b-1", at=now - (20 - i) * 20 * NS)
        for i in range(20)
    ]
    mined, template_docs = mine(acme + old + beta)
    await index_events(es, settings, mined)
    await ensure_patterns_index(es, settings)
    for doc in template_docs:  # a fresh index: one write per tenant and template, no merge
        await es.index(index=patterns_index(settings),
                       id=f"{doc['tenant_id']}/{doc['template_id']}", document=doc)
    await es.indices.refresh(index=patterns_index(settings))
    alerts = detect(mined, f"{world.tenant_ids['acme']}/checkout/web-1")
    assert alerts, "the error burst raised no finding"
    await ensure_alerts_index(es, settings)
    await ensure_sources_index(es, settings)
    for key, doc in source_docs(acme + old + beta):  # the stats agent's ids: it updates them
        await es.index(index=esindex.sources_index(settings), id=key, document=doc,
                       refresh=True)
    return alerts


@pytest.fixture
async def ui_world(
    tmp_path: Path, unique: str, kafka_servers: str, es_url: str, es: AsyncElasticsearch
) -> AsyncIterator[UIWorld]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    # The worker shares the web app's topics, indices and user database (rules, webhooks);
    # rules and webhooks reload every second and firings 1 s apart are separate alerts.
    env = StreamEnv(unique, tmp_path, es_url, extra={
        "LAAS_DATABASE_URL": db_url, "LAAS_ALERT_RULES_REFRESH_SECONDS": "1",
        "LAAS_ALERT_GROUP_SECONDS": "1"})
    settings = make_settings(db_url, tmp_path / "state", topic_prefix=f"{unique}.",
                             index_prefix=f"{unique}-", partitions=env.settings.partitions,
                             webhook_allow_networks=["127.0.0.1/32"])  # the receiver's loopback
    await env.create_topics()
    marker, beta_marker = f"orderflow{uuid.uuid4().hex[:6]}", f"betaflow{uuid.uuid4().hex[:6]}"
    api_marker = f"apiflow{uuid.uuid4().hex[:6]}"
    try:
        async with running_app(settings) as app:
            world = await build_world(app)
            await world.add_user("acme", "multi", Role.MEMBER)  # and a viewer of beta
            await add_membership(world, "beta", "multi", Role.VIEWER)
            async with client_for(app) as client:  # beta's rule that the webhook step fires
                made = await client.post("/api/v1/alert-rules", headers=world.headers("b_admin"),
                                         json={"name": "beta-errors", "query": "level:error",
                                               "window_seconds": 2, "threshold": 0,
                                               "cooldown_seconds": 0})
                assert made.status_code == 201, made.text
            # starts while the fixture's logs are indexed; delivers to the loopback receiver
            env.worker(LAAS_WEBHOOK_ALLOW_NETWORKS='["127.0.0.1/32"]')
            alerts = await index_world(world, settings, es, marker, beta_marker)
            async with receiving() as receiver, served(app) as port:
                url = f"http://127.0.0.1:{port}"
                await ingest(url, world.creds["key_ingest"], api_logs(api_marker))
                await wait_indexed(env, es, settings, api_marker, API_LOGS)
                producer = AIOKafkaProducer(**kafka_options(), linger_ms=0)
                await producer.start()
                try:
                    yield UIWorld(world, settings, url, producer, marker, beta_marker,
                                  api_marker, alerts, es, env, receiver)
                finally:
                    await producer.stop()
    finally:
        await env.cleanup(es)


async def fire_beta_webhook(w: UIWorld, secret: str) -> str:
    """Send beta error logs through the ingest API until the worker's rule fires and the
    worker delivers the alert to the receiver; check its signature with `secret` (the one the
    page showed) and wait for its delivery log row. The alert's id."""
    deadline = time.monotonic() + 90
    sent = 0
    while not w.receiver.posts:
        if time.monotonic() > deadline:
            pytest.fail(f"no webhook delivery after {sent} error logs in 90 s\n{w.env.logs()}")
        sent += 1
        await ingest(w.url, w.world.creds["b_key_ingest"], [{
            "message": f"beta job failed attempt={sent}", "level": "error",
            "service": "beta-svc", "host": "b-1"}])
        try:  # the rule's 2 s window closes, the alert store dispatches it
            await asyncio.wait_for(w.receiver.arrived.wait(), 3)
        except TimeoutError:
            pass
    alerts = w.receiver.signed_alerts(secret)
    first = alerts[0]
    assert first["tenant_id"] == str(w.world.tenant_ids["beta"]), first
    assert first["kind"] == "rule" and "beta-errors" in first["title"], first
    await w.env.wait(lambda: delivered(w.world, first["id"]), 30,
                     f"the delivery of alert {first['id']} in the delivery log")
    return str(first["id"])


async def test_ui_end_to_end(ui_world: UIWorld) -> None:
    node = require_tools()
    w = ui_world
    live_marker = f"livearrival{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "LAAS_URL": w.url,
        "LAAS_PASSWORD": PASSWORD,
        "LAAS_ADMIN": w.world.emails["admin"],
        "LAAS_VIEWER": w.world.emails["viewer"],
        "LAAS_MEMBER": w.world.emails["member"],
        "LAAS_MULTI": w.world.emails["multi"],
        "LAAS_BETA": w.world.emails["b_admin"],
        "LAAS_MARKER": w.marker,
        "LAAS_BETA_MARKER": w.beta_marker,
        "LAAS_API_MARKER": w.api_marker,
        "LAAS_API_COUNT": str(API_LOGS),
        "LAAS_LIVE_MARKER": live_marker,
        "LAAS_ALERT_ID": w.alerts[-1]["id"],
        "LAAS_ALERT_OCCURRENCES": str(w.alerts[-1]["occurrences"]),
        "LAAS_ALERT_DETECTOR": w.alerts[-1]["detector"],
        "LAAS_WEBHOOK_URL": w.receiver.url,
        "LAAS_SCREENSHOTS": str(SCREENSHOTS),
        "CHROMIUM": CHROMIUM,
    }
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), cwd=UI, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None and proc.stdin is not None
    output: list[str] = []
    started = time.monotonic()
    try:
        async with asyncio.timeout(300):
            while line := (await proc.stdout.readline()).decode():
                output.append(line.rstrip())
                if line.strip() == "LIVE_READY":  # through the ingest API and the worker
                    await ingest(w.url, w.world.creds["key_ingest"], [{
                        "message": f"{live_marker} just arrived", "level": "info",
                        "service": "checkout", "host": "web-1"}])
                elif line.strip() == "ALERT_READY":  # what the alert stage and detect do
                    stamps = Stamps.from_settings(w.settings)  # as detect signs alerts
                    for alert in w.alerts:
                        await store_alert(w.es, w.settings, alert)
                        key, value = alert["tenant_id"].encode(), encode(alert)
                        await w.producer.send_and_wait(
                            topic_name(w.settings, ALERTS), value, key=key,
                            headers=stamps.sign(key, value, kind="alerts"))
                elif line.startswith("WEBHOOK_READY "):
                    alert_id = await fire_beta_webhook(w, line.split(" ", 1)[1].strip())
                    proc.stdin.write(f"WEBHOOK_DELIVERED {alert_id}\n".encode())
                    await proc.stdin.drain()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = "\n".join(output)
    assert proc.returncode == 0, f"browser run failed:\n{log}\n{w.env.logs()}"
    assert output[-1] == "OK", log
    print(f"browser run: {time.monotonic() - started:.0f} s")
    shots = sorted(p.name for p in SCREENSHOTS.glob("*.png"))
    assert {"02-explore.png", "05-context.png", "06-live.png", "07-sources.png",
            "08-settings-admin.png", "09-settings-viewer.png", "12-patterns.png",
            "13-alerts.png", "14-alerts-viewer.png", "15-patterns-beta.png",
            "18-ingested.png", "19-role-changed.png", "20-member-demoted.png",
            "21-tenant-chosen.png", "22-tenant-switched.png", "23-webhooks.png",
            "24-webhooks-dark.png"} <= set(shots), shots
