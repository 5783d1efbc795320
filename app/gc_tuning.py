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
"""

from __future__ import annotations

import gc

from app.settings import Settings


def tune_gc(settings: Settings) -> None:
    """Call once per worker process, after start-up and before the stream runs."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.worker_gc_threshold, older, oldest)
    gc.collect()
    gc.freeze()
