"""deploy/grafana/laas.json: a Grafana dashboard whose every query names metrics (and labels)
that the LaaS processes export (app/runtime/metrics.py; tests/test_metrics.py scrapes them live)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from app.runtime.metrics import SPECS, Metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "laas.json"
FUNCTIONS = {"sum", "max", "min", "avg", "count", "rate", "irate", "increase",
             "histogram_quantile", "topk"}
KEYWORDS = {"by", "without"}
SCRAPE_LABELS = {"job", "instance"}  # added by Prometheus to every series


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def targets() -> list[tuple[str, dict[str, Any]]]:
    return [(panel["title"], target) for panel in dashboard()["panels"]
            for target in panel.get("targets", [])]


def exported() -> dict[str, set[str]]:
    """Every sample name a LaaS process exports, with its label names."""
    names: dict[str, set[str]] = {}
    for name, spec in SPECS.items():
        labels = set(spec.labels)
        if spec.kind == "histogram":
            names |= {f"{name}_bucket": labels | {"le"}, f"{name}_count": labels,
                      f"{name}_sum": labels}
        else:
            names[name] = labels
    for family in text_string_to_metric_families(Metrics().render().decode()):
        for sample in family.samples:  # the process and Python collectors
            names.setdefault(sample.name, set(sample.labels))
    return names


def parse(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names a PromQL expression uses."""
    bare = re.sub(r'"[^"]*"', '""', expr)  # no identifiers inside strings
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # nor in range durations ([5m], [$__rate_interval])
    labels = {name for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", bare)
              for name in re.findall(r"\w+", group)}
    labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", bare))
    names = set(re.findall(r"(?<![\w$])([a-zA-Z_:][\w:]*)", bare))
    metrics = {n for n in names - FUNCTIONS - KEYWORDS - labels
               if not re.fullmatch(r"\d[\w.]*", n)}
    return metrics, labels


def test_every_query_names_exported_metrics_and_their_labels() -> None:
    known = exported()
    used: set[str] = set()
    assert len(targets()) >= 20
    for title, target in targets():
        metrics, labels = parse(target["expr"])
        assert len(metrics) == 1, f"{title}: {target['expr']} names {metrics}"
        (metric,) = metrics
        assert metric in known, f"{title}: {metric} is not exported by any LaaS process"
        allowed = known[metric] | SCRAPE_LABELS
        assert labels <= allowed, f"{title}: labels {labels - allowed} not on {metric}"
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        assert legend <= allowed, f"{title}: legend {legend - allowed} not on {metric}"
        used.add(metric)
    # the list: ingest, latencies, produce, lag, stages, dead letters, bulk, tail, alerts
    for name in ("laas_ingest_accepted_total", "laas_ingest_rejected_total",
                 "laas_http_request_seconds_bucket", "laas_grpc_request_seconds_bucket",
                 "laas_kafka_produce_seconds_bucket", "laas_consumer_lag",
                 "laas_events_in_total", "laas_deadletters_total",
                 "laas_sink_batch_seconds_bucket", "laas_sink_retries_total",
                 "laas_tail_sockets", "laas_tail_dropped_total", "laas_alerts_total"):
        assert name in used, f"the dashboard shows no {name}"


def test_the_parser_catches_a_misspelt_metric_or_label() -> None:
    known = exported()
    metrics, labels = parse('sum by (paht) (rate(laas_ingest_acepted_total{path="x"}[5m]))')
    assert metrics == {"laas_ingest_acepted_total"} and metrics.isdisjoint(known)
    assert labels == {"paht", "path"}
    assert not labels <= known["laas_ingest_accepted_total"]


def test_the_dashboard_is_well_formed() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] and data["schemaVersion"] >= 36
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert [t["refId"] for t in panel["targets"]] == ["A"]
