"""The detector state of a source through the real changelog: a worker writes its monitor
(light state every `detect_light_snapshot_seconds`, the compact model every
`detect_model_snapshot_seconds`) to the `detect-light` and `detect-model` changelog topics;
the values restore a monitor; a worker restarted on an empty state directory recovers the
tables from the changelog and continues the source's monitor instead of starting it afresh.

The source sends an event a second for as long as the test waits: the detect stage writes a
source's state only with a later event of its partition (agents/detect.py), and the worker's
analytics child may start consuming after a fixed burst has ended (20-33 s after the launch on
loaded shared cores): the burst is then a backlog, scored in one tick, with no later event to
write its state with, and nothing reaches the changelogs."""

from __future__ import annotations

import asyncio
import itertools
import json
import pickle
import zlib
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from app.anomaly import HalfSpaceTreesDetector, SourceMonitor
from app.kafka.client import client_options
from app.pipeline.faust_app import analytics_app_id
from tests.stream_fixtures import *  # noqa: F403
from tests.stream_fixtures import StreamEnv, produce_raw

TENANT = "77"
SOURCE = f"{TENANT}/billing/bill-1"


async def send(stream: StreamEnv) -> None:
    """One event of the source a second until cancelled (its windows close in between)."""
    headers = [("laas-tenant-id", TENANT.encode()), ("laas-tenant", b"acme"),
               ("laas-service", b"billing")]
    for i in itertools.count():
        await produce_raw(stream.settings, [(
            f"{TENANT}/billing".encode(),
            json.dumps({"message": f"invoice {i} sent", "level": "info",
                        "host": "bill-1"}).encode(), headers)])
        await asyncio.sleep(1.0)


async def stop(sender: asyncio.Task[None]) -> None:
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)


async def changelog(stream: StreamEnv, table: str) -> list[tuple[int, int, str, bytes]]:
    """(partition, offset, key, value) of every record on a detect table's changelog topic."""
    topic = f"{analytics_app_id(stream.settings)}-{table}-changelog"
    admin = AIOKafkaAdminClient(**client_options(stream.settings))
    await admin.start()
    try:  # the worker creates it (reading it first would auto-create it, wrongly configured)
        if topic not in await admin.list_topics():
            return []
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(topic, **client_options(stream.settings),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[int, int, str, bytes]] = []
    try:
        for _ in range(6):  # until a poll returns nothing new
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches and found:
                break
            for records in batches.values():
                found += [(r.partition, r.offset, json.loads(r.key), r.value) for r in records
                          if r.key is not None and r.value is not None]
    finally:
        await consumer.stop()
    return found


def latest(records: list[tuple[int, int, str, bytes]], key: str) -> bytes | None:
    values = [(p, o, v) for p, o, k, v in records if k == key]
    return max(values)[2] if values else None


def windows_of(light: bytes) -> int:
    monitor: Any = pickle.loads(zlib.decompress(light))
    return int(monitor.windows)


async def test_monitor_state_survives_a_restart_through_the_changelog(
        stream: StreamEnv) -> None:
    env = {"LAAS_DETECT_WINDOW_SECONDS": "1", "LAAS_DETECT_MODEL_SNAPSHOT_SECONDS": "1",
           # every window, as before the rate (tests/test_detect_stage.py covers the rate):
           # a state written with windows >= 3 must not depend on how late events arrive
           "LAAS_DETECT_LIGHT_SNAPSHOT_SECONDS": "0"}
    first = stream.worker("w1", **env)

    async def states() -> tuple[bytes, bytes] | None:
        light = latest(await changelog(stream, "detect-light"), SOURCE)
        model = latest(await changelog(stream, "detect-model"), SOURCE)
        if light is not None and model is not None and windows_of(light) >= 3:
            return light, model
        return None

    sender = asyncio.create_task(send(stream))
    try:
        light, model = await stream.wait(states, 90, "the source's state in both changelogs")
    finally:
        await stop(sender)
    monitor = SourceMonitor.restore(light, model)
    assert monitor.source == SOURCE and monitor.windows >= 3
    assert isinstance(monitor.hst, HalfSpaceTreesDetector) and monitor.hst.seen >= 1
    assert monitor.hst.l_mass is not None and len(monitor.hst.l_mass) == 10 * 511
    first.stop()
    written = await changelog(stream, "detect-light")
    last = latest(written, SOURCE)
    assert last is not None
    before, seen = windows_of(last), {(p, o) for p, o, _, _ in written}

    # a fresh state directory: the tables can only come back from the changelog
    stream.worker("w2", **env)

    async def first_new() -> int | None:
        new = [(p, o, v) for p, o, k, v in await changelog(stream, "detect-light")
               if k == SOURCE and (p, o) not in seen]
        return windows_of(min(new)[2]) if new else None

    sender = asyncio.create_task(send(stream))
    try:
        after = await stream.wait(first_new, 120, "the restarted worker's state of the source")
    finally:
        await stop(sender)
    # a monitor started afresh would write windows == 1 first; the restored one goes on
    assert after > before, (before, after)
