"""The index stage's pure steps (agents/index.py), without Kafka or Elasticsearch: what a batch
of `logs.events` records becomes (events, dead letters with reasons), which offsets it commits."""

from __future__ import annotations

import time

from aiokafka import ConsumerRecord, TopicPartition

from agents.index import (
    decode_batch,
    newest_observed,
    next_offsets,
    rejection_letter,
    unknown_tenant_letter,
)
from app.elastic.sink import Rejection
from app.kafka.stamp import EVENTS, RAW, Stamps
from app.pipeline.event_messages import encode
from app.pipeline.events import LogEvent, RawPosition

STAMPS = Stamps(b"a test secret of thirty-two bytes")


def event(tenant: str, offset: int, observed: int = 0) -> LogEvent:
    now = time.time_ns()
    return LogEvent(tenant_id=tenant, tenant=f"t{tenant}", time=now,
                    observed_time=observed or now, severity="INFO", severity_number=9,
                    message=f"m {offset}", service="api", host="h",
                    raw=RawPosition("x.logs.raw", 0, offset))


def record(offset: int, value: bytes, *, signed_as: str | None = EVENTS, partition: int = 0,
           topic: str = "x.logs.events") -> ConsumerRecord[bytes, bytes]:
    key = b"1/api/h"
    headers = STAMPS.sign(key, value, kind=signed_as) if signed_as else []
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, len(key),
                          len(value), tuple(headers))


def test_a_batch_becomes_events_and_dead_letters_with_reasons() -> None:
    events = [event("1", 1), event("2", 2)]
    ((value, _),) = encode(events, 1_000_000)
    batch = [record(10, value),
             record(11, value, signed_as=None),  # no signature: not LaaS's
             record(12, value, signed_as=RAW),  # signed, but as another kind of message
             record(13, b"not json")]
    decoded, dead = decode_batch(batch, STAMPS)
    assert [e.doc_id() for e in decoded] == [e.doc_id() for e in events]
    assert [(d.reason, d.raw.offset) for d in dead] == [
        ("unsigned_event", 11), ("unsigned_event", 12), ("undecodable_event", 13)]
    assert all(d.stage == "index" and d.raw.topic == "x.logs.events" for d in dead)
    assert dead[2].value == b"not json" and "not LogEvent JSON" in dead[2].detail


def test_the_commit_is_one_past_the_last_record_of_each_partition() -> None:
    batch = [record(5, b"x", partition=0), record(7, b"x", partition=1),
             record(6, b"x", partition=0), record(3, b"x", partition=2, topic="other")]
    assert next_offsets(batch) == {TopicPartition("x.logs.events", 0): 7,
                                   TopicPartition("x.logs.events", 1): 8,
                                   TopicPartition("other", 2): 4}
    assert next_offsets([]) == {}


def test_newest_observed_time_per_tenant() -> None:
    assert newest_observed([event("1", 1, 5), event("2", 2, 9), event("1", 3, 7),
                            event("1", 4, 6)]) == {"1": 7, "2": 9}


def test_dead_letters_of_unknown_tenants_and_rejections_say_why() -> None:
    gone = unknown_tenant_letter(event("99", 4))
    assert gone.reason == "unknown_tenant" and gone.tenant_id == "99"
    assert "tenant '99' does not exist" in gone.detail and gone.raw.offset == 4
    refused = rejection_letter(Rejection(event("1", 5), 400, "document_parsing_exception",
                                         "failed to parse field [severity_number]"))
    assert refused.reason == "index_rejected" and refused.tenant_id == "1"
    assert refused.detail == ("HTTP 400 document_parsing_exception: failed to parse field "
                              "[severity_number]")
    assert refused.raw == RawPosition("x.logs.raw", 0, 5)
