"""Metrics (app/metrics.py): the worker serves its own series and its child processes' merged."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import SPECS, Metrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by sample name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples}


def test_render_merges_absorbed_snapshots() -> None:
    worker, sink = Metrics(), Metrics()
    worker.inc("laas_events_in_total", 5, stage="normalize")
    worker.set("laas_consumer_lag", 7, group="g", topic="t", partition=0)
    sink.inc("laas_events_in_total", 3, stage="index")
    sink.inc("laas_events_in_total", 2, stage="normalize")
    sink.inc("laas_sink_retries_total", stage="index", cause="request")
    sink.observe("laas_sink_batch_seconds", 0.5, stage="index")
    sink.observe("laas_sink_batch_seconds", 1.5, stage="index")
    sink.set("laas_consumer_lag", 2, group="g", topic="t", partition=0)

    worker.absorb("index", pickle.loads(pickle.dumps(sink.snapshot())))  # as over the pipe
    text = worker.render()
    got = samples(text)

    assert got[("laas_events_in_total", (("stage", "normalize"),))] == 7  # added
    assert got[("laas_events_in_total", (("stage", "index"),))] == 3
    assert got[("laas_sink_retries_total", (("cause", "request"), ("stage", "index")))] == 1
    assert got[("laas_sink_batch_seconds_count", (("stage", "index"),))] == 2
    assert got[("laas_sink_batch_seconds_sum", (("stage", "index"),))] == 2.0
    assert got[("laas_sink_batch_seconds_bucket", (("le", "1.0"), ("stage", "index")))] == 1
    assert got[("laas_sink_batch_seconds_bucket", (("le", "+Inf"), ("stage", "index")))] == 2
    lag = (("group", "g"), ("partition", "0"), ("topic", "t"))
    assert got[("laas_consumer_lag", lag)] == 2  # a gauge: the latest writer's
    assert text.count(b"# TYPE laas_events_in_total counter") == 1
    assert worker.value("laas_events_in_total", stage="index") == 3
    assert worker.value("laas_sink_batch_seconds", stage="index") == 2
    assert ("process_cpu_seconds_total", ()) in got  # the process's own collectors too


def test_a_newer_snapshot_replaces_the_older_one() -> None:
    worker, sink = Metrics(), Metrics()
    sink.inc("laas_sink_events_total", 10, stage="index")
    worker.absorb("index", sink.snapshot())
    sink.inc("laas_sink_events_total", 5, stage="index")
    worker.absorb("index", sink.snapshot())
    assert worker.value("laas_sink_events_total", stage="index") == 15  # not 25


def test_every_declared_metric_is_exported() -> None:
    families = {f.name for f in text_string_to_metric_families(Metrics().render().decode())}
    for name, spec in SPECS.items():
        assert (name.removesuffix("_total") if spec.kind == "counter" else name) in families


async def test_grpc_interceptor_counts_calls_by_method_and_code() -> None:
    import grpc

    from app.grpc_metrics import MetricsInterceptor
    from app.metrics import METRICS

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no")
        raise AssertionError("abort raises")

    async def stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async for request in requests:
            yield request

    server = grpc.aio.server(interceptors=[MetricsInterceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.S", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
        "Stream": grpc.stream_stream_rpc_method_handler(stream)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    def count(method: str, code: str) -> float:
        return METRICS.value("laas_grpc_requests_total", method=method, code=code)

    before = [count("/t.S/Echo", "OK"), count("/t.S/Refuse", "INVALID_ARGUMENT"),
              count("/t.S/Stream", "OK")]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await channel.unary_unary("/t.S/Echo")(b"x") == b"x"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary("/t.S/Refuse")(b"x")
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary("/t.S/Unknown")(b"x")

            async def two() -> Any:
                yield b"a"
                yield b"b"

            assert [r async for r in channel.stream_stream("/t.S/Stream")(two())] == [b"a", b"b"]
    finally:
        await server.stop(None)
    after = [count("/t.S/Echo", "OK"), count("/t.S/Refuse", "INVALID_ARGUMENT"),
             count("/t.S/Stream", "OK")]
    assert after == [b + 1 for b in before]
    assert METRICS.value("laas_grpc_request_seconds", method="/t.S/Echo") >= 1
    assert not any(s.labels.get("method") == "/t.S/Unknown" for f in METRICS.merged()
                   for s in f.samples)


def test_serve_http_answers_with_the_exposition() -> None:
    import urllib.request

    from app.metrics import METRICS, serve_http

    METRICS.inc("laas_retention_deleted_total", 0)
    server = serve_http("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            got = samples(response.read())
    finally:
        server.shutdown()
    assert ("laas_retention_deleted_total", ()) in got
