"""Creating and checking the LaaS Kafka topics before any consumer joins a group.

`ensure_topics` creates the missing topics of a list of `TopicSpec`s, checks the ones that exist
(partition count, replication factor, the configs LaaS sets) and waits until every partition has
a leader; a topic that differs is a `TopicMismatch` naming each difference, never silently used.
`topics_status` is what `laas topics status` prints. Missing topics are found with a metadata
request for all topics: asking for one by name makes a broker with `auto.create.topics.enable`
create it with its own defaults.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from app.kafka.client import client_options
from app.kafka.topics import TopicSpec
from app.runtime.retry import Failure, RetryPolicy, retry
from app.settings import Settings

log = logging.getLogger(__name__)
Say = Callable[[str], None]

TOPIC_ALREADY_EXISTS = 36


class TopicMismatch(RuntimeError):
    """Existing topics differ from their specs; `problems` names each difference."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "Kafka topics differ from the LaaS settings (fix the topic or the settings; LaaS "
            "does not use a topic that differs):\n  " + "\n  ".join(self.problems))


class KafkaNotReachable(RuntimeError):
    """Kafka did not answer within the wait."""


@dataclass(frozen=True)
class TopicState:
    """A topic as the broker has it."""

    name: str
    partitions: int
    replication: int
    leaders: int  # partitions that have a leader
    config: dict[str, str] = field(default_factory=dict)


def differences(spec: TopicSpec, state: TopicState) -> list[str]:
    """What makes `state` differ from `spec` (empty: it matches)."""
    found = []
    if state.partitions != spec.partitions:
        found.append(f"{spec.name}: {state.partitions} partitions, the settings say "
                     f"{spec.partitions} (LAAS_PARTITIONS)")
    if state.replication != spec.replication:
        found.append(f"{spec.name}: replication factor {state.replication}, the settings say "
                     f"{spec.replication} (LAAS_REPLICATION_FACTOR)")
    for key, wanted in sorted(spec.config.items()):
        have = state.config.get(key)
        if have != wanted:
            found.append(f"{spec.name}: {key}={have}, LaaS needs {key}={wanted}")
    return found


async def _admin(settings: Settings, wait: float, say: Say = log.warning) -> AIOKafkaAdminClient:
    """A started admin client, retrying (and saying so) for up to `wait` seconds."""
    said = 0.0

    async def start() -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
        try:
            await admin.start()
        except BaseException:
            await admin.close()
            raise
        return admin

    def waiting(failure: Failure) -> None:
        nonlocal said
        if (now := time.monotonic()) - said >= 10:
            say(f"waiting for Kafka at {settings.kafka_servers} to create the LaaS topics "
                f"({failure.error!r})")
            said = now

    try:
        return await retry(start, RetryPolicy((KafkaError, OSError), initial=0.5, maximum=5.0,
                                              deadline=wait), on_retry=waiting)
    except (KafkaError, OSError) as exc:
        raise KafkaNotReachable(f"Kafka at {settings.kafka_servers} did not answer within "
                                f"{wait:.0f}s ({exc!r})") from exc


async def _states(admin: AIOKafkaAdminClient, names: Sequence[str]) -> dict[str, TopicState]:
    """The existing topics among `names` (never asks for a missing one by name)."""
    existing = set(await admin.list_topics())
    wanted = [name for name in names if name in existing]
    if not wanted:
        return {}
    described = {t["topic"]: t for t in await admin.describe_topics(wanted)}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted])
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            configs[resource["resource_name"]] = {
                e["config_names"]: e["config_value"] for e in resource["config_entries"]}
    states = {}
    for name in wanted:
        partitions = described[name]["partitions"]
        states[name] = TopicState(
            name=name,
            partitions=len(partitions),
            replication=max((len(p["replicas"]) for p in partitions), default=0),
            leaders=sum(1 for p in partitions if p["leader"] >= 0),
            config=configs.get(name, {}),
        )
    return states


class _Leaderless(Exception):
    """Some topics are missing from the metadata or have partitions without a leader."""

    def __init__(self, topics: list[str]) -> None:
        super().__init__(", ".join(topics))
        self.topics = topics


@dataclass(frozen=True)
class Ensured:
    created: list[str]
    existing: list[str]


async def ensure_topics(settings: Settings, specs: Sequence[TopicSpec], *,
                        wait: float = 120.0, say: Say = log.warning) -> Ensured:
    """Create the missing topics of `specs`, check the others, and wait until every partition
    has a leader. Idempotent. Raises `TopicMismatch` when an existing topic differs and
    `KafkaNotReachable` when Kafka does not answer within `wait` seconds; `say` gets the
    waiting lines."""
    admin = await _admin(settings, wait, say)
    try:
        names = [spec.name for spec in specs]
        states = await _states(admin, names)
        missing = [spec for spec in specs if spec.name not in states]
        if missing:
            response = await admin.create_topics([
                NewTopic(spec.name, spec.partitions, spec.replication,
                         topic_configs=dict(spec.config)) for spec in missing])
            for error in response.to_object()["topic_errors"]:
                if error["error_code"] not in (0, TOPIC_ALREADY_EXISTS):
                    raise KafkaError(f"creating topic {error['topic']} failed: "
                                     f"{error['error_message']} (code {error['error_code']})")

        async def led() -> None:
            states = await _states(admin, names)
            problems = [p for spec in specs if spec.name in states
                        for p in differences(spec, states[spec.name])]
            if problems:
                raise TopicMismatch(problems)
            waiting = [spec.name for spec in specs if spec.name not in states
                       or states[spec.name].leaders < states[spec.name].partitions]
            if waiting:
                raise _Leaderless(waiting)

        try:
            await retry(led, RetryPolicy(_Leaderless, initial=0.2, maximum=0.2, deadline=wait))
        except _Leaderless as exc:
            raise KafkaNotReachable(f"topics without a partition leader after {wait:.0f}s: "
                                    + ", ".join(exc.topics)) from None
        created = {spec.name for spec in missing}
        return Ensured(created=[n for n in names if n in created],
                       existing=[n for n in names if n not in created])
    finally:
        await admin.close()


@dataclass(frozen=True)
class TopicReport:
    spec: TopicSpec
    state: TopicState | None
    problems: list[str]

    @property
    def status(self) -> str:
        return "missing" if self.state is None else ("differs" if self.problems else "ok")


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    lag: dict[int, int]  # partition -> records behind the end (from the committed offset)


async def topics_status(settings: Settings, specs: Sequence[TopicSpec],
                        groups: dict[str, list[str]]) -> tuple[list[TopicReport], list[GroupLag]]:
    """Each spec's topic as it is on the broker, and the lag of each consumer group of
    `groups` (group -> topics it reads) on the topics that exist."""
    admin = await _admin(settings, wait=10.0)
    consumer = AIOKafkaConsumer(**client_options(settings))
    try:
        states = await _states(admin, [spec.name for spec in specs])
        reports = [TopicReport(spec, states.get(spec.name),
                               differences(spec, states[spec.name]) if spec.name in states else [])
                   for spec in specs]
        await consumer.start()
        lags = []
        for group, topics in groups.items():
            try:
                committed = await admin.list_consumer_group_offsets(group)
            except KafkaError:  # a fresh broker has no group coordinator yet: nothing committed
                committed = {}
            for topic in topics:
                if topic not in states:
                    continue
                tps = [TopicPartition(topic, p) for p in range(states[topic].partitions)]
                ends = await consumer.end_offsets(tps)
                lag = {}
                for tp in tps:
                    meta = committed.get(tp)
                    position = meta.offset if meta is not None and meta.offset >= 0 else 0
                    lag[tp.partition] = max(ends[tp] - position, 0)
                lags.append(GroupLag(group, topic, lag))
        return reports, lags
    finally:
        await consumer.stop()
        await admin.close()
