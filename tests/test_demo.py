"""The demo stream (`laas demo`, run by `laas up`): the traffic generator, the demo key and
rule. The whole path (within 2 minutes of `laas up` the demo tenant shows services, patterns,
sources and an alert) is tested on a fresh stack in tests/test_newcomer.py."""

from __future__ import annotations

import re
import stat
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.accounts.tenancy import ensure_demo_async, verify_api_key
from app.cli import demo
from app.cli.demo import BURST_LINES, HOSTS, LINES, DemoTraffic, Line, demo_records, prepare
from app.db.engine import create_engine, session_factory
from app.db.migrations import upgrade_database_async
from app.db.models import AlertRule, ApiKey
from app.ingest.jsonpb import pb_record_from_json
from app.query import parse
from app.query.match import compile_predicate
from app.settings import Settings
from app.templates import TenantMiner
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import make_settings

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
        converted = pb_record_from_json(record)
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
