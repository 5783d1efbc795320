"""Names and specs of the LaaS Kafka topics, and their declaration on a Faust app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
class TopicSpec:
    """What a topic must look like: `config` holds only the entries LaaS sets (the rest are
    the broker's defaults and not checked)."""

    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


def laas_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The five LaaS topics (`ALL`), with the partitions and replication of the settings."""
    return [TopicSpec(topic_name(settings, name), settings.partitions,
                      settings.replication_factor) for name in ALL]


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
