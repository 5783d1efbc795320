"""The detect stage's state handling: at most `detect_max_sources` live monitors per worker,
idle eviction with a snapshot of the full state, restore on return, bounded table writes per
event, and a timer that lets the loop run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import agents.detect
from agents.detect import Detection
from agents.resources import Resources
from app.anomaly import SourceMonitor
from app.kafka.topics import declare_topics
from app.pipeline.events import NS, LogEvent, RawPosition
from app.pipeline.faust_app import create_app
from app.settings import load_settings


def event(host: str, t: float, service: str = "api") -> LogEvent:
    return LogEvent(tenant_id="1", tenant="acme", time=int(t * NS), observed_time=int(t * NS),
                    severity="INFO", severity_number=9, message="GET /health 200",
                    service=service, host=host, raw=RawPosition("logs.raw", 0, 0))


def detection(tmp_path: Path, **overrides: Any) -> Detection:
    """A Detection whose tables are dicts: Faust writes a table only while it processes an
    event of the table's partition (the worker test covers the real changelog)."""
    settings = load_settings(state_dir=tmp_path, app_id="detect-test", **overrides)
    app = create_app(settings, store="memory://")
    found = Detection(app, declare_topics(app, settings), Resources.build(settings))
    found.light, found.model = {}, {}  # type: ignore[assignment]
    return found


async def test_a_worker_keeps_at_most_max_sources_monitors(tmp_path: Path) -> None:
    det = detection(tmp_path, detect_max_sources=3)
    now = time.time()
    for i in range(5):  # five sources, one after the other
        det.observe([event(f"h{i}", now + i * 0.01)], partition=0)
    await det.tick()
    assert len(det.monitors) == 3
    assert set(det.monitors) == {"1/api/h2", "1/api/h3", "1/api/h4"}  # the most recent
    # the two evicted sources' full state went to the tables with the next events
    assert {"1/api/h0", "1/api/h1"} <= set(det.light) and {"1/api/h0", "1/api/h1"} <= \
        set(det.model)
    det.observe([event("h0", now + 1)], partition=0)  # a dropped source comes back
    await det.tick()
    assert "1/api/h0" in det.monitors and len(det.monitors) == 3


async def test_idle_source_evicted_with_its_state_and_restored(tmp_path: Path) -> None:
    """A source silent for `detect_idle_seconds` leaves memory; its light and model state is
    written to the tables (queued until an event of its partition comes) and a returning
    source continues from it: same windows count, same model."""
    det = detection(tmp_path, detect_idle_seconds=60, detect_window_seconds=10)
    t0 = 1_800_000_000.0
    for k in range(8):  # "a" and "b" send for 8 windows
        det.observe([event("a", t0 + k * 10 + 1), event("b", t0 + k * 10 + 2)], partition=0)
        await det.tick(now=t0 + k * 10 + 12.5)
    before = det.monitors["1/api/a"]
    assert before.windows == 8
    model_before = before.model_state()
    k = 8
    while "1/api/a" in det.monitors:  # only "b" sends now
        det.observe([event("b", t0 + k * 10 + 2)], partition=0)
        await det.tick(now=t0 + k * 10 + 12.5)
        k += 1
    assert 60 / 10 <= k - 8 <= 60 / 10 + 2  # after about `detect_idle_seconds`
    queued = det.pending_evicted[0]["1/api/a"]
    assert det.light["1/api/a"] != queued[0]  # an earlier window's light state, until ...
    det.observe([event("b", t0 + k * 10 + 2)], partition=0)  # ... partition 0's next event
    assert not det.pending_evicted[0]
    assert (det.light["1/api/a"], det.model["1/api/a"]) == queued
    restored = SourceMonitor.restore(det.light["1/api/a"], det.model["1/api/a"])
    assert restored.windows == before.windows > 8  # with the empty windows until evicted
    det.observe([event("a", t0 + k * 10 + 3)], partition=0)  # "a" is back
    back = det.monitors["1/api/a"]
    assert back is not before and back.windows == restored.windows
    assert back.model_state() != model_before  # the silent windows were learnt, and kept
    assert back.model_state() == restored.model_state()


async def test_a_source_evicted_and_back_before_the_write_restores_from_the_queue(
        tmp_path: Path) -> None:
    det = detection(tmp_path, detect_max_sources=1)
    now = time.time()
    det.observe([event("h0", now)], partition=1)
    monitor = det.monitors["1/api/h0"]
    monitor.windows = 41  # stands for a history
    det.observe([event("h1", now)], partition=0)  # h0 pushed out: queued for partition 1
    assert "1/api/h0" in det.pending_evicted[1] and "1/api/h0" not in det.light
    det.observe([event("h0", now)], partition=1)  # back before partition 1 had an event
    assert det.monitors["1/api/h0"].windows == 41
    assert "1/api/h0" not in det.pending_evicted[1]


async def test_one_event_writes_at_most_a_batch_of_states(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(agents.detect, "PERSIST_BATCH", 10)
    det = detection(tmp_path, detect_light_snapshot_seconds=0)  # every window's light state
    past = time.time() - 30
    det.observe([event(f"h{i}", past) for i in range(25)], partition=0)
    await det.tick()
    assert len(det.pending_light[0]) == 25
    det.observe([event("h0", time.time())], partition=0)
    assert len(det.light) == 10 and len(det.pending_light[0]) == 15
    det.observe([event("h0", time.time())], partition=3)  # another partition: not written
    assert len(det.light) == 10
    det.observe([event("h0", time.time())], partition=0)
    det.observe([event("h0", time.time())], partition=0)
    assert len(det.light) == 25 and not det.pending_light[0]


async def test_tick_lets_the_loop_run_between_windows(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer gives the loop away once it has worked YIELD_AFTER seconds (0 here: after
    every window), so no number of sources holds the event loop for the whole tick."""
    monkeypatch.setattr(agents.detect, "YIELD_AFTER", 0.0)
    det = detection(tmp_path, detect_light_snapshot_seconds=0)
    past = time.time() - 30  # windows that ended: closed by the next tick
    for i in range(6):
        det.observe([event(f"h{i}", past)], partition=0)
    beats = 0
    ticking = True

    async def heartbeat() -> None:
        nonlocal beats
        while ticking:
            beats += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    start = beats
    await det.tick()
    ticking = False
    await beat
    assert len(det.pending_light[0]) == 6  # every source's windows were scored
    assert beats - start >= 6 * 2  # the loop ran between them (6 sources, 2-3 windows each)


async def test_a_tick_stops_after_its_share_of_the_interval_and_the_next_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many sources closing a window at once: one tick scores what fits in TICK_SHARE of the
    timer's interval, the next ticks finish the same pass; every window is scored once."""
    monkeypatch.setattr(agents.detect, "TICK_SHARE", 0.0)  # one window per tick
    det = detection(tmp_path)
    t0 = 1_800_000_000.0
    det.observe([event(f"h{i}", t0 + 1) for i in range(5)], partition=0)
    for ticks in range(1, 6):
        await det.tick(now=t0 + 12.5)
        assert sum(m.windows for m in det.monitors.values()) == ticks  # one window per tick
    await det.tick(now=t0 + 12.5)  # ends the pass (nothing left in it)
    assert det._closing is None
    assert all(m.windows == 1 for m in det.monitors.values())
    await det.tick(now=t0 + 12.5)  # a new pass: nothing ended since
    assert all(m.windows == 1 for m in det.monitors.values())


async def test_light_state_is_written_at_a_bounded_rate_and_after_a_finding(
        tmp_path: Path) -> None:
    det = detection(tmp_path, detect_light_snapshot_seconds=60, detect_warmup_windows=3)
    t0 = 1_800_000_000.0
    writes = []
    for k in range(30):  # 300 s of windows with 10 events each
        det.observe([event("a", t0 + k * 10 + 1 + i / 10) for i in range(10)], partition=0)
        await det.tick(now=t0 + k * 10 + 12.5)
        if det.pending_light.get(0):
            writes.append(k)
            det.pending_light[0].clear()
    assert 4 <= len(writes) <= 6  # every 60 s (6 windows), not after each of the 30
    assert all(b - a >= 6 for a, b in zip(writes, writes[1:], strict=False))
    k = 30  # silence: the silent-source detector fires, its cooldown must be kept at once
    await det.tick(now=t0 + k * 10 + 12.5)
    assert det.pending_light.get(0) == {"1/api/a"}


async def test_eviction_is_counted(tmp_path: Path) -> None:
    from app.runtime.metrics import METRICS

    def evicted() -> float:
        text = METRICS.render().decode()
        lines = [ln for ln in text.splitlines() if ln.startswith("laas_detect_evicted_total")]
        return float(lines[0].split()[-1]) if lines else 0.0

    det = detection(tmp_path, detect_max_sources=2)
    before = evicted()
    now = time.time()
    for i in range(5):
        det.observe([event(f"h{i}", now + i * 0.01)], partition=0)
    assert evicted() - before == 3
