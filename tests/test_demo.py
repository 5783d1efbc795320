"""The demo stream (`laas demo`, run by `laas up`): the traffic generator, the demo key and
rule, and the whole path: within 2 minutes the demo tenant shows services, patterns, sources
and an alert."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import AsyncElasticsearch
from sqlalchemy import select

from app import demo
from app.accounts import ensure_demo_async, verify_api_key
from app.db import create_engine, session_factory
from app.demo import BURST_LINES, HOSTS, LINES, DemoTraffic, Line, demo_records, prepare
from app.ingest.convert import record_from_json
from app.migrations import upgrade_database_async
from app.models import AlertRule, ApiKey
from app.patterns import TenantMiner
from app.query import parse
from app.query.match import compile_predicate
from app.settings import Settings, load_settings
from app.topics import ALL, topic_name
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import make_settings
from tests.stream_fixtures import free_port

ROOT = Path(__file__).resolve().parent.parent
START = 1_800_000_000.0


def run_for(traffic: DemoTraffic, seconds: int, step: float = 1.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(1, int(seconds / step) + 1):
        out += traffic.records(traffic.start + i * step)
    return out


def _pattern(line: Line) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\{\w+\\}", ".+?", re.escape(line.text)) + "$")


def line_of(record: dict[str, Any]) -> Line:
    """The template line `record` was made from."""
    found = [line for line in LINES + BURST_LINES if line.service == record["service"]
             and line.level == record["level"] and _pattern(line).match(record["message"])]
    assert len(found) == 1, record
    return found[0]


def is_burst(record: dict[str, Any]) -> bool:
    return line_of(record) in BURST_LINES[:2]


def rule_matches(record: dict[str, Any]) -> bool:
    """The demo rule's query, evaluated the way the detect stage does, on the record."""
    predicate = compile_predicate(parse(demo.RULE_QUERY))
    return predicate({"service": record["service"], "severity": record["level"],
                      "severity_number": {"DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17}[
                          record["level"]], "message": record["message"]})


# --- the generator ------------------------------------------------------------------------------

def test_traffic_has_several_services_hosts_levels_and_templates() -> None:
    records = run_for(DemoTraffic(START, seed=3), 300)
    services = Counter(r["service"] for r in records)
    assert set(services) == set(HOSTS) and len(services) >= 5
    assert min(services.values()) > 100  # every service speaks, none is a trickle
    hosts = {(r["service"], r["host"]) for r in records}
    assert {host for _, host in hosts} == {h for hs in HOSTS.values() for h in hs}
    assert all(host in HOSTS[service] for service, host in hosts)
    assert set(Counter(r["level"] for r in records)) == {"DEBUG", "INFO", "WARN", "ERROR"}
    # a dozen recurring templates, each with many occurrences and varying variables
    texts = Counter(line_of(r).text for r in records)
    assert len(texts) >= 12
    assert sum(1 for n in texts.values() if n >= 10) >= 12
    orders = {r["attributes"]["order"] for r in records if "order" in r.get("attributes", {})}
    assert len(orders) > 50
    # gentle: 5-20 records/s on average, also counting the bursts
    assert 5 <= len(records) / 300 <= 20
    # every record is valid input of the HTTP ingest
    for record in records[:500]:
        converted = record_from_json(record)
        assert converted.resource.service_name == record["service"]
        assert converted.resource.host == record["host"]
    ts = [r["ts"] for r in records]
    assert ts == sorted(ts) and START < ts[0] and ts[-1] <= START + 300


def test_bursts_come_on_schedule_and_trip_the_rule_only_then() -> None:
    traffic = DemoTraffic(START, seed=11)
    records = run_for(traffic, 600, step=1.3)  # uneven calls: a burst spans several
    bursts = list(traffic.bursts)
    assert bursts[0] == START + 20  # the first one early: an alert within 2 minutes
    gaps = [b - a for a, b in zip(bursts, bursts[1:], strict=False)]
    assert len(bursts) >= 7 and traffic.burst_count == len(bursts)
    assert all(60 <= gap <= 90 for gap in gaps), gaps
    burst_records = [r for r in records if is_burst(r)]
    for start in bursts:
        inside = [r for r in burst_records if start <= r["ts"] <= start + traffic.burst_seconds]
        assert len(inside) >= 50  # ~8/s for 12 s, 5/6 of them payments errors
    assert all(any(b <= r["ts"] <= b + traffic.burst_seconds for b in bursts)
               for r in burst_records)

    # the rule's tumbling windows (aligned like the rule engine's): every burst puts one
    # window above the threshold, windows without a burst stay far below it
    window = demo.RULE_WINDOW
    counts = Counter(r["ts"] - r["ts"] % window for r in records if rule_matches(r))
    for start in bursts:
        touched = [start - start % window + k * window for k in range(2)]
        assert max(counts[w] for w in touched) > demo.RULE_THRESHOLD, (start, counts)
    quiet = [w for w in range(int(START), int(START) + 600, window)
             if not any(b - window < w <= b + traffic.burst_seconds for b in bursts)]
    assert quiet and all(counts[w] <= demo.RULE_THRESHOLD // 3 for w in quiet)


def test_each_line_is_one_pattern_of_the_miner() -> None:
    """The lines' variables are masked or generalised: the pattern list shows each recurring
    line once (what the Patterns page of the demo tenant lists)."""
    miner = TenantMiner()
    for record in run_for(DemoTraffic(START, seed=2), 600):
        miner.add(str(record["message"]))
    templates = list(miner.clusters())
    assert len(templates) == len(LINES) + len(BURST_LINES), [
        " ".join(t.tokens) for t in templates]


def test_traffic_is_deterministic_and_skips_a_long_gap() -> None:
    assert run_for(DemoTraffic(START, seed=5), 30) == run_for(DemoTraffic(START, seed=5), 30)
    traffic = DemoTraffic(START, seed=5)
    traffic.records(START + 5)
    # the sender was stopped for an hour
    later: list[dict[str, Any]] = traffic.records(START + 3600)
    assert later and min(r["ts"] for r in later) > START + 3600 - traffic.catch_up
    assert len(later) < 20 * traffic.catch_up
    assert traffic.next_burst > START + 3600 - 90  # bursts of the gap are not replayed
    assert traffic.records(START + 3600) == []


def test_demo_records_of_laas_send() -> None:
    records = list(zip(range(300), demo_records(seed=1, clock=lambda: 42.0), strict=False))
    assert {r["service"] for _, r in records} == set(HOSTS)
    assert all(r["ts"] == 42.0 for _, r in records)
    fixed = [r for _, r in zip(range(50), demo_records("api"), strict=False)]
    assert {r["service"] for r in fixed} == {"api"} and {r["host"] for r in fixed} == {"demo-1"}


# --- the demo key and rule ----------------------------------------------------------------------

async def _migrated(settings: Settings, with_demo: bool) -> None:
    engine = create_engine(settings)
    try:
        await upgrade_database_async(engine)
        if with_demo:
            assert await ensure_demo_async(session_factory(engine)) is not None
    finally:
        await engine.dispose()


async def _rows(settings: Settings) -> tuple[list[AlertRule], list[ApiKey]]:
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            rules = list((await session.scalars(select(AlertRule))).all())
            keys = list((await session.scalars(select(ApiKey).order_by(ApiKey.id))).all())
            return rules, keys
    finally:
        await engine.dispose()


async def test_prepare_makes_the_key_and_rule_once(auth_db_url: str, tmp_path: Path) -> None:
    settings = make_settings(auth_db_url, tmp_path / "state")
    await _migrated(settings, with_demo=True)
    key = await prepare(settings)
    assert key is not None
    key_file = tmp_path / "state" / demo.KEY_FILE
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert await prepare(settings) == key  # a restart reuses the saved key
    rules, keys = await _rows(settings)
    assert [(r.name, r.query, r.window_seconds, r.condition, r.threshold, r.enabled)
            for r in rules] == [(demo.RULE_NAME, demo.RULE_QUERY, demo.RULE_WINDOW, "above",
                                 demo.RULE_THRESHOLD, True)]
    assert [(k.name, k.scope, k.revoked_at) for k in keys] == [(demo.KEY_NAME, "ingest", None)]

    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            principal = await verify_api_key(session, key)
            assert principal.tenant_slug == "demo"
    finally:
        await engine.dispose()

    key_file.write_text("laas_not-a-key\n")  # lost or stale: a new key, the old one revoked
    again = await prepare(settings)
    assert again is not None and again != key
    assert key_file.read_text().strip() == again
    rules, keys = await _rows(settings)
    assert len(rules) == 1
    assert [k.revoked_at is None for k in keys] == [False, True]


async def test_prepare_without_a_demo_tenant(auth_db_url: str, tmp_path: Path) -> None:
    settings = make_settings(auth_db_url, tmp_path / "state")
    await _migrated(settings, with_demo=False)
    assert await prepare(settings) is None
    assert not (tmp_path / "state" / demo.KEY_FILE).exists()
    assert await _rows(settings) == ([], [])


# --- the whole path -----------------------------------------------------------------------------

class Processes:
    """`python -m app <name>` children with one environment, as `laas up` starts them.
    (Once `laas up` starts the demo itself, this becomes one `laas up` process.)"""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", "app", name], cwd=ROOT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def check(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def stop(self, name: str, timeout: float = 40) -> int:
        proc = self.running[name]
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def stop_all(self) -> None:
        for name in self.running:
            self.stop(name)

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def all_tails(self) -> str:
        return "\n".join(f"--- {name}\n{self.tail(name)}" for name in self.running)


async def _cleanup(settings: Settings, es: AsyncElasticsearch, unique: str) -> None:
    await es.indices.delete(index=f"{unique}-*", ignore_unavailable=True, allow_no_indices=True)
    await es.options(ignore_status=404).indices.delete_index_template(name=f"{unique}-logs")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_servers)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(unique)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def answer_of(client: httpx.AsyncClient, path: str, headers: dict[str, str],
                    params: dict[str, Any]) -> Any:
    """The JSON answer of a GET; None while the service is busy (503)."""
    answer = await client.get(path, headers=headers, params=params)
    if answer.status_code == 503:
        return None
    assert answer.status_code == 200, (path, answer.text)
    return answer.json()


async def test_demo_fills_the_demo_tenant_within_two_minutes(
    kafka_servers: str, es_url: str, unique: str, tmp_path: Path, es: AsyncElasticsearch
) -> None:
    from app.supervisor import demo_login

    state = tmp_path / "state"
    web_port = free_port()
    isolated = {
        "LAAS_STATE_DIR": str(state),  # a fresh SQLite user database, as on a new machine
        "LAAS_APP_ID": unique,
        "LAAS_TOPIC_PREFIX": f"{unique}.",
        "LAAS_INDEX_PREFIX": f"{unique}-",
        "LAAS_WEB_PORT": str(web_port),
        "LAAS_GATEWAY_PORT": str(free_port()),
        "LAAS_WORKER_WEB_PORT": str(free_port()),
    }
    env = {k: v for k, v in os.environ.items() if k != "LAAS_DATABASE_URL"} | isolated
    settings = load_settings(
        state_dir=state, app_id=unique, topic_prefix=f"{unique}.", index_prefix=f"{unique}-",
        web_port=web_port, database_url=None)
    # What `laas up` does before its children: the demo tenant and its login; the topics
    # (issue 16 makes `laas up` create them before any consumer joins)
    assert "tenant demo" in await asyncio.to_thread(demo_login, settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic_name(settings, name), settings.partitions,
                                            settings.replication_factor) for name in ALL])
    finally:
        await admin.close()
    login = dict(line.split(": ", 1) for line in (state / "demo-login.txt").read_text()
                 .splitlines())

    procs = Processes(env, state / "logs")
    started = time.monotonic()
    seen: dict[str, float] = {}
    last: dict[str, Any] = {}
    try:
        for name in ("worker", "gateway", "web", "demo"):
            procs.start(name)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}",
                                     timeout=10) as client:
            headers: dict[str, str] = {}
            while not {"services", "patterns", "sources", "alert"} <= set(seen):
                procs.check()
                elapsed = time.monotonic() - started
                if elapsed > 120:
                    print(procs.all_tails())
                    pytest.fail(f"after {elapsed:.0f}s only {sorted(seen)} were there "
                                f"(last answers: {last})")
                await asyncio.sleep(2)
                if not headers:
                    try:
                        answer = await client.post("/api/v1/auth/login", json={
                            "email": login["email"], "password": login["password"]})
                    except httpx.TransportError:
                        continue  # the web app is starting
                    assert answer.status_code == 200, answer.text
                    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
                    seen["web"] = time.monotonic() - started
                answers = [await answer_of(client, path, headers, params) for path, params in (
                    ("/api/v1/search", {"since": "1h", "limit": 1000}),
                    ("/api/v1/patterns", {"since": "1h"}), ("/api/v1/sources", {}),
                    ("/api/v1/alerts", {}))]
                if None in answers:
                    continue  # Elasticsearch busy (503): ask again
                services = {hit["service"] for hit in answers[0]["hits"]}
                patterns, sources, alerts = (answers[1]["patterns"], answers[2]["sources"],
                                             answers[3]["alerts"])
                last = {"services": sorted(services), "patterns": len(patterns),
                        "sources": len(sources), "alerts": [a["title"] for a in alerts]}
                now = time.monotonic() - started
                if len(services) >= 3:
                    seen.setdefault("services", now)
                if len(patterns) >= 3 and all(p["template"] for p in patterns[:3]):
                    seen.setdefault("patterns", now)
                if len(sources) >= 6:  # of the 9 service/host pairs
                    seen.setdefault("sources", now)
                if alerts:
                    seen.setdefault("alert", now)
            print(f"demo: seconds after start {seen}; last answers {last}")
            assert any(a["kind"] == "rule" and demo.RULE_NAME in a["title"] for a in alerts)
            histogram = await client.get("/api/v1/histogram", headers=headers,
                                         params={"since": "15m"})
            assert histogram.status_code == 200, histogram.text
            levels: Counter[str] = Counter()
            for bucket in histogram.json()["buckets"]:
                levels.update(bucket["levels"])
            assert {"INFO", "WARN", "ERROR", "DEBUG"} <= set(levels), levels
            assert levels["ERROR"] > demo.RULE_THRESHOLD
            assert {s["service"] for s in sources} <= set(demo.HOSTS)
        assert procs.stop("demo", timeout=15) == 0, procs.tail("demo")
        assert "demo: stopped after" in procs.tail("demo")
        key_file = state / demo.KEY_FILE
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        procs.stop_all()
        await _cleanup(settings, es, unique)
