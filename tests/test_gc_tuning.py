"""The worker processes' garbage-collector settings (app/runtime/gc_tuning.py)."""

from __future__ import annotations

import gc
import weakref

from app.runtime.gc_tuning import tune_gc
from app.settings import load_settings


def test_tune_gc_raises_the_young_threshold_and_freezes_start_up_objects() -> None:
    before = gc.get_threshold()
    start_up = {"built": ["at start-up"]}  # a container alive when the process is tuned
    try:
        tune_gc(load_settings(worker_gc_threshold=12_345))
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 0
        # frozen: in no generation a collection walks any more
        assert not any(o is start_up for o in gc.get_objects())
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert any(o is start_up for o in gc.get_objects())


def test_the_analytics_policy_keeps_full_collections_rare() -> None:
    from app.runtime.gc_tuning import ANALYTICS_GEN2_THRESHOLD, tune_analytics_gc

    before = gc.get_threshold()
    try:
        tune_analytics_gc(load_settings(worker_gc_threshold=12_345))
        assert gc.get_threshold() == (12_345, before[1], ANALYTICS_GEN2_THRESHOLD)
        assert ANALYTICS_GEN2_THRESHOLD > before[2]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_freezer_freezes_admitted_state_every_n_sources_and_not_young_cycles() -> None:
    from app.runtime.gc_tuning import Freezer

    class Node:
        ref: object = None

    freezer = Freezer(every=3)
    try:
        state = [[i] for i in range(3)]  # long-lived state of admitted sources
        cycle = Node()
        cycle.ref = cycle  # cyclic garbage in the youngest generation at the freeze
        gone = weakref.ref(cycle)
        del cycle
        frozen = gc.get_freeze_count()
        freezer.admitted()
        freezer.admitted()
        assert freezer.freezes == 0 and any(o is state[0] for o in gc.get_objects())
        freezer.admitted()  # the third: freeze
        assert freezer.freezes == 1 and freezer.pending == 0
        assert gc.get_freeze_count() > frozen
        assert not any(o is state[0] for o in gc.get_objects())  # no collection walks it
        assert gone() is None  # collected before the freeze, not frozen for good
        off = Freezer(every=1, enabled=False)
        count = gc.get_freeze_count()
        off.admitted()
        assert off.freezes == 0 and gc.get_freeze_count() == count
    finally:
        gc.unfreeze()
