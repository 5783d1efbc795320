"""`laas up`'s restart policy: back off as exits pile up, give up on a crash loop, let the demo
end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.cli.up import DEMO, Child, Restarts, supervise
from app.settings import Settings


def test_delays_double_then_a_crash_loop_gives_up() -> None:
    restarts = Restarts(limit=5, window=60)
    assert [restarts.after_exit(t) for t in (0, 1, 3, 7)] == [1, 2, 4, 8]
    assert restarts.after_exit(15) is None  # the fifth exit within a minute


def test_exits_far_apart_restart_at_once() -> None:
    restarts = Restarts(limit=5, window=60)
    assert [restarts.after_exit(t) for t in (0, 100, 200, 300, 400, 500)] == [1] * 6
    assert restarts.after_exit(510) == 2  # one earlier exit within the window


def _exited(name: str, code: int, tmp_path: Path) -> Child:
    done = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    done.wait()
    return Child(name, tmp_path / f"{name}.log", done)


def test_a_demo_that_ends_cleanly_is_not_restarted(tmp_path: Path) -> None:
    demo = _exited(DEMO, 0, tmp_path)
    for now in range(10):  # five exits a minute would be a crash loop: this is none
        assert supervise(Settings(state_dir=tmp_path), demo, float(now))
    assert demo.finished and demo.restart_at is None


def test_a_demo_that_fails_and_a_service_that_ends_are_restarted(tmp_path: Path) -> None:
    for child in (_exited(DEMO, 1, tmp_path), _exited("web", 0, tmp_path)):
        assert supervise(Settings(state_dir=tmp_path), child, 0.0)
        assert not child.finished and child.restart_at == 1.0
