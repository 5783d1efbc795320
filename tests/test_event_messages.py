"""`logs.events` message encoding: arrays of the events of a partition's sources, split by size."""

from __future__ import annotations

import dataclasses
import json

import pytest

from app.pipeline.event_messages import by_source, decode, encode, messages, partition_of
from app.pipeline.events import LogEvent, RawPosition


def event(i: int, host: str = "h1", message: str = "hello") -> LogEvent:
    return LogEvent(tenant_id="1", tenant="acme", time=i, observed_time=i, severity="INFO",
                    severity_number=9, message=f"{message} {i}", service="api", host=host,
                    raw=RawPosition("logs.raw", 0, i))


def test_round_trip_keeps_order() -> None:
    events = [event(i) for i in range(5)]
    ((message, _),) = encode(events, 1 << 20)
    assert decode(message) == events


def test_split_at_max_bytes() -> None:
    events = [event(i, message="x" * 200) for i in range(50)]
    limit = 2000
    messages = [value for value, _ in encode(events, limit)]
    assert len(messages) > 1
    assert all(len(m) <= limit for m in messages)
    assert [e for m in messages for e in decode(m)] == events


def test_an_event_larger_than_the_limit_travels_alone() -> None:
    big, small = event(1, message="y" * 5000), event(2)
    messages = [value for value, _ in encode([small, big, small], 1024)]
    assert [len(decode(m)) for m in messages] == [1, 1, 1]
    assert decode(messages[1]) == [big]


def test_a_single_object_is_one_event() -> None:
    one = event(7)
    assert decode(one.to_json()) == [one]


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b"{}", b'[{"raw": {}}]', b"42"])
def test_anything_else_raises(value: bytes) -> None:
    with pytest.raises((ValueError, TypeError, KeyError)):
        decode(value)


def test_by_source_groups_in_arrival_order() -> None:
    events = [event(1, "a"), event(2, "b"), event(3, "a")]
    groups = by_source(events)
    assert list(groups) == ["1/api/a", "1/api/b"]
    assert [e.time for e in groups["1/api/a"]] == [1, 3]
    assert json.loads(next(encode(groups["1/api/b"], 1 << 20))[0])[0]["host"] == "b"


def test_decoded_events_equal_constructed_ones_with_or_without_every_field() -> None:
    full = event(3)
    ((message, _),) = encode([full], 1 << 20)
    (decoded,) = decode(message)  # every field present: built without the dataclass __init__
    assert decoded == full and decoded.raw == full.raw and decoded.doc_id() == full.doc_id()
    assert decoded.source_key == "1/api/h1"
    with pytest.raises(AttributeError):  # still frozen
        decoded.message = "changed"  # type: ignore[misc]
    older = json.loads(full.to_json())
    del older["batch_key"], older["batch_index"]  # written before these fields existed
    (decoded_older,) = decode(json.dumps(older))
    assert decoded_older == full
    with pytest.raises(TypeError):  # an unknown field is still an error
        decode(json.dumps({**older, "surprise": 1}))


def test_decode_shared_decodes_each_message_once() -> None:
    from faust.types import Message

    from app.kafka.stamp import Stamps
    from app.pipeline.event_messages import Unsigned, decode_shared

    stamps = Stamps(b"unit-test-secret")

    def message(offset: int, events: list[LogEvent], signed: bool = True) -> Message:
        ((value, _),) = encode(events, 1 << 20)
        headers = stamps.sign(b"k", value, kind="events") if signed else []
        return Message("logs.events", 0, offset, 0.0, 0, headers, b"k", value, None)

    first, second = message(1, [event(1), event(2)]), message(2, [event(3)])
    seen_by_stats = decode_shared(first, stamps)
    assert decode_shared(first, stamps) is seen_by_stats  # detect gets the same list
    assert seen_by_stats == [event(1), event(2)]
    assert decode_shared(second, stamps) == [event(3)]
    with pytest.raises(Unsigned):  # written by someone without LaaS's secret: not read
        decode_shared(message(3, [event(4)], signed=False), stamps)


def test_with_template_copies_and_leaves_the_original() -> None:
    original = event(4)
    tagged = original.with_template("t-1", True)
    assert (tagged.template_id, tagged.template_new) == ("t-1", True)
    assert original.template_id == "" and not original.template_new
    assert tagged == dataclasses.replace(original, template_id="t-1", template_new=True)


def test_a_source_keeps_the_partition_kafka_gave_its_key() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    for key in ("1/api/h1", "7/checkout/web-1", "12345/x/", "3/ünï/h"):
        for partitions in (1, 4, 12):
            assert partition_of(key, partitions) == DefaultPartitioner()(
                key.encode(), list(range(partitions)), [])


def test_messages_hold_every_source_of_a_partition() -> None:
    def of(tenant: str, host: str, i: int) -> LogEvent:
        return dataclasses.replace(event(i, host), tenant_id=tenant)

    events = [of(str(t), f"h{t % 3}", i) for i in range(4) for t in range(1, 40)]
    out = list(messages(events, 4, 1 << 20))
    assert sorted(m.partition for m in out) == [0, 1, 2, 3]  # one message per partition
    got = [e for m in out for e in decode(m.value)]
    assert sorted(e.doc_id() for e in got) == sorted(e.doc_id() for e in events)
    for m in out:
        held = decode(m.value)
        assert {partition_of(e.source_key, 4) for e in held} == {m.partition}
        assert m.tenants == ",".join(sorted({e.tenant_id for e in held})).encode()
        assert m.key is None  # several sources
        for group in by_source(held).values():  # each source's events in order
            assert [e.time for e in group] == sorted(e.time for e in group)
    (alone,) = messages([event(1), event(2)], 4, 1 << 20)
    assert alone.key == b"1/api/h1" and alone.tenants == b"1"  # one source: keyed by it
    split = list(messages([event(i, message="x" * 300) for i in range(20)], 4, 2000))
    assert len(split) > 1 and all(len(m.value) <= 2000 for m in split)
    assert [e.time for m in split for e in decode(m.value)] == list(range(20))
