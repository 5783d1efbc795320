"""Metrics (app/runtime/metrics.py): the worker serves its own and its child processes' series."""

from __future__ import annotations

import asyncio
import json
import pickle
import re
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.runtime.metrics import SPECS, Metrics
from tests.compose_fixtures import ComposeRun
from tests.stream_fixtures import wait_for


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

    from app.ingest.grpc_metrics import MetricsInterceptor
    from app.runtime.metrics import METRICS

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

    from app.runtime.metrics import METRICS, serve_http

    METRICS.inc("laas_retention_deleted_total", 0)
    server = serve_http("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            got = samples(response.read())
    finally:
        server.shutdown()
    assert ("laas_retention_deleted_total", ()) in got


# --- every process's /metrics on the real stack (the services of docker-compose.yml) ---


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.content)


def value(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


def otlp_export(message: str) -> bytes:
    from protos.opentelemetry.proto.collector.logs.v1 import ExportLogsServiceRequest
    from protos.opentelemetry.proto.common.v1 import AnyValue as OtlpValue
    from protos.opentelemetry.proto.common.v1 import KeyValue
    from protos.opentelemetry.proto.logs.v1 import LogRecord as OtlpRecord
    from protos.opentelemetry.proto.logs.v1 import ResourceLogs, ScopeLogs
    from protos.opentelemetry.proto.resource.v1 import Resource as OtlpResource

    resource = OtlpResource(attributes=[KeyValue("service.name", OtlpValue(string_value="m"))])
    record = OtlpRecord(time_unix_nano=time.time_ns(), body=OtlpValue(string_value=message))
    return bytes(ExportLogsServiceRequest([ResourceLogs(resource, [ScopeLogs(
        log_records=[record])])]))


@pytest.mark.integration
async def test_every_process_exports_what_it_did(compose_run: ComposeRun) -> None:
    """Records through each ingest path, then each process's /metrics: the web app and the
    gateway count them by path, the worker (with its analytics and index children) by stage."""
    import grpc
    import websockets

    from protos.laas.v1 import AnyValue, LogBatch, LogRecord, PushAck, Resource

    slug = f"m{compose_run.unique}"
    compose_run.laas("tenant", "create", slug)
    key = compose_run.laas("apikey", "create", "--tenant", slug, "--name", "m", "--scope",
                           "ingest")
    read = compose_run.laas("apikey", "create", "--tenant", slug, "--name", "r", "--scope",
                            "read")
    web = f"http://127.0.0.1:{compose_run.port('LAAS_WEB_PORT')}"
    gateway = f"127.0.0.1:{compose_run.port('LAAS_GATEWAY_PORT')}"
    auth = {"authorization": f"Bearer {key}"}

    async with httpx.AsyncClient(timeout=30) as client:
        ndjson = "\n".join(['{"message": "n1", "service": "m"}', "not json",
                            '{"message": "n2", "service": "m"}',
                            '{"message": "n3", "service": "m"}'])
        sent = await client.post(f"{web}/api/v1/logs", content=ndjson, headers={
            **auth, "content-type": "application/x-ndjson"})
        assert sent.json()["accepted"] == 3 and sent.json()["rejected"] == 1, sent.text
        otlp_http = f"http://127.0.0.1:{compose_run.port('LAAS_OTLP_HTTP_PORT')}/v1/logs"
        sent = await client.post(otlp_http, content=otlp_export("h1"), headers={
            **auth, "content-type": "application/x-protobuf"})
        assert sent.status_code == 200, sent.text
    async with grpc.aio.insecure_channel(gateway) as channel:
        push = channel.unary_unary("/laas.v1.LogIngest/Push")
        batch = LogBatch(records=[
            LogRecord(body=AnyValue(string_value=f"g{i}"), time_unix_nano=time.time_ns(),
                      resource=Resource(service_name="m")) for i in range(2)])
        ack = PushAck().parse(await push(bytes(batch), metadata=tuple(auth.items())))
        assert ack.accepted == 2
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await push(bytes(batch), metadata=(("authorization", "Bearer nope"),))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")(
            otlp_export("o1"), metadata=tuple(auth.items()))
    total = 3 + 1 + 2 + 1

    async def scraped(url: str, name: str, **labels: str) -> Any:
        """A scrape once `name{labels}` counts 1: a server may record a call just after its
        answer went out."""
        got = await scrape(url)
        return got if value(got, name, **labels) >= 1 else None

    got = await wait_for(lambda: scraped(f"{web}/metrics", "laas_http_requests_total",
                                         method="POST", route="/api/v1/logs", status="200"),
                         15, "the web app's count of the NDJSON request")
    assert value(got, "laas_ingest_accepted_total", path="http-ndjson") == 3
    assert value(got, "laas_ingest_rejected_total", path="http-ndjson", reason="invalid") == 1
    assert value(got, "laas_kafka_produce_seconds_count", path="http-ndjson") == 1
    assert value(got, "laas_http_requests_total", method="POST", route="/api/v1/logs",
                 status="200") == 1
    assert value(got, "laas_http_request_seconds_count", method="GET", route="/readyz") >= 1
    assert value(got, "laas_tail_sockets") == 0

    got = await wait_for(lambda: scraped(
        f"http://127.0.0.1:{compose_run.port('LAAS_GATEWAY_METRICS_PORT')}/",
        "laas_grpc_requests_total", code="OK",
        method="/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
        15, "the gateway's count of the OTLP export")
    assert value(got, "laas_ingest_accepted_total", path="grpc") == 2
    assert value(got, "laas_ingest_accepted_total", path="otlp-grpc") == 1
    assert value(got, "laas_ingest_accepted_total", path="otlp-http") == 1
    assert value(got, "laas_grpc_requests_total", method="/laas.v1.LogIngest/Push",
                 code="OK") == 1
    assert value(got, "laas_grpc_requests_total", method="/laas.v1.LogIngest/Push",
                 code="UNAUTHENTICATED") == 1
    assert value(got, "laas_grpc_requests_total", code="OK",
                 method="/opentelemetry.proto.collector.logs.v1.LogsService/Export") == 1
    assert value(got, "laas_grpc_requests_total", method="/grpc.health.v1.Health/Check",
                 code="OK") >= 1  # the container's health checks
    assert value(got, "laas_http_requests_total", method="POST", route="/v1/logs",
                 status="200") == 1
    assert value(got, "laas_kafka_produce_seconds_count", path="grpc") == 1

    worker = f"http://127.0.0.1:{compose_run.port('LAAS_WORKER_WEB_PORT')}/metrics"

    raw_lag = ("topic", f"{compose_run.unique}.logs.raw")

    async def indexed() -> dict[Any, float] | None:
        got = await scrape(worker)
        lag = {pair for (name, labels) in got if name == "laas_consumer_lag" for pair in labels}
        done = (value(got, "laas_sink_events_total", stage="index") >= total
                and value(got, "laas_events_in_total", stage="stats") >= total  # analytics
                and raw_lag in lag)
        return got if done else None

    got = await wait_for(indexed, 120, f"{total} events indexed and counted by stats, "
                         "logs.raw's lag measured (worker /metrics)")
    assert value(got, "laas_events_in_total", stage="normalize") >= 1  # raw messages
    assert value(got, "laas_events_out_total", stage="normalize",
                 topic=f"{compose_run.unique}.logs.events") >= total
    assert value(got, "laas_events_in_total", stage="index") >= total  # index child
    assert value(got, "laas_sink_batch_seconds_count", stage="index") >= 1
    assert value(got, "laas_events_in_total", stage="stats") >= total  # analytics child
    assert value(got, "laas_deadletters_total", stage="normalize", reason="unsigned") == 0
    groups = {dict(labels)["group"] for (name, labels) in got if name == "laas_consumer_lag"}
    assert {compose_run.unique, f"{compose_run.unique}-index"} <= groups
    assert ("process_cpu_seconds_total", ()) in got
    for process in ("worker", "analytics", "index"):  # each process probes its event loop
        assert value(got, "laas_event_loop_lag_seconds_count", process=process) >= 1, process
        for gauge in ("laas_event_loop_lag_max_seconds", "laas_event_loop_held_max_seconds"):
            assert (gauge, (("process", process),)) in got, (gauge, process)  # set, served

    # the live tail: a socket open is counted while it is open
    tail = f"ws://127.0.0.1:{compose_run.port('LAAS_WEB_PORT')}/api/v1/tail?token={read}"
    async with websockets.connect(tail) as socket:
        while json.loads(await asyncio.wait_for(socket.recv(), 30))["type"] != "ready":
            pass
        assert value(await scrape(f"{web}/metrics"), "laas_tail_sockets") == 1
    assert await wait_for(lambda: _tail_closed(f"{web}/metrics"), 30, "the tail socket closed")

    # every metric of the Grafana dashboard is exported by one of these processes
    from tests.test_grafana import parse, targets

    served: set[str] = set()
    for url in (f"{web}/metrics", worker,
                f"http://127.0.0.1:{compose_run.port('LAAS_GATEWAY_METRICS_PORT')}/metrics"):
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(url)).text
        served |= {f.name for f in text_string_to_metric_families(text)}
    for title, target in targets():
        (metric,) = parse(target["expr"])[0]
        family = re.sub(r"_(total|bucket|count|sum)$", "", metric)
        assert family in served, f"{title}: {metric} is served by no process"


async def _tail_closed(url: str) -> bool:
    return value(await scrape(url), "laas_tail_sockets") == 0


async def test_the_loop_lag_probe_sees_a_step_that_holds_the_loop() -> None:
    from app.runtime.loop_lag import LoopLag
    from app.runtime.metrics import METRICS

    probe = LoopLag("test-probe")

    async def probed() -> float:
        return METRICS.value("laas_event_loop_lag_seconds", process="test-probe")

    async def late() -> bool:
        return probe.worst >= 0.25  # woke at least 0.3 s after asking for 0.01 s

    async def held() -> bool:
        return probe.worst_held >= 0.25

    task = asyncio.create_task(probe.run(interval=0.01))
    await wait_for(probed, 10, "a probe while the loop is free", interval=0.01)
    time.sleep(0.3)  # noqa: ASYNC251 - the loop waits, its thread uses no CPU (like a machine
    await wait_for(late, 10, "the probe to see the wait", interval=0.01)  # without a free core)
    assert probe.worst_held < 0.1  # but the loop's thread did not work meanwhile
    assert METRICS.value("laas_event_loop_lag_max_seconds", process="test-probe") == probe.worst
    busy_until = time.thread_time() + 0.3
    while time.thread_time() < busy_until:  # a step that holds the loop, working
        pass
    await wait_for(held, 10, "the probe to see the loop's own hold", interval=0.01)
    task.cancel()
    assert METRICS.value("laas_event_loop_held_max_seconds",
                         process="test-probe") == probe.worst_held


def test_docs_list_every_metric() -> None:
    from tests.compose_fixtures import ROOT

    text = (ROOT / "docs" / "operations.md").read_text()
    for name, spec in SPECS.items():
        assert f"| `{name}` | {spec.kind} |" in text, f"docs/operations.md does not list {name}"


def test_every_recording_call_names_a_declared_metric_with_its_labels() -> None:
    """A call with other label names raises at run time, inside a stage: catch it here."""
    import ast

    from tests.compose_fixtures import ROOT

    calls = 0
    for path in [*ROOT.glob("app/**/*.py"), *ROOT.glob("agents/*.py"), *ROOT.glob("web/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "METRICS"
                    and node.func.attr in ("inc", "set", "observe")):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            first = node.args[0]
            assert isinstance(first, ast.Constant), f"{where}: metric name is not a literal"
            name = first.value
            assert isinstance(name, str), f"{where}: metric name {name!r} is not a string"
            spec = SPECS.get(name)
            assert spec is not None, f"{where}: {name} is not declared in SPECS"
            assert {k.arg for k in node.keywords} == set(spec.labels), \
                f"{where}: {name} takes labels {spec.labels}"
            assert (node.func.attr == "observe") == (spec.kind == "histogram"), where
            calls += 1
    assert calls >= 20
