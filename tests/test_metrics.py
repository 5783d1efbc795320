"""Worker metrics: the worker serves its own series and its index sink process's together."""

from __future__ import annotations

import pickle

from app.metrics import Metrics


def test_render_merges_absorbed_snapshots() -> None:
    worker, sink = Metrics(), Metrics()
    worker.inc("laas_events_in_total", 5, stage="normalize")
    worker.set("laas_consumer_lag", 7, group="g", partition=0)
    sink.inc("laas_events_in_total", 3, stage="index")
    sink.inc("laas_sink_retries_total", stage="index", cause="request")
    sink.observe("laas_sink_batch_seconds", 0.5, stage="index")
    sink.observe("laas_sink_batch_seconds", 1.5, stage="index")
    sink.set("laas_consumer_lag", 2, group="g", partition=0)

    worker.absorb("index", pickle.loads(pickle.dumps(sink.snapshot())))  # as over the pipe
    text = worker.render()

    assert 'laas_events_in_total{stage="normalize"} 5' in text
    assert 'laas_events_in_total{stage="index"} 3' in text
    assert 'laas_sink_retries_total{cause="request",stage="index"} 1' in text
    assert 'laas_sink_batch_seconds_count{stage="index"} 2.0' in text
    assert 'laas_sink_batch_seconds_sum{stage="index"} 2.0' in text
    assert 'laas_sink_batch_seconds_max{stage="index"} 1.5' in text
    assert text.count("# TYPE laas_events_in_total counter") == 1
    assert worker.value("laas_events_in_total", stage="index") == 3


def test_a_newer_snapshot_replaces_the_older_one() -> None:
    worker, sink = Metrics(), Metrics()
    sink.inc("laas_sink_events_total", 10, stage="index")
    worker.absorb("index", sink.snapshot())
    sink.inc("laas_sink_events_total", 5, stage="index")
    worker.absorb("index", sink.snapshot())
    assert worker.value("laas_sink_events_total", stage="index") == 15  # not 25
