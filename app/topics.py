"""Names of the LaaS Kafka topics, and their declaration on a Faust app."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from app.settings import Settings

RAW = "logs.raw"
EVENTS = "logs.events"
DEADLETTER = "logs.deadletter"
ALERTS = "alerts"
RULE_COUNTS = "rule-counts"  # partial alert-rule counts of each worker, keyed by tenant
ALL = (RAW, EVENTS, DEADLETTER, ALERTS, RULE_COUNTS)


def topic_name(settings: Settings, name: str) -> str:
    """The broker-side name of a LaaS topic (with the configured prefix)."""
    return f"{settings.topic_prefix}{name}"


@dataclass(frozen=True)
class Topics:
    """The LaaS topics declared on one Faust app (bytes in, bytes out)."""

    raw: faust.TopicT
    events: faust.TopicT
    deadletter: faust.TopicT
    alerts: faust.TopicT
    rule_counts: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def topic(name: str) -> faust.TopicT:
        return app.topic(
            topic_name(settings, name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            replicas=settings.replication_factor,
        )

    return Topics(
        raw=topic(RAW), events=topic(EVENTS), deadletter=topic(DEADLETTER), alerts=topic(ALERTS),
        rule_counts=topic(RULE_COUNTS),
    )
