"""Python's cyclic garbage collector in the worker's processes.

The stream stages allocate a few container objects per event (events, attribute dicts, lists),
so with Python's default thresholds the collector runs every ~150 events and, every few
thousand, a full collection that walks every object of the process — Faust, aiokafka, the
protobuf and Elasticsearch clients, the anomaly models. Measured on the pipeline benchmark
(bench/results/pipeline.md, 2026-11-29): ~25 % of the normalize process's CPU. So each worker
process, once its app is built, moves everything allocated so far into the permanent generation
(`gc.freeze`: start-up objects are never garbage) and collects the youngest generation after
`worker_gc_threshold` allocations instead of 700. Reference counting still frees almost
everything at once; only cyclic garbage waits a little longer.

The analytics process also keeps long-lived state that grows while it runs: one monitor per
source (~25 tracked objects each), 10,000 sources and more. A gen1 or full collection walks
every such object that is not frozen: up to 75 ms (gen1) and 174 ms (gen2) of CPU at 10,000
sources (bench/results/sources.md, before this policy). So its policy (`tune_analytics_gc`)
also keeps full collections rare (`ANALYTICS_GEN2_THRESHOLD` gen1 collections between two
instead of 10), and `Freezer` freezes the objects of monitors as they are admitted (new or
restored): once `FREEZE_AFTER` sources were admitted since the last freeze, the youngest
generation is collected (the new objects are in it or in gen1) and everything left is frozen,
so no later collection walks them. A frozen object is still freed by reference counting
(an evicted monitor holds no reference cycle); only cyclic garbage that happens to be alive in
the collected generations at a freeze stays in memory for good (a freeze is rare: at most one
per `FREEZE_AFTER` admissions).
"""

from __future__ import annotations

import gc

from app.settings import Settings

ANALYTICS_GEN2_THRESHOLD = 100  # gen1 collections between two full ones (Python's default: 10)
FREEZE_AFTER = 500  # sources admitted (new or restored) between two freezes


def tune_gc(settings: Settings) -> None:
    """Call once per worker process, after start-up and before the stream runs."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.worker_gc_threshold, older, oldest)
    gc.collect()
    gc.freeze()


def tune_analytics_gc(settings: Settings) -> None:
    """`tune_gc` for the analytics process, with full collections 10x rarer."""
    tune_gc(settings)
    young, older, _ = gc.get_threshold()
    gc.set_threshold(young, older, ANALYTICS_GEN2_THRESHOLD)


class Freezer:
    """Freezes long-lived objects as they accumulate: `admitted(n)` after `n` sources' monitors
    were built or restored; every `every` of them, the young generation is collected and every
    object the collector tracks is frozen (`gc.freeze`). `enabled=False`: counts only."""

    def __init__(self, every: int = FREEZE_AFTER, enabled: bool = True) -> None:
        self.every = every
        self.enabled = enabled
        self.pending = 0
        self.freezes = 0

    def admitted(self, n: int = 1) -> None:
        self.pending += n
        if self.pending >= self.every:
            self.freeze()

    def freeze(self) -> None:
        self.pending = 0
        if not self.enabled:
            return
        gc.collect(0)  # cyclic garbage of the youngest generation is not frozen with the rest
        gc.freeze()
        self.freezes += 1
