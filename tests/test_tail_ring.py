"""The live tail hub's ring and dispatch (app/live/tail.py) without Kafka: messages are kept per
tenant undecoded, decoded only for a tenant with a tail open or when a new tail asks for the
recent past; unsigned or undecodable messages never reach anyone; the ring is bounded by age
and bytes; a tenant's recent events never include another tenant's."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiokafka import ConsumerRecord

from app.kafka.headers import H_TENANTS
from app.kafka.stamp import EVENTS, RAW
from app.live.tail import Message, Ring, TailHub
from app.pipeline.event_messages import encode
from app.pipeline.events import NS, LogEvent, RawPosition
from tests.auth_fixtures import make_settings


def event(tenant: str, offset: int) -> LogEvent:
    now = time.time_ns()
    return LogEvent(tenant_id=tenant, tenant=f"t{tenant}", time=now, observed_time=now,
                    severity="INFO", severity_number=9, message=f"m {offset}", service="api",
                    host="h", raw=RawPosition("x.logs.raw", 0, offset))


def hub(tmp_path: Path, **overrides: object) -> TailHub:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'u.db'}", tmp_path / "state",
                             **overrides)
    return TailHub(settings)


@asynccontextmanager
async def hub_in_use(tmp_path: Path, **overrides: object) -> AsyncIterator[TailHub]:
    """A hub whose Kafka reader (started by a subscription) is stopped afterwards."""
    tail = hub(tmp_path, **overrides)
    try:
        yield tail
    finally:
        await tail.stop()


def record(tail: TailHub, offset: int, events: list[LogEvent], *, key: bytes | None = None,
           signed_as: str | None = EVENTS, value: bytes | None = None,
           tenants: bytes | None = None) -> ConsumerRecord[bytes, bytes]:
    """A message as an older worker wrote it (keyed by its source), or with `tenants` as the
    worker writes it now (header `laas-tenants`, no key)."""
    if tenants is None:
        key = key if key is not None else events[0].source_key.encode()
    (value,) = [value] if value is not None else [v for v, _ in encode(events, 1_000_000)]
    extra = [(H_TENANTS, tenants)] if tenants is not None else []
    headers = tail.stamps.sign(key, value, extra, kind=signed_as) if signed_as else extra
    return ConsumerRecord("x.logs.events", 0, offset, 0, 0, key, value, None,
                          len(key or b""), len(value), tuple(headers))


async def test_only_tailed_tenants_are_decoded_and_recent_decodes_on_demand(
        tmp_path: Path) -> None:
    async with hub_in_use(tmp_path) as tail:
        sub = tail.subscribe("1", lambda fields: True)
        tail._handle(record(tail, 1, [event("1", 1), event("1", 2)]), live=True)
        tail._handle(record(tail, 2, [event("2", 3)]), live=True)
        (mine,), (theirs,) = tail.rings["1"].messages, tail.rings["2"].messages
        assert mine._events is not None and theirs._events is None  # tenant 2: nobody tails
        assert [sub.queue.get_nowait().event.message for _ in range(2)] == ["m 1", "m 2"]
        assert sub.queue.empty()
        assert [e.message for e in tail.recent("2")] == ["m 3"]  # decoded when asked
        assert [e.message for e in tail.recent("1")] == ["m 1", "m 2"]
        assert tail.recent("3") == []


async def test_unsigned_and_undecodable_messages_reach_nobody(tmp_path: Path) -> None:
    async with hub_in_use(tmp_path) as tail:
        sub = tail.subscribe("1", lambda fields: True)
        tail._handle(record(tail, 1, [event("1", 1)], signed_as=None), live=True)
        tail._handle(record(tail, 2, [event("1", 2)], signed_as=RAW), live=True)
        tail._handle(record(tail, 3, [], key=b"1/api/h", value=b"not json"), live=True)
        tail._handle(record(tail, 4, [event("1", 4)]), live=True)
        assert sub.queue.get_nowait().event.message == "m 4" and sub.queue.empty()
        assert [e.message for e in tail.recent("1")] == ["m 4"]


async def test_history_before_the_live_offset_is_remembered_not_delivered(
        tmp_path: Path) -> None:
    async with hub_in_use(tmp_path) as tail:
        sub = tail.subscribe("1", lambda fields: True)
        tail._handle(record(tail, 1, [event("1", 1)]), live=False)
        assert sub.queue.empty()
        assert [e.message for e in tail.recent("1")] == ["m 1"]


async def test_a_message_of_several_tenants_reaches_each_only_with_its_own_events(
        tmp_path: Path) -> None:
    async with hub_in_use(tmp_path) as tail:
        sub = tail.subscribe("2", lambda fields: True)
        both = [event("1", 1), event("2", 2), event("1", 3)]
        tail._handle(record(tail, 1, both, tenants=b"1,2"), live=True)
        assert sub.queue.get_nowait().event.message == "m 2" and sub.queue.empty()
        assert [e.message for e in tail.recent("1")] == ["m 1", "m 3"]
        assert [e.message for e in tail.recent("2")] == ["m 2"]
        tail._handle(record(tail, 2, [event("3", 4)], tenants=b"3"), live=True)
        assert tail.rings["3"].messages[0]._events is None  # nobody tails tenant 3


async def test_a_message_keyed_for_one_tenant_never_shows_another_tenants_event(
        tmp_path: Path) -> None:
    async with hub_in_use(tmp_path) as tail:
        tail._handle(record(tail, 1, [event("2", 1)], key=b"1/api/h"), live=True)
        assert tail.recent("1") == [] and tail.recent("2") == []


def test_the_ring_keeps_the_last_seconds_within_its_bytes(tmp_path: Path) -> None:
    tail = hub(tmp_path)
    ring = Ring(seconds=30, max_bytes=3_000)
    start = time.time_ns()
    for i in range(4):
        ring.add(Message(record(tail, i, [event("1", i)]), start + i * NS))
    assert [m.record.offset for m in ring.messages] == [0, 1, 2, 3]
    ring.add(Message(record(tail, 4, [event("1", 4)]), start + 40 * NS))  # 0-3 too old now
    assert [m.record.offset for m in ring.messages] == [4]
    for i in range(5, 20):
        ring.add(Message(record(tail, i, [event("1", i)]), start + 41 * NS))
    assert ring.size <= 3_000 < ring.size + len(record(tail, 0, [event("1", 0)]).value)
    assert ring.size == sum(len(m.record.value) for m in ring.messages)
    assert ring.messages[-1].record.offset == 19


async def test_recent_returns_at_most_tail_ring_max_events(tmp_path: Path) -> None:
    async with hub_in_use(tmp_path, tail_ring_max=3) as tail:
        tail._handle(record(tail, 1, [event("1", i) for i in range(5)]), live=False)
        assert [e.message for e in tail.recent("1")] == ["m 2", "m 3", "m 4"]
