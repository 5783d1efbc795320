"""The web UI end to end: the real web app (uvicorn) over real Kafka and Elasticsearch, driven in
Debian's Chromium by `web/ui/e2e/run.mjs` (playwright-core).

The test builds two tenants with users and keys, indexes known logs and source statistics, serves
the built UI, runs the browser script, and publishes a new event to `logs.events` when the script
says it is watching the live tail. Screenshots land in `web/ui/e2e/screenshots/`.
"""

from __future__ import annotations

import asyncio
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
import uvicorn
from aiokafka import AIOKafkaProducer
from elasticsearch import AsyncElasticsearch

from agents.stats import ensure_sources_index
from app import esindex
from app.events import NS, LogEvent
from app.settings import Settings
from app.stats import fold, snapshot_doc
from app.topics import EVENTS, topic_name
from tests.auth_fixtures import PASSWORD, World, build_world, make_settings, running_app
from tests.search_fixtures import event, index_events
from tests.test_kafka import create_topic, free_port

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


def source_docs(events: list[LogEvent], settings: Settings) -> list[dict[str, Any]]:
    """Sources snapshot documents as the stats agent writes them (10 s windows)."""
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
        snapshot_doc(totals[key], sorted(windows[key].items()), 10) for key in totals
    ]


@pytest.fixture
async def ui_world(
    tmp_path: Path, unique: str, kafka_servers: str, es: AsyncElasticsearch
) -> AsyncIterator[UIWorld]:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
        tmp_path / "state",
        topic_prefix=f"{unique}.",
        index_prefix=f"{unique}-",
    )
    await create_topic(kafka_servers, topic_name(settings, EVENTS), 1)
    marker, beta_marker = f"orderflow{uuid.uuid4().hex[:6]}", f"betaflow{uuid.uuid4().hex[:6]}"
    async with running_app(settings) as app:
        world = await build_world(app)
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
        old = [  # a source that went silent two hours ago
            event(world, "acme", 900 + i, message=f"nightly batch {i}", service="legacy-batch",
                  host="cron-9", partition=2, at=now - 2 * 3600 * NS - (5 - i) * 60 * NS)
            for i in range(5)
        ]
        beta = [
            event(world, "beta", i, message=f"beta job {i} {beta_marker}", service="beta-svc",
                  host="b-1", at=now - (20 - i) * 20 * NS)
            for i in range(20)
        ]
        await index_events(es, settings, acme + old + beta)
        await ensure_sources_index(es, settings)
        for doc in source_docs(acme + old + beta, settings):
            await es.index(index=esindex.sources_index(settings), document=doc, refresh=True)

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_servers, linger_ms=0)
        await producer.start()
        try:
            yield UIWorld(world, settings, f"http://127.0.0.1:{port}", producer, marker,
                          beta_marker)
        finally:
            await producer.stop()
            server.should_exit = True
            await serving
    await es.indices.delete(index=f"{unique}-*", allow_no_indices=True)


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
        "LAAS_BETA": w.world.emails["b_admin"],
        "LAAS_MARKER": w.marker,
        "LAAS_BETA_MARKER": w.beta_marker,
        "LAAS_LIVE_MARKER": live_marker,
        "LAAS_SCREENSHOTS": str(SCREENSHOTS),
        "CHROMIUM": CHROMIUM,
    }
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), cwd=UI, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(150):
            while line := (await proc.stdout.readline()).decode():
                output.append(line.rstrip())
                if line.strip() == "LIVE_READY":
                    live = event(w.world, "acme", 5000, message=f"{live_marker} just arrived",
                                 service="checkout", host="web-1", at=time.time_ns())
                    topic = topic_name(w.settings, EVENTS)
                    await w.producer.send_and_wait(topic, live.to_json(),
                                                   key=live.source_key.encode())
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = "\n".join(output)
    assert proc.returncode == 0, f"browser run failed:\n{log}"
    assert output[-1] == "OK", log
    shots = sorted(p.name for p in SCREENSHOTS.glob("*.png"))
    assert {"02-explore.png", "05-context.png", "06-live.png", "07-sources.png",
            "08-settings-admin.png", "09-settings-viewer.png"} <= set(shots), shots
