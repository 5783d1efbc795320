"""Long loops that share an event loop: `Turns` gives the loop to the other tasks once
`budget` seconds of work have passed since the last time (a `sleep(0)` after every item costs
more than the items themselves)."""

from __future__ import annotations

import asyncio
import time


class Turns:
    """`await turns.maybe()` once per item of a long loop."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.since = time.perf_counter()

    async def maybe(self) -> None:
        if time.perf_counter() - self.since >= self.budget:
            await asyncio.sleep(0)
            self.since = time.perf_counter()
