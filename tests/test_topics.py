"""The LaaS topics: created in one place before any consumer joins, checked when they exist
(`app/kafka/admin.py`), shown by `laas topics status`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.worker import worker_topic_specs
from app.kafka.admin import TopicMismatch, TopicState, differences, ensure_topics
from app.kafka.topics import ALL, TopicSpec, laas_topic_specs, topic_name
from app.settings import Settings
from tests.conftest import kafka_options

ROOT = Path(__file__).resolve().parent.parent


def test_a_matching_topic_has_no_differences() -> None:
    spec = TopicSpec("t", 4, 1, {"cleanup.policy": "compact"})
    state = TopicState("t", 4, 1, 4, {"cleanup.policy": "compact", "retention.ms": "1"})
    assert differences(spec, state) == []


def test_differences_name_partitions_replication_and_config() -> None:
    spec = TopicSpec("t", 4, 3, {"cleanup.policy": "compact"})
    state = TopicState("t", 2, 1, 2, {"cleanup.policy": "delete"})
    assert differences(spec, state) == [
        "t: 2 partitions, the settings say 4 (LAAS_PARTITIONS)",
        "t: replication factor 1, the settings say 3 (LAAS_REPLICATION_FACTOR)",
        "t: cleanup.policy=delete, LaaS needs cleanup.policy=compact",
    ]


def test_worker_specs_cover_laas_topics_changelogs_and_leader_topics(unique: str) -> None:
    settings = Settings(app_id=unique, topic_prefix=f"{unique}.", partitions=6)
    specs = {spec.name: spec for spec in worker_topic_specs(settings)}
    assert {topic_name(settings, name) for name in ALL} <= set(specs)
    changelogs = {name: spec for name, spec in specs.items() if name.endswith("-changelog")}
    assert set(changelogs) == {
        f"{unique}-templates-changelog",
        f"{unique}-analytics-source-totals-changelog",
        f"{unique}-analytics-source-windows-changelog",
        f"{unique}-analytics-detect-light-changelog",
        f"{unique}-analytics-detect-model-changelog",
    }
    assert all(spec.partitions == 6 and "compact" in spec.config["cleanup.policy"]
               for spec in changelogs.values())
    windows = changelogs[f"{unique}-analytics-source-windows-changelog"]
    assert windows.config == {"cleanup.policy": "compact,delete",
                              "retention.ms": str(settings.stats_window_retention * 1000)}
    assert specs[f"{unique}-__assignor-__leader"].partitions == 1
    assert specs[f"{unique}-analytics-__assignor-__leader"].partitions == 1


async def _delete(servers: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(**kafka_options())
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def test_ensure_creates_every_topic_once_and_then_only_checks(
    kafka_servers: str, unique: str
) -> None:
    settings = Settings(app_id=unique, topic_prefix=f"{unique}.")
    specs = worker_topic_specs(settings)
    try:
        first = await ensure_topics(settings, specs)
        assert first.created == [spec.name for spec in specs] and first.existing == []
        again = await ensure_topics(settings, specs)
        assert again.created == [] and again.existing == [spec.name for spec in specs]
    finally:
        await _delete(kafka_servers, unique)


async def test_an_existing_topic_that_differs_is_refused(kafka_servers: str, unique: str) -> None:
    settings = Settings(app_id=unique, topic_prefix=f"{unique}.", partitions=4)
    raw = topic_name(settings, "logs.raw")
    changelog = TopicSpec(f"{unique}-templates-changelog", 4, 1, {"cleanup.policy": "compact"})
    admin = AIOKafkaAdminClient(**kafka_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(raw, 2, 1),
                                   NewTopic(changelog.name, 4, 1,
                                            topic_configs={"cleanup.policy": "delete"})])
        with pytest.raises(TopicMismatch) as raised:
            await ensure_topics(settings, [*laas_topic_specs(settings), changelog])
        assert raised.value.problems == [
            f"{raw}: 2 partitions, the settings say 4 (LAAS_PARTITIONS)",
            f"{changelog.name}: cleanup.policy=delete, LaaS needs cleanup.policy=compact",
        ]
        assert (await admin.describe_topics([raw]))[0]["partitions"].__len__() == 2  # untouched
    finally:
        await admin.close()
        await _delete(kafka_servers, unique)


def _laas(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_topics_commands_ensure_and_report(kafka_servers: str, unique: str) -> None:
    env = {**os.environ, "LAAS_APP_ID": unique, "LAAS_TOPIC_PREFIX": f"{unique}."}
    try:
        missing = _laas(env, "topics", "status", "--json")
        assert missing.returncode == 1, missing.stderr
        assert {t["status"] for t in json.loads(missing.stdout)["topics"]} == {"missing"}

        ensured = _laas(env, "topics", "ensure")
        assert ensured.returncode == 0, ensured.stderr
        assert f"created Kafka topics: {unique}.logs.raw" in ensured.stderr

        status = _laas(env, "topics", "status", "--json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert {t["status"] for t in report["topics"]} == {"ok"}
        windows = next(t for t in report["topics"]
                       if t["name"] == f"{unique}-analytics-source-windows-changelog")
        assert windows["config"]["cleanup.policy"] == "compact,delete"
        groups = {(lag["group"], lag["topic"]) for lag in report["lag"]}
        assert (unique, f"{unique}.logs.raw") in groups
        assert (f"{unique}-index", f"{unique}.logs.events") in groups

        wrong = _laas({**env, "LAAS_PARTITIONS": "3"}, "topics", "ensure")
        assert wrong.returncode == 1
        assert f"{unique}.logs.raw: 4 partitions, the settings say 3" in wrong.stderr
        table = _laas({**env, "LAAS_PARTITIONS": "3"}, "topics", "status")
        assert table.returncode == 1
        assert "differs" in table.stdout
    finally:
        await _delete(kafka_servers, unique)
