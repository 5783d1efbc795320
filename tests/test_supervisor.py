"""`laas up`'s restart policy: back off as exits pile up, give up on a crash loop."""

from __future__ import annotations

from app.supervisor import Restarts


def test_delays_double_then_a_crash_loop_gives_up() -> None:
    restarts = Restarts(limit=5, window=60)
    assert [restarts.after_exit(t) for t in (0, 1, 3, 7)] == [1, 2, 4, 8]
    assert restarts.after_exit(15) is None  # the fifth exit within a minute


def test_exits_far_apart_restart_at_once() -> None:
    restarts = Restarts(limit=5, window=60)
    assert [restarts.after_exit(t) for t in (0, 100, 200, 300, 400, 500)] == [1] * 6
    assert restarts.after_exit(510) == 2  # one earlier exit within the window
