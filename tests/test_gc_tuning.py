"""The worker processes' garbage-collector settings (app/gc_tuning.py)."""

from __future__ import annotations

import gc

from app.gc_tuning import tune_gc
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
