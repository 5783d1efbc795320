"""`laas worker` with an injected stall, to check what the watchdog's recovery undoes.

    python -m bench.stall_inject worker      (what `bench/stall.py --inject` starts)

In this process (the normalize app; the analytics and index children are spawned fresh and
not affected) Faust's table recovery never resumes partition 0 of `logs.raw`: after every
rebalance it stays in the consumer's paused set, so it is assigned and never fetched, the
shape of FINDINGS 7. Only calls from `faust/tables/recovery.py` are filtered, so the
watchdog's own resume goes through; with `BENCH_STALL_INJECT=hard` every resume of it is
dropped, so that the watchdog has to escalate (rejoin, then restart). A bench tool, never
imported by LaaS itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

STUCK_PARTITION = 0


def inject() -> None:
    from faust.transport.consumer import Consumer

    original = Consumer.resume_partitions
    hard = os.environ.get("BENCH_STALL_INJECT") == "hard"

    def resume_partitions(self: Any, tps: Iterable[Any]) -> None:
        caller = Path(sys._getframe(1).f_code.co_filename)
        if hard or caller.parts[-2:] == ("tables", "recovery.py"):
            tps = {tp for tp in tps
                   if not (tp.topic.endswith("logs.raw") and tp.partition == STUCK_PARTITION)}
        original(self, tps)

    Consumer.resume_partitions = resume_partitions  # type: ignore[method-assign]


if __name__ == "__main__":
    inject()
    from app.cli.main import main

    main()
