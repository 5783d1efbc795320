"""The stalled-partition watchdog (app/pipeline/watchdog.py): the pure tracker, and workers started
together on a backlog consuming every partition (issue 16, FINDINGS 7)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import AsyncElasticsearch

from app.ingest.wire import pb
from app.kafka.topics import ALL, EVENTS, RAW
from app.pipeline.watchdog import ACTIONS, StallTracker, action_for, check_interval
from app.settings import load_settings
from tests.conftest import kafka_options
from tests.stream_fixtures import StreamEnv, produce_raw

RAW_0, RAW_1 = ("logs.raw", 0), ("logs.raw", 1)


def test_a_partition_without_progress_and_with_lag_is_reported_after_the_stall_time() -> None:
    tracker = StallTracker(30)
    assert tracker.observe({RAW_0: (5, 100)}, now=0) == []
    assert tracker.observe({RAW_0: (5, 100)}, now=29.9) == []
    [stall] = tracker.observe({RAW_0: (5, 120)}, now=30)
    assert (stall.topic, stall.partition, stall.position, stall.end) == ("logs.raw", 0, 5, 120)
    assert stall.seconds == 30 and stall.lag == 115 and stall.strike == 1


def test_progress_or_no_lag_restarts_the_clock() -> None:
    tracker = StallTracker(10)
    tracker.observe({RAW_0: (0, 50), RAW_1: (7, 7)}, now=0)
    assert tracker.observe({RAW_0: (1, 50), RAW_1: (7, 7)}, now=9) == []  # 0 moved
    assert tracker.observe({RAW_0: (1, 50), RAW_1: (7, 7)}, now=18) == []  # 1 has no lag
    stalls = tracker.observe({RAW_0: (1, 50), RAW_1: (7, 9)}, now=19)  # 1's lag starts
    assert [(s.partition, s.seconds) for s in stalls] == [(0, 10)]
    assert tracker.observe({RAW_0: (1, 50), RAW_1: (7, 9)}, now=27.5) == []
    stalls = tracker.observe({RAW_0: (1, 50), RAW_1: (7, 9)}, now=28)
    assert [(s.partition, s.seconds) for s in stalls] == [(1, 10)]


def test_a_stalled_partition_is_reported_again_each_period_with_a_further_strike() -> None:
    tracker = StallTracker(10)
    tracker.observe({RAW_0: (3, 9)}, now=0)
    strikes = [s.strike for t in range(1, 41) for s in tracker.observe({RAW_0: (3, 9)}, now=t)]
    assert strikes == [1, 2, 3, 4]
    assert tracker.observe({RAW_0: (4, 9)}, now=41) == []  # progress: strikes start over
    [again] = tracker.observe({RAW_0: (4, 9)}, now=51)
    assert again.strike == 1


def test_a_partition_no_longer_assigned_is_forgotten() -> None:
    tracker = StallTracker(10)
    tracker.observe({RAW_0: (3, 9), RAW_1: (0, 4)}, now=0)
    assert tracker.observe({RAW_1: (0, 4)}, now=5) == []  # 0 revoked
    [stall] = tracker.observe({RAW_0: (3, 9), RAW_1: (0, 4)}, now=10)  # 0 back: a new clock
    assert stall.partition == 1
    assert tracker.observe({}, now=100) == []
    assert tracker.observe({RAW_1: (0, 4)}, now=105) == []


def test_the_action_escalates_with_the_strikes_and_stays_at_restart() -> None:
    assert [action_for(n) for n in (1, 2, 3, 4, 10)] == [
        "resume", "rejoin", "restart", "restart", "restart"]
    assert ACTIONS[0] == action_for(0) == "resume"


def test_watchdog_seconds_zero_is_off_and_the_check_interval_is_bounded() -> None:
    with pytest.raises(ValueError):
        StallTracker(0)
    assert load_settings(watchdog_seconds=0).watchdog_seconds == 0
    assert check_interval(load_settings(watchdog_seconds=60)) == 10
    assert check_interval(load_settings(watchdog_seconds=20)) == 5
    assert check_interval(load_settings(watchdog_seconds=2)) == 1


# --- workers started together on a backlog --------------------------------------------------

PARTITIONS = 4
BACKLOG = 4_000
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
STAMP = [("content-type", b"application/x-protobuf; messageType=laas.v1.LogRecord"),
         ("laas-tenant-id", b"1"), ("laas-tenant", b"t"), ("laas-source", b"gateway")]


def backlog(n: int) -> list[Record]:
    records: list[Record] = []
    for i in range(n):
        record = pb.LogRecord(time_unix_nano=time.time_ns(), severity_number=9,
                              body=pb.AnyValue(string_value=f"request {i} done ms={i % 500}"),
                              resource=pb.Resource(service_name=f"svc{i % 8}"))
        records.append((f"1/svc{i % 32}".encode(), record.SerializeToString(), STAMP))
    return records


async def test_workers_started_together_on_a_backlog_consume_every_partition(
        kafka_servers: str, es_url: str, unique: str, tmp_path: Path,
        es: AsyncElasticsearch) -> None:
    """Two workers start at the same moment on a backlog in every `logs.raw` partition; each
    of the three groups' committed offsets reaches the end of every partition of its topic.
    The watchdog runs (20 s) as it would in production, so a stall it cannot undo fails."""
    env = StreamEnv(unique, tmp_path, es_url, extra={
        "LAAS_PARTITIONS": str(PARTITIONS), "LAAS_WATCHDOG_SECONDS": "20"})
    admin = AIOKafkaAdminClient(**kafka_options())
    ends_reader = AIOKafkaConsumer(**kafka_options())
    await admin.start()
    await ends_reader.start()
    try:
        await admin.create_topics([NewTopic(env.topic(n), PARTITIONS, 1) for n in ALL])
        placed = await produce_raw(env.settings, backlog(BACKLOG))
        assert {p for p, _ in placed} == set(range(PARTITIONS))
        env.worker("w1")
        env.worker("w2")
        s = env.settings
        groups = {s.app_id: env.topic(RAW), f"{s.app_id}-analytics": env.topic(EVENTS),
                  f"{s.app_id}-index": env.topic(EVENTS)}
        behind: dict[str, dict[int, tuple[int, int]]] = {}  # group → partition → (at, end)
        seen_ends: list[dict[tuple[str, int], int]] = [{}]  # the previous check's end offsets

        async def caught_up() -> bool:
            """Every group at the end of every partition, and the ends as at the previous
            check: normalize's last sends are in, so the events groups' ends are final."""
            behind.clear()
            ends_now: dict[tuple[str, int], int] = {}
            for group, topic in groups.items():
                tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
                ends = await ends_reader.end_offsets(tps)
                ends_now |= {(tp.topic, tp.partition): end for tp, end in ends.items()}
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
                for tp in tps:
                    meta = committed.get(tp)
                    at = meta.offset if meta is not None and meta.offset >= 0 else 0
                    if at < ends[tp]:
                        behind.setdefault(group, {})[tp.partition] = (at, ends[tp])
            stable, seen_ends[0] = ends_now == seen_ends[0], ends_now
            return not behind and stable  # logs.raw has records in every partition: ends > 0

        try:
            await env.wait(caught_up, 150, "every partition of every group at its end")
        except BaseException:
            print(f"behind (committed, end): {behind}")
            raise
        assert [w.proc.poll() for w in env.workers if w.proc is not None] == [None, None]
    finally:
        await ends_reader.stop()
        await admin.close()
        await env.cleanup(es)
