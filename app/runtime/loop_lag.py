"""How long a process's event loop was held: a task sleeps `interval` and measures how much
later than asked it woke up (`laas_event_loop_lag_seconds`, and the longest so far in
`laas_event_loop_lag_max_seconds`, by process). A loop busy with one long step (a burst of new
sources, a large batch, a garbage collection) wakes it late by that step's length; a machine
short of cores shows here too (the process waits for one). To tell the two apart the probe
also takes the CPU time the loop's thread used in the interval: the lateness it explains,
min(lag, that CPU time), is the loop's own hold (`laas_event_loop_held_max_seconds`); the
rest was waiting for a core."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from app.runtime.metrics import METRICS

INTERVAL = 0.05


class LoopLag:
    """The lag probe of one process (`process` labels its series)."""

    def __init__(self, process: str, clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.process = process
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.worst = 0.0
        self.worst_held = 0.0

    def record(self, lag: float, cpu: float) -> None:
        """One probe: woke `lag` s late; the loop's thread used `cpu` s meanwhile."""
        METRICS.observe("laas_event_loop_lag_seconds", lag, process=self.process)
        if lag > self.worst:
            self.worst = lag
            METRICS.set("laas_event_loop_lag_max_seconds", lag, process=self.process)
        held = min(lag, cpu)
        if held > self.worst_held:
            self.worst_held = held
            METRICS.set("laas_event_loop_held_max_seconds", held, process=self.process)

    async def run(self, interval: float = INTERVAL) -> None:
        """Probe until cancelled."""
        while True:
            asked, cpu = self.clock(), self.cpu_clock()
            await asyncio.sleep(interval)
            self.record(max(0.0, self.clock() - asked - interval), self.cpu_clock() - cpu)
