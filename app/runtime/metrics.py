"""Prometheus metrics of every LaaS process, with prometheus_client (docs/operations.md).

Every metric is declared once, in `SPECS` (name, kind, help, label names); code records through
the process-wide `METRICS` (`inc`, `set`, `observe`). Each process serves `METRICS.render()`:
the web app at `/metrics` on its port, the gateway on `gateway_metrics_port`, the worker at
`/metrics` on `worker_web_port`. The worker's child processes (index sink, analytics) are
spawned, not forked, so no multiprocess directory is needed: each sends its series to the worker
every second over a pipe (`snapshot` → `absorb`, agents/children.py) and the worker serves them
merged with its own (counters and histograms added, a gauge the latest writer's).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

disable_created_metrics()  # no `_created` series: they would not add up across processes

# The text format's media type without its "; charset=utf-8" (aiohttp, under Faust's web,
# refuses a charset in it; Starlette adds one).
CONTENT_TYPE = CONTENT_TYPE_LATEST.split("; charset")[0]
Kind = Literal["counter", "gauge", "histogram"]
# Latency buckets (seconds): HTTP/gRPC requests, Kafka acks, Elasticsearch bulks.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0)


@dataclass(frozen=True)
class Spec:
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


SPECS: dict[str, Spec] = {
    # ingest (gateway and web app)
    "laas_ingest_accepted_total": Spec(
        "counter", "Records acknowledged by Kafka, by ingest path", ("path",)),
    "laas_ingest_rejected_total": Spec(
        "counter", "Records refused, by ingest path and reason (invalid, rate_limited, "
        "kafka_unavailable)", ("path", "reason")),
    "laas_kafka_produce_seconds": Spec(
        "histogram", "Time from writing a request's records to logs.raw to Kafka's ack",
        ("path",)),
    "laas_http_requests_total": Spec(
        "counter", "HTTP requests answered, by method, route template and status",
        ("method", "route", "status")),
    "laas_http_request_seconds": Spec(
        "histogram", "HTTP request latency, by method and route template", ("method", "route")),
    "laas_grpc_requests_total": Spec(
        "counter", "gRPC calls answered, by method and status code", ("method", "code")),
    "laas_grpc_request_seconds": Spec(
        "histogram", "gRPC call latency, by method", ("method",)),
    # live tail (web app)
    "laas_tail_sockets": Spec("gauge", "Live tail subscriptions open"),
    "laas_tail_dropped_total": Spec(
        "counter", "Tail events dropped because a socket's queue was full"),
    # the worker's stages
    "laas_events_in_total": Spec(
        "counter", "Records consumed, by stage (normalize: raw messages)", ("stage",)),
    "laas_events_out_total": Spec(
        "counter", "Records produced, by stage and topic", ("stage", "topic")),
    "laas_deadletters_total": Spec(
        "counter", "Records sent to logs.deadletter, by stage and reason", ("stage", "reason")),
    "laas_stage_retries_total": Spec(
        "counter", "Batches a stage retried after a failure", ("stage",)),
    "laas_consumer_lag": Spec(
        "gauge", "Records behind the end of the partition, by consumer group",
        ("group", "topic", "partition")),
    "laas_watchdog_stalls_total": Spec(
        "counter", "Assigned partitions found stalled (lag, no progress) and recovered by the "
        "watchdog, by group", ("group", "topic", "partition")),
    "laas_sink_events_total": Spec("counter", "Events accepted by Elasticsearch", ("stage",)),
    "laas_sink_retries_total": Spec(
        "counter", "Bulk retries (request or item level)", ("stage", "cause")),
    "laas_sink_batch_seconds": Spec(
        "histogram", "Time from bulk start to all items accepted (retries included)",
        ("stage",)),
    "laas_retention_deleted_total": Spec("counter", "Indices deleted by the retention job"),
    "laas_event_loop_lag_seconds": Spec(
        "histogram", "How late the event loop woke a 50 ms sleep (app/runtime/loop_lag.py), by "
        "process (worker, analytics, index)", ("process",)),
    "laas_event_loop_lag_max_seconds": Spec(
        "gauge", "The longest event loop lag since the process started, by process",
        ("process",)),
    "laas_event_loop_held_max_seconds": Spec(
        "gauge", "The longest lag explained by the loop's own CPU time (min of the lag and "
        "the CPU its thread used meanwhile) since the process started, by process",
        ("process",)),
    # analytics
    "laas_alerts_total": Spec(
        "counter", "Alerts raised (anomaly kinds and rule), by kind", ("kind",)),
    "laas_detect_skipped_total": Spec(
        "counter", "Events the detector skipped (tenant over its model budget)", ("tenant",)),
    "laas_detect_evicted_total": Spec(
        "counter", "Source monitors the detector evicted from memory (idle, or room for a new "
        "source); their state goes to the detect tables"),
    "laas_webhook_attempts_total": Spec(
        "counter", "Webhook deliveries attempted, by outcome", ("delivered",)),
}

Families = list[Metric]


def _create(spec: Spec, name: str, registry: CollectorRegistry) -> Any:
    if spec.kind == "counter":
        return Counter(name, spec.help, spec.labels, registry=registry)
    if spec.kind == "gauge":
        return Gauge(name, spec.help, spec.labels, registry=registry)
    return Histogram(name, spec.help, spec.labels, registry=registry, buckets=LATENCY_BUCKETS)


def merge(groups: Iterable[Families]) -> Families:
    """Families of several processes as one: samples with equal name and labels added
    (counters, histograms), or the last one kept (gauges)."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for families in groups:
        for family in families:
            have = merged.get(family.name)
            if have is None:
                have = merged[family.name] = Metric(family.name, family.documentation,
                                                    family.type)
                values[family.name] = {}
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if family.type == "gauge":
                    series[key] = sample.value
                else:
                    series[key] = series.get(key, 0.0) + sample.value
    for name, family in merged.items():
        family.samples = [Sample(sample_name, dict(labels), value)
                          for (sample_name, labels), value in values[name].items()]
    return list(merged.values())


class _Served:
    """The collector a process serves: its own families and its children's, merged."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics.merged()


class Metrics:
    """The declared metrics of one process (`SPECS`), recorded by name with label keywords."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._metrics = {name: _create(spec, name, self.registry) for name, spec in SPECS.items()}
        self._lock = threading.Lock()
        self.remote: dict[str, Families] = {}  # the latest snapshot of each child process
        self.served = CollectorRegistry(auto_describe=False)
        self.served.register(_Served(self))
        ProcessCollector(registry=self.served)
        PlatformCollector(registry=self.served)
        GCCollector(registry=self.served)

    def _child(self, name: str, labels: dict[str, object]) -> Any:
        metric = self._metrics[name]
        return metric.labels(**{k: str(v) for k, v in labels.items()}) if labels else metric

    def inc(self, name: str, amount: float = 1, **labels: object) -> None:
        """Add `amount` to counter `name` (a gauge: may be negative)."""
        self._child(name, labels).inc(amount)

    def set(self, name: str, value: float, **labels: object) -> None:
        """Set gauge `name`."""
        self._child(name, labels).set(value)

    def observe(self, name: str, value: float, **labels: object) -> None:
        """Record `value` (seconds) in histogram `name`."""
        self._child(name, labels).observe(value)

    def snapshot(self) -> Families:
        """This process's own families (picklable: sent over the children's pipe)."""
        return list(self.registry.collect())

    def absorb(self, origin: str, snapshot: Families) -> None:
        """Serve `origin`'s latest `snapshot` (another process) together with our own."""
        with self._lock:
            self.remote[origin] = snapshot

    def merged(self) -> Families:
        with self._lock:
            remote = list(self.remote.values())
        return merge([self.snapshot(), *remote])

    def value(self, name: str, **labels: object) -> float:
        """The current value of one series (a counter's total, a histogram's count), merged
        over the children; 0 when it has none yet."""
        want = {k: str(v) for k, v in labels.items()}
        names = {name, f"{name}_count"}
        for family in self.merged():
            for sample in family.samples:
                if sample.name in names and sample.labels == want:
                    return float(sample.value)
        return 0.0

    def render(self) -> bytes:
        """The text exposition of everything this process serves."""
        return generate_latest(self.served)


METRICS = Metrics()


def serve_http(host: str, port: int) -> Any:
    """Serve `METRICS` over HTTP at `host:port` (any path, e.g. /metrics) from a daemon thread:
    the gateway's metrics port. Returns the server (`.shutdown()` stops it; port 0: any free
    port, read it from `.server_port`). `OSError` naming the address when it cannot listen."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=METRICS.served)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot serve /metrics on {host}:{port}: {exc.strerror}") \
            from exc
    return server
