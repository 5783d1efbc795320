"""The detect stage's memory bound: at most `detect_max_sources` live monitors per worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agents.detect import Detection
from app.events import NS, LogEvent, RawPosition
from app.settings import load_settings
from app.streams import create_app
from app.topics import declare_topics


def event(host: str, t: float) -> LogEvent:
    return LogEvent(tenant_id="1", tenant="acme", time=int(t * NS), observed_time=int(t * NS),
                    severity="INFO", severity_number=9, message="GET /health 200",
                    service="api", host=host, raw=RawPosition("logs.raw", 0, 0))


async def test_a_worker_keeps_at_most_max_sources_monitors(tmp_path: Path) -> None:
    settings = load_settings(detect_max_sources=3, state_dir=tmp_path, app_id="detect-test")
    app = create_app(settings, store="memory://")
    detection = Detection(app, declare_topics(app, settings), settings)
    now = time.time()
    for i in range(5):  # five sources, one after the other
        detection.observe([event(f"h{i}", now + i * 0.01)], partition=0)
    await detection.tick()
    assert len(detection.monitors) == 3
    assert set(detection.monitors) == {"1/api/h2", "1/api/h3", "1/api/h4"}  # the most recent
    detection.observe([event("h0", now + 1)], partition=0)  # a dropped source comes back
    await detection.tick()
    assert "1/api/h0" in detection.monitors and len(detection.monitors) == 3


async def test_tick_lets_the_loop_run_between_windows(tmp_path: Path) -> None:
    """Scoring a window can take tens of ms (a new source's trees): the timer must not hold
    the event loop for all windows at once."""
    settings = load_settings(state_dir=tmp_path, app_id="detect-yield-test")
    app = create_app(settings, store="memory://")
    detection = Detection(app, declare_topics(app, settings), settings)
    past = time.time() - 30  # windows that ended: closed by the next tick
    for i in range(6):
        detection.observe([event(f"h{i}", past)], partition=0)
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
    await detection.tick()
    ticking = False
    await beat
    assert len(detection.pending_light) == 6  # every source's windows were scored
    assert beats - start >= 6 * 2  # the loop ran between them (6 sources, 2-3 windows each)
