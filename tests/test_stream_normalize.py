"""Unit tests of the pure normalize stage: parsers, timestamps, severity, fields, tenants, ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest.auth import Principal
from app.kafka.stamp import Stamps
from app.pipeline.events import DeadLetter, LogEvent, RawPosition
from app.pipeline.normalize import RawMessage
from app.pipeline.normalize import normalize as normalize_with
from app.pipeline.parsing import (
    json_in_message,
    key_values,
    parse_iso,
    parse_line,
    parse_timestamp,
    severity_from_text,
    severity_name,
    template_id,
)
from protos.laas.v1 import AnyValue, KeyValueList, LogBatch, LogRecord, Resource

NOW = int(datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp() * 1e9)
PROTO = b"application/x-protobuf; messageType=laas.v1.LogRecord"
BATCH = b"application/x-protobuf; messageType=laas.v1.LogBatch"
STAMPS = Stamps(b"unit-test-secret")
normalize = partial(normalize_with, stamps=STAMPS)


def ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       micro: int = 0) -> int:
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return int(moment.timestamp()) * 10**9 + micro * 1000


def raw(value: bytes, headers: dict[str, bytes] | None = None, offset: int = 3) -> RawMessage:
    """A `logs.raw` record; one with an ingest stamp is signed as the gateway signs it."""
    base = {"laas-tenant-id": b"7", "laas-tenant": b"acme"} if headers is None else headers
    if "laas-tenant-id" in base:
        base = dict(STAMPS.sign(b"k", value, list(base.items())))
    return RawMessage("p.logs.raw", 1, offset, NOW // 10**6, b"k", value, base)


@pytest.mark.parametrize("value,expected", [
    ("2024-01-15T10:30:45Z", ns(2024, 1, 15, 10, 30, 45)),
    ("2024-01-15T10:30:45.123456789+02:00", ns(2024, 1, 15, 8, 30, 45) + 123456789),
    ("2024-01-15 10:30:45,123", ns(2024, 1, 15, 10, 30, 45) + 123_000_000),
    (1705314645, ns(2024, 1, 15, 10, 30, 45)),
    (1705314645.5, ns(2024, 1, 15, 10, 30, 45) + 500_000_000),
    (1705314645123, ns(2024, 1, 15, 10, 30, 45) + 123_000_000),
    (1705314645123456, ns(2024, 1, 15, 10, 30, 45) + 123_456_000),
    (1705314645123456789, ns(2024, 1, 15, 10, 30, 45) + 123_456_789),
    ("1705314645123", ns(2024, 1, 15, 10, 30, 45) + 123_000_000),
    ("yesterday", None), (-5, None), (True, None), (float("nan"), None), ("", None),
])
def test_timestamps(value: object, expected: int | None) -> None:
    assert parse_timestamp(value) == expected


def test_iso_rejects_impossible_dates() -> None:
    assert parse_iso("2024-02-30T10:00:00Z") is None


@pytest.mark.parametrize("text,number,name", [
    ("ERROR", 17, "ERROR"), ("warning", 13, "WARN"), ("info", 9, "INFO"), ("debug", 5, "DEBUG"),
    ("TRACE", 1, "TRACE"), ("fatal", 21, "FATAL"), ("crit", 21, "FATAL"), ("E", 17, "ERROR"),
    ("notice", 10, "INFO"), ("info3", 11, "INFO"), ("SEVERITY_NUMBER_WARN", 13, "WARN"),
    ("17", 17, "ERROR"), ("nonsense", 0, "UNKNOWN"), ("99", 0, "UNKNOWN"),
])
def test_severity(text: str, number: int, name: str) -> None:
    assert severity_from_text(text) == number
    assert severity_name(number) == name


def test_syslog_rfc5424() -> None:
    f = parse_line('<165>1 2003-10-11T22:14:15.003Z host1 evntslog 77 ID47 [x@1 a="b"] An event',
                   NOW)
    assert (f.format, f.time, f.host, f.service, f.message) == (
        "syslog", ns(2003, 10, 11, 22, 14, 15) + 3_000_000, "host1", "evntslog", "An event")
    assert f.severity == 10 and f.attributes["process.pid"] == "77"


def test_syslog_rfc3164_infers_the_year() -> None:
    f = parse_line("<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed", NOW)
    assert f.time == ns(2026, 10, 11, 22, 14, 15) and f.severity == 21  # crit
    assert (f.host, f.service, f.attributes["process.pid"]) == ("mymachine", "su", "123")
    december = parse_line("Dec 31 23:59:59 h app: happy new year", NOW)
    assert december.time == ns(2025, 12, 31, 23, 59, 59)  # not a year in the future


def test_apache_access_and_error() -> None:
    f = parse_line('10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 503 '
                   '2326 "http://r" "Mozilla/4.08"', NOW)
    assert f.format == "apache_access" and f.time == ns(2000, 10, 10, 20, 55, 36)
    assert f.severity == 17
    assert f.attributes["http.response.status_code"] == "503"
    assert f.attributes["url.path"] == "/a.gif" and f.attributes["user.name"] == "frank"
    e = parse_line("[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] "
                   "[client 72.15.99.187] File does not exist: /usr/local", NOW)
    assert e.format == "apache_error" and e.time == ns(2000, 10, 11, 14, 32, 52, micro=123456)
    assert e.severity == 17 and e.message == "File does not exist: /usr/local"
    assert e.attributes["client.address"] == "72.15.99.187"


def test_log4j_and_iso_prefixed_lines() -> None:
    f = parse_line("2024-01-15 10:30:45,123 ERROR [main] com.foo.Bar - boom", NOW)
    assert (f.format, f.severity, f.message) == ("log4j", 17, "boom")
    assert f.time == ns(2024, 1, 15, 10, 30, 45) + 123_000_000
    assert f.attributes == {"thread.name": "main", "log.logger": "com.foo.Bar"}
    g = parse_line("2024-01-15T10:30:45.5Z disk almost full, WARNING", NOW)
    assert g.time == ns(2024, 1, 15, 10, 30, 45) + 500_000_000 and g.severity == 13
    plain = parse_line("nothing special here", NOW)
    assert (plain.format, plain.time, plain.severity) == ("text", None, 0)


def test_key_values_and_json_in_message() -> None:
    assert key_values('done user=alice ms=12 path="/a b" x.y=1,') == {
        "user": "alice", "ms": "12", "path": "/a b", "x.y": "1"}
    assert key_values("a == b, no pairs") == {} and key_values("no pairs at all") == {}
    long_key = "k" * 64  # keys are at most 64 characters: a longer one is no key at all
    assert key_values(f"{long_key}=1 {long_key}x=2 b=3") == {long_key: "1", "b": "3"}
    assert json_in_message('prefix: {"a": 1}') == {"a": 1}
    assert json_in_message("{not json}") is None and json_in_message("[1]") is None


def test_template_id_ignores_variables() -> None:
    assert template_id("user 42 logged in from 10.0.0.1") == \
        template_id("user 7 logged in from 192.168.1.20")
    assert template_id("user 42 logged in") != template_id("user 42 logged out")


def test_protobuf_record_becomes_event() -> None:
    record = LogRecord(time_unix_nano=NOW - 5, severity_text="warning",
                       body=AnyValue(kvlist_value=KeyValueList(values={
                           "message": AnyValue(string_value="cache miss key=a1"),
                           "shard": AnyValue(int_value=3)})),
                       resource=Resource(service_name="api", host="h1", attributes={
                           "deployment.environment": AnyValue(string_value="prod")}),
                       attributes={"tags": AnyValue(string_value="x")})
    out = normalize(raw(bytes(record), {"content-type": PROTO, "laas-tenant-id": b"7",
                                        "laas-tenant": b"acme", "laas-source": b"gateway"}),
                    now_ns=NOW)
    assert not out.dead
    (event,) = out.events
    assert (event.tenant_id, event.tenant, event.service, event.host) == ("7", "acme", "api", "h1")
    assert (event.severity, event.severity_number, event.time) == ("WARN", 13, NOW - 5)
    assert event.message == "cache miss key=a1" and event.source == "gateway"
    assert event.attributes == {"shard": 3, "tags": "x", "key": "a1",
                                "resource.deployment.environment": "prod"}
    assert event.doc_id() == "p.logs.raw/1/3" and event.format == "protobuf"
    assert LogEvent.from_json(event.to_json()) == event


def test_log_batch_numbers_its_records_and_isolates_empty_ones() -> None:
    """The gateway's format: one `LogBatch` per request and service; the batch's resource is
    the default, each event's size is its record's, an empty record is a dead letter of its
    own bytes."""
    empty = LogRecord(time_unix_nano=NOW - 1)
    batch = LogBatch(records=[
        LogRecord(time_unix_nano=NOW - 2, body=AnyValue(string_value="first")),
        empty,
        LogRecord(body=AnyValue(string_value="own"), resource=Resource(service_name="db")),
    ], resource=Resource(service_name="api", host="h1"))
    out = normalize(raw(bytes(batch), {"content-type": BATCH, "laas-tenant-id": b"7"}),
                    now_ns=NOW)
    assert [e.doc_id() for e in out.events] == ["p.logs.raw/1/3/1", "p.logs.raw/1/3/3"]
    assert [(e.message, e.service, e.host) for e in out.events] == [
        ("first", "api", "h1"), ("own", "db", "")]
    assert out.events[0].size == len(bytes(LogRecord(
        time_unix_nano=NOW - 2, body=AnyValue(string_value="first"),
        resource=Resource(service_name="api", host="h1"))))
    (dead,) = out.dead
    assert dead.reason == "empty" and dead.raw == RawPosition("p.logs.raw", 1, 3, 2)
    assert LogRecord().parse(dead.value) == LogRecord(
        time_unix_nano=NOW - 1, resource=Resource(service_name="api", host="h1"))
    broken = normalize(raw(b"\x0a\x05ab", {"content-type": BATCH, "laas-tenant-id": b"7"}),
                       now_ns=NOW)
    assert not broken.events and [d.reason for d in broken.dead] == ["undecodable"]
    assert broken.dead[0].detail.startswith("not a laas.v1.LogBatch")
    none = normalize(raw(bytes(LogBatch(batch_id=1)), {"content-type": BATCH,
                                                       "laas-tenant-id": b"7"}), now_ns=NOW)
    assert [d.reason for d in none.dead] == ["invalid_record"]


def test_json_array_numbers_its_records_and_isolates_bad_ones() -> None:
    value = json.dumps([{"message": "a"}, "oops", {"msg": '{"level":"error","k":{"n":1}}'}])
    out = normalize(raw(value.encode()), now_ns=NOW)
    assert [e.doc_id() for e in out.events] == ["p.logs.raw/1/3/1", "p.logs.raw/1/3/3"]
    assert out.events[1].severity == "ERROR" and out.events[1].attributes == {"k.n": 1}
    (dead,) = out.dead
    assert dead.reason == "invalid_record" and dead.raw == RawPosition("p.logs.raw", 1, 3, 2)
    assert DeadLetter.from_json(dead.to_json()) == dead


def test_observed_time_when_the_line_has_none_or_a_bad_one() -> None:
    (e,) = normalize(raw(b"hello"), now_ns=NOW + 10**9).events
    assert e.time == e.observed_time == NOW // 10**6 * 10**6
    (f,) = normalize(raw(b'{"body": "m", "timeUnixNano": 1}'), now_ns=NOW).events
    assert f.time == 1  # an explicit epoch time is kept


@pytest.mark.parametrize("value,headers,reason", [
    (b"x", {}, "missing_tenant"),
    (b"", None, "empty"),
    (b"   ", None, "empty"),
    (b"\xff\xfe", None, "not_utf8"),
    (b"{oops", {"laas-tenant-id": b"7", "content-type": b"application/json"}, "invalid_json"),
    (b'{"timeUnixNano": "soon"}', None, "invalid_record"),
    (b"{}", None, "empty"),
])
def test_dead_letters(value: bytes, headers: dict[str, bytes] | None, reason: str) -> None:
    out = normalize(raw(value, headers), now_ns=NOW)
    assert not out.events and [d.reason for d in out.dead] == [reason]
    assert out.dead[0].value == value and out.dead[0].raw.offset == 3


def test_broken_json_without_content_type_is_a_text_line() -> None:
    (e,) = normalize(raw(b"{oops"), now_ns=NOW).events
    assert e.message == "{oops"


def test_api_key_binds_the_tenant() -> None:
    key = {"laas-api-key": b"lk_secret"}
    owner = Principal("9", "beta", "ingest")
    (e,) = normalize(raw(b"hi", key), owner, now_ns=NOW).events
    assert (e.tenant_id, e.tenant) == ("9", "beta")
    assert normalize(raw(b"hi", key), None, now_ns=NOW).dead[0].reason == "unknown_api_key"
    reader = Principal("9", "beta", "read")
    assert normalize(raw(b"hi", key), reader, now_ns=NOW).dead[0].reason == "forbidden_api_key"
    forged = {**key, "laas-tenant-id": b"7"}
    dead = normalize(raw(b"hi", forged), owner, now_ns=NOW).dead[0]
    assert dead.reason == "tenant_mismatch" and "laas-api-key" not in dead.headers


def test_a_tenant_header_is_trusted_only_with_the_ingest_signature() -> None:
    """issue 21: `kcat -H laas-tenant-id=26` put a record into another tenant's search."""
    forged = RawMessage("p.logs.raw", 1, 3, NOW // 10**6, b"x/s", b'{"message": "x"}',
                        {"laas-tenant-id": b"26", "content-type": b"application/json"})
    dead = normalize(forged, now_ns=NOW)
    assert not dead.events and [d.reason for d in dead.dead] == ["unsigned_tenant_header"]
    assert not normalize_with(raw(b"hi"), now_ns=NOW).events  # no verifier: nothing trusted
    other = Stamps(b"another-secret")  # a stamp signed with another secret
    signed_elsewhere = dict(other.sign(b"k", b"hi", [("laas-tenant-id", b"7")]))
    assert normalize(RawMessage("p.logs.raw", 1, 3, 0, b"k", b"hi", signed_elsewhere),
                     now_ns=NOW).dead[0].reason == "unsigned_tenant_header"
    good = raw(b"hi")
    for changed in ({**good.headers, "laas-tenant-id": b"8"},  # the stamp moved to a tenant
                    {**good.headers, "laas-batch-index": b"3"}):  # or a header added
        moved = RawMessage("p.logs.raw", 1, 3, 0, b"k", b"hi", changed)
        assert normalize(moved, now_ns=NOW).dead[0].reason == "unsigned_tenant_header"
    assert normalize(RawMessage("p.logs.raw", 1, 3, 0, b"k", b"other value", good.headers),
                     now_ns=NOW).dead[0].reason == "unsigned_tenant_header"
    (kept,) = normalize(good, now_ns=NOW).events
    assert kept.tenant_id == "7"
    rotated = Stamps(b"new-secret", previous=[b"unit-test-secret"])  # after a key rotation
    assert normalize_with(good, now_ns=NOW, stamps=rotated).events


def test_attribute_cap() -> None:
    from app.pipeline.normalize import Limits

    value = json.dumps({"message": "m", **{f"a{i}": i for i in range(50)}}).encode()
    (e,) = normalize(raw(value), now_ns=NOW, limits=Limits(max_attributes=10)).events
    assert len(e.attributes) == 11 and e.attributes["laas.dropped_attributes"] == "40"


headers = st.dictionaries(st.sampled_from(["laas-tenant-id", "laas-tenant", "content-type",
                                           "laas-source", "laas-service"]),
                          st.one_of(st.binary(max_size=20),
                                    st.sampled_from([b"7", PROTO, b"application/json"])))
values = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(
                     st.sampled_from(["message", "msg", "level", "ts", "time", "body",
                                      "attributes", "timeUnixNano", "severityNumber", "x"]),
                     c, max_size=5), max_leaves=20).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda r: bytes(r), st.builds(
        LogRecord, time_unix_nano=st.integers(0, 2**64 - 1),
        severity_number=st.integers(-5, 40), severity_text=st.text(max_size=10),
        body=st.builds(AnyValue, string_value=st.text(max_size=50)))),
)


@settings(max_examples=400, deadline=None)
@given(value=values, hdrs=headers, ts=st.integers(-10, 2**62))
def test_normalize_never_raises(value: bytes, hdrs: dict[str, bytes], ts: int) -> None:
    message = RawMessage("t", 0, 1, ts, None, value, hdrs)
    out = normalize(message, now_ns=NOW)
    assert len(out.events) + len(out.dead) >= 1
    for event in out.events:
        assert 0 < event.time < 2**63 and event.tenant_id
        assert LogEvent.from_json(event.to_json()) == event == LogEvent(**event.__dict__)
    for dead in out.dead:
        assert dead.reason != "internal_error", dead.detail
        assert dead.value == value


def test_lone_surrogate_escape_is_a_dead_letter_and_its_neighbours_survive() -> None:
    # json.loads accepts "\ud800"; no UTF-8 writer can write it, so the event could never be
    # sent on (it used to crash the normalize agent: a poison pill from any direct producer).
    value = b'[{"message": "fine \\u00e9"}, {"message": "bad \\ud800"}, {"msg": "\\ud83d\\ude00"}]'
    result = normalize(raw(value), now_ns=NOW)
    assert [e.message for e in result.events] == ["fine \u00e9", "\U0001f600"]
    assert all(e.to_json() for e in result.events)
    (dead,) = result.dead
    assert dead.reason == "invalid_record" and dead.raw.index == 2
    assert "surrogate" in dead.detail


async def test_a_failing_batch_is_retried_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch step that raises (FINDINGS #16: a table write before Kafka lists the new
    changelog) is retried after a back-off instead of crashing the agent."""
    from agents import normalize as stage

    sleeps: list[float] = []

    async def no_sleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr(stage.asyncio, "sleep", no_sleep)
    calls = []

    async def step() -> None:
        calls.append(1)
        if len(calls) < 4:
            raise RuntimeError("PartitionsMismatch")

    before = stage.METRICS.value("laas_stage_retries_total", stage="normalize")
    await stage.until_done(step, delay=0.5, max_delay=1.5)
    assert len(calls) == 4 and sleeps == [0.5, 1.0, 1.5]
    assert stage.METRICS.value("laas_stage_retries_total", stage="normalize") == before + 3
