"""Property tests (hypothesis): ingest validators, conversions, JSON and protobuf forms."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict, ParseDict
from hypothesis import given, settings
from hypothesis import strategies as st
from laas_client.values import to_any

from app.ingest.convert import ConversionError, from_any
from app.ingest.errors import RateLimited, RecordRejected
from app.ingest.jsonpb import pb_record_from_json
from app.ingest.ratelimit import RateLimiter
from app.ingest.validate import (
    NS,
    Limits,
    severity_number_for,
    severity_text_for,
    validate_record,
)
from app.ingest.wire import encode, pb
from app.settings import load_settings
from protos.laas.v1 import AnyValue, ArrayValue, KeyValueList, LogRecord, Resource, Scope

NOW = 1_800_000_000 * NS
LIMITS = Limits.from_settings(load_settings())
int64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=20)

scalars = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), text),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), int64),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=False)),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=10)),
)
any_values = st.recursive(scalars, lambda inner: st.one_of(
    st.builds(lambda v: AnyValue(array_value=ArrayValue(values=v)), st.lists(inner, max_size=3)),
    st.builds(lambda v: AnyValue(kvlist_value=KeyValueList(values=v)),
              st.dictionaries(text, inner, max_size=3)),
), max_leaves=8)
attrs = st.dictionaries(text, any_values, max_size=5)
records = st.builds(
    LogRecord,
    time_unix_nano=st.integers(0, 2**64 - 1),
    observed_time_unix_nano=st.integers(0, 2**64 - 1),
    severity_number=st.integers(-5, 30),
    severity_text=text,
    body=any_values,
    attributes=attrs,
    dropped_attributes_count=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 2**32 - 1),
    trace_id=st.binary(max_size=17),
    span_id=st.binary(max_size=9),
    event_name=text,
    resource=st.builds(Resource, service_name=text, host=text, attributes=attrs),
    scope=st.builds(Scope, name=text, version=text, attributes=attrs),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text
    | st.floats(allow_nan=False, allow_infinity=False),
    # Non-empty keys: betterproto drops a map entry whose key and value are both empty
    # (validation refuses empty attribute keys anyway).
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(min_size=1, max_size=20), inner, max_size=3),
    max_leaves=10,
)


@given(records)
def test_protobuf_round_trip(record: LogRecord) -> None:
    assert LogRecord().parse(bytes(record)) == record


@given(records)
def test_json_round_trip(record: LogRecord) -> None:
    assert LogRecord().from_json(record.to_json()) == record
    # ...and the ingest JSON reader takes the same form.
    assert pb_record_from_json(json.loads(record.to_json())) == pb.LogRecord.FromString(
        bytes(record))


@given(json_values)
def test_any_value_round_trip(value: object) -> None:
    assert from_any(to_any(value)) == value
    assert from_any(AnyValue().parse(bytes(to_any(value)))) == value


@given(records, st.integers(0, 1000))
@settings(max_examples=300)
def test_validate_rejects_by_index_or_normalises(record: LogRecord, index: int) -> None:
    try:
        out = validate_record(record, index, LIMITS, NOW)
    except RecordRejected as exc:
        assert exc.index == index and exc.field and exc.reason
        return
    assert NOW - LIMITS.max_past_ns <= out.time_unix_nano <= NOW + LIMITS.max_future_ns
    assert 0 <= out.severity_number <= 24
    assert out.resource.service_name
    assert len(out.trace_id) in (0, 16) and len(out.span_id) in (0, 8)
    # Normalisation is idempotent.
    again = validate_record(LogRecord().parse(bytes(out)), index, LIMITS, NOW)
    assert again == out


@given(st.integers(NOW - LIMITS.max_past_ns, NOW + LIMITS.max_future_ns),
       st.sampled_from(["warn", "WARNING", "Error", "info", "debug", "fatal", "trace"]))
def test_valid_records_are_kept(t: int, level: str) -> None:
    out = validate_record(LogRecord(time_unix_nano=t, severity_text=level), 0, LIMITS, NOW)
    assert out.time_unix_nano == t and out.observed_time_unix_nano == NOW
    assert out.severity_number == severity_number_for(level) > 0
    assert out.severity_text == level


def test_missing_time_is_observed_time() -> None:
    out = validate_record(LogRecord(severity_number=17), 0, LIMITS, NOW)
    assert out.time_unix_nano == out.observed_time_unix_nano == NOW
    assert out.severity_text == "ERROR"
    assert out.resource.service_name == "unknown_service"


def test_service_and_host_are_lifted_from_resource_attributes() -> None:
    r = LogRecord(resource=Resource(attributes={"service.name": AnyValue(string_value="api"),
                                                "host.name": AnyValue(string_value="h")}))
    out = validate_record(r, 0, LIMITS, NOW)
    assert (out.resource.service_name, out.resource.host) == ("api", "h")
    assert out.resource.attributes == {}


@given(st.integers(1, 24))
def test_severity_names_round_trip(n: int) -> None:
    assert severity_number_for(severity_text_for(n)) == n


@given(st.text(max_size=3), st.integers(0, 10))
def test_limits_name_field_and_limit(key: str, extra: int) -> None:
    limits = Limits.from_settings(load_settings(ingest_max_key_length=5,
                                                ingest_max_value_length=8))
    r = LogRecord(attributes={"k" * (6 + extra): AnyValue(string_value=key)})
    try:
        validate_record(r, 3, limits, NOW)
    except RecordRejected as exc:
        assert exc.index == 3 and exc.field.startswith("attributes.") and "at most 5" in exc.reason
    else:
        raise AssertionError("long key accepted")


def test_lone_surrogate_is_rejected() -> None:
    """A upb record cannot hold one: the JSON reader refuses it, named as validation would
    name it (the answer to the client is the same as when validation refused it)."""
    r = LogRecord(attributes={"a": AnyValue(string_value="\ud800")})
    with pytest.raises(RecordRejected) as rejected:
        validate_record(r, 0, LIMITS, NOW)
    assert rejected.value.field == "attributes.a" and "UTF-8" in rejected.value.reason
    for doc, field in (
            ({"message": "x", "attributes": {"a": "\ud800"}}, "attributes.a"),
            ({"message": "x", "k\udfff": 2}, "attributes.k\udfff"),
            ({"message": {"a": ["ok", "\ud800"]}}, "body.a[1]"),
            ({"message": "x", "level": "\ud800", "service": "s"}, "severity_text"),
            ({"message": "x", "host": "\ud800"}, "resource.host"),
            ({"body": {"kvlistValue": {"values": {"k": {"arrayValue": {"values": [
                {"stringValue": "\ud800"}]}}}}}}, "body.k[0]"),
            ({"body": "x", "resource": {"attributes": {"\ud800": 1}}},
             "resource.attributes.\ud800"),
            ({"body": "x", "scope": {"name": "\ud800"}}, "scope.name"),
            ({"body": "x", "eventName": "\ud800"}, "event_name")):
        with pytest.raises(ConversionError) as refused:
            pb_record_from_json(doc)
        assert (refused.value.field, refused.value.reason) == (field, rejected.value.reason)


@pytest.mark.parametrize(("value", "field"), [
    ({"intValue": str(2**63)}, "intValue"),
    ({"intValue": -(2**63) - 1}, "intValue"),
    ({"bytesValue": "!!!"}, "bytesValue"),
    ({"arrayValue": {"values": [{"intValue": 2**70}]}}, "intValue"),
    ({"kvlistValue": {"values": {"k": {"bytesValue": "%%"}}}}, "bytesValue"),
])
def test_anyvalue_json_past_int64_or_not_base64_is_refused(value: object, field: str) -> None:
    """Refused by name (betterproto wrapped the int and decoded bad base64 to other bytes);
    the in-range neighbours are kept."""
    doc = {"body": {"stringValue": "x"}, "attributes": {"a": value}}
    with pytest.raises(ConversionError) as caught:
        pb_record_from_json(doc)
    assert caught.value.field == field
    kept = {"body": {"stringValue": "x"},
            "attributes": {"a": {"intValue": str(2**63 - 1)}, "b": {"bytesValue": "aGk="}}}
    record = pb_record_from_json(kept)
    assert record.attributes["a"].int_value == 2**63 - 1
    assert record.attributes["b"].bytes_value == b"hi"


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5))
def test_shorthand_never_crashes(doc: dict[str, object]) -> None:
    try:
        pb_record_from_json(doc)
    except ConversionError as exc:
        assert exc.field


@given(st.floats(1, 1000), st.lists(st.tuples(st.floats(0, 2), st.integers(1, 50)),
                                    max_size=40))
def test_token_bucket_never_exceeds_rate(rate: float, steps: list[tuple[float, int]]) -> None:
    clock = [0.0]
    limiter = RateLimiter(rate, clock=lambda: clock[0])
    granted = 0
    for dt, n in steps:
        clock[0] += dt
        try:
            limiter.check("t", n, None)
            granted += n
        except RateLimited as exc:
            assert exc.retry_after > 0
    # Capacity is one second of rate; a batch larger than it may overdraw by itself once.
    assert granted <= rate * (clock[0] + 1) + 50


@given(records, st.booleans(), st.booleans())
@settings(max_examples=300)
def test_upb_and_betterproto_validate_alike(
    record: LogRecord, fresh: bool, with_default: bool
) -> None:
    """The gateway's upb fast path (app.ingest.wire) accepts, rejects and normalises exactly
    as the betterproto path does."""

    if fresh:  # mostly inside the time window: exercise normalisation, not only rejection
        record.time_unix_nano = record.observed_time_unix_nano = 0
    default = Resource(service_name="batch-svc", host="h") if with_default else None
    data = bytes(record)
    outcomes: list[tuple[int, str, str] | dict[str, Any]] = []
    for message, res in ((LogRecord().parse(data), default),
                         (pb.LogRecord.FromString(data),
                          pb.Resource.FromString(bytes(default)) if default else None)):
        try:
            out = validate_record(message, 3, LIMITS, NOW, default_resource=res)
        except RecordRejected as exc:
            outcomes.append((exc.index, exc.field, exc.reason))
        else:
            # compared as dicts: betterproto's own == trips over unset oneof members
            outcomes.append(LogRecord().parse(encode(out)).to_dict())
    assert outcomes[0] == outcomes[1]


# --- the JSON reader (app.ingest.jsonpb) -------------------------------------------------------
# Valid proto3 JSON of a LogRecord is read as protobuf's own parser (json_format.ParseDict)
# reads it, in either field spelling, with defaults written out or null; the LaaS extensions
# and the shorthand are checked against explicit expectations.

def _with_nulls(doc: object, draw: st.DrawFn, top: bool = True) -> object:
    """`doc` with some fields (not map values or list items) set to null, and some absent
    fields written as null: proto3 JSON's spelling of a default."""
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict) and key not in ("attributes", "values"):
            value = _with_nulls(value, draw, False)
        out[key] = None if draw(st.booleans()) and draw(st.booleans()) else value
    for key, name in (("severityText", "severity_text"), ("flags", "flags"),
                      ("eventName", "event_name")) if top else ():
        if key not in out and name not in out and draw(st.booleans()):
            out[name if "trace_id" in out or "span_id" in out else key] = None
    return out


@st.composite
def proto3_json(draw: st.DrawFn) -> dict[str, Any]:
    record = pb.LogRecord.FromString(bytes(draw(records)))
    doc = MessageToDict(record, preserving_proto_field_name=draw(st.booleans()),
                        always_print_fields_with_no_presence=draw(st.booleans()))
    result = _with_nulls(doc, draw) if draw(st.booleans()) else doc
    assert isinstance(result, dict)
    return result


@given(proto3_json())
@settings(max_examples=300, deadline=None)
def test_json_reader_reads_proto3_json_as_protobuf_does(doc: dict[str, Any]) -> None:
    expected = ParseDict(copy.deepcopy(doc), pb.LogRecord())
    assert pb_record_from_json(doc) == expected


def test_json_reader_extensions_of_the_full_form() -> None:
    """Plain JSON values, hex ids, RFC 3339 times and severity names in the full form."""
    record = pb_record_from_json({
        "body": {"k": [1, "x", None]}, "attributes": {"n": 3, "s": {"stringValue": "v"}},
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "051581bf3cb55c13",
        "timeUnixNano": "2026-01-01T00:00:00Z", "observedTimeUnixNano": 1767225600.5,
        "severityNumber": "warning", "resource": {"service_name": "api"}})
    assert from_any(LogRecord().parse(encode(record)).body) == {"k": [1, "x", None]}
    assert (record.attributes["n"].int_value, record.attributes["s"].string_value) == (3, "v")
    assert record.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert record.span_id.hex() == "051581bf3cb55c13"
    assert record.time_unix_nano == 1767225600 * NS
    assert record.observed_time_unix_nano == 1767225600 * NS + NS // 2
    assert record.severity_number == 13 and record.resource.service_name == "api"


_TS: list[tuple[object, int | None]] = [
    (1767225600, 1767225600 * NS), (1767225600.5, 1767225600 * NS + NS // 2),
    (1767225600123, int(1767225600123 * 1e6)), ("1767225600", 1767225600),  # text: ns
    ("2026-01-01T00:00:00Z", 1767225600 * NS),
    ("2026-01-01T01:00:00.25+01:00", 1767225600 * NS + NS // 4),
    ("2026-01-01T00:00:00", None), ("yesterday", None), (True, None), (None, None), (-5, None),
    ([1], None), (10**30, None)]
plain = json_values.filter(lambda v: v is not None)


def _plain(value: object) -> object:
    """What `from_any` gives back for a plain JSON value (ints past int64 become text)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@given(message=st.none() | plain, msg=st.none() | plain,
       level=st.none() | st.sampled_from(["warn", "ERROR", 17, 99, 2**40, 1.5, True, [1]]),
       ts=st.none() | st.sampled_from(range(len(_TS))),
       time_key=st.sampled_from(["ts", "timestamp", "time"]),
       service=st.sampled_from([None, "api", 5]), host=st.sampled_from([None, "h", ["x"]]),
       trace=st.sampled_from([None, "5b8efff798038103d269b633813fc60c", "AAECAwQFBgc=", "z"]),
       attrs=st.none() | st.dictionaries(st.text(max_size=5), plain, max_size=3) | st.just([1]),
       extra=st.dictionaries(st.sampled_from(["user", "n", "", "message2"]), plain,
                             max_size=3))
@settings(max_examples=400, deadline=None)
def test_json_reader_shorthand(message: object, msg: object, level: object, ts: int | None,
                               time_key: str, service: object, host: object, trace: str | None,
                               attrs: object, extra: dict[str, object]) -> None:
    doc: dict[str, object] = {"message": message} if message is not None else {}
    for key, value in (("msg", msg), ("level", level), ("service", service), ("host", host),
                       ("trace_id", trace)):
        if value is not None:
            doc[key] = value
    if ts is not None:
        doc[time_key] = _TS[ts][0]
    if attrs is not None:
        doc["attributes"] = attrs
    doc.update(extra)
    if not ({"message", "msg", "level", time_key, "service", "host"} & doc.keys()):
        doc["message"] = "m"
    try:
        record = pb_record_from_json(copy.deepcopy(doc))
    except ConversionError as exc:
        # refused only for one of these, named by its key
        bad = {"level": level is not None and not isinstance(level, str) and (
                   not isinstance(level, int) or isinstance(level, bool)
                   or not -(2**31) <= level < 2**31),
               time_key: ts is not None and _TS[ts][1] is None,
               "service": service == 5, "host": host == ["x"],
               "traceId": trace == "z", "attributes": attrs == [1]}
        assert bad.get(exc.field), (doc, exc)
        return
    body = doc["message"] if "message" in doc else doc.get("msg")
    if body is None:
        assert not record.HasField("body")
    else:
        assert from_any(LogRecord().parse(encode(record)).body) == _plain(body)
    if isinstance(level, str):
        assert (record.severity_text, record.severity_number) == (level, 0)
    elif isinstance(level, int):
        assert (record.severity_text, record.severity_number) == ("", level)
    assert record.time_unix_nano == (_TS[ts][1] if ts is not None else 0)
    assert record.resource.service_name == (service or "")
    assert record.resource.host == (host or "")
    if trace == "5b8efff798038103d269b633813fc60c":
        assert record.trace_id.hex() == trace
    elif trace:
        assert record.trace_id == bytes(range(8))
    expected = dict(attrs) if isinstance(attrs, dict) else {}
    expected.update({k: v for k, v in doc.items() if k not in (
        "message", "msg", "level", "service", "host", "trace_id", "attributes", time_key)})
    got = {k: from_any(LogRecord().parse(encode(record)).attributes[k])
           for k in record.attributes}
    assert got == _plain(expected)


record_keys = st.sampled_from(["timeUnixNano", "observedTimeUnixNano", "severityNumber",
                               "severityText", "body", "attributes", "resource", "traceId",
                               "spanId", "flags", "scope", "eventName",
                               "droppedAttributesCount", "severity_text", "trace_id"])
any_json = st.recursive(
    json_values,
    lambda inner: st.dictionaries(st.sampled_from(["stringValue", "intValue", "boolValue",
                                                   "doubleValue", "bytesValue", "arrayValue",
                                                   "kvlistValue", "values", "string_value",
                                                   "int_value"]),
                                  inner, max_size=2),
    max_leaves=8)
full_values = st.one_of(
    any_json,
    st.sampled_from(["SEVERITY_NUMBER_WARN", "warning", "nope", "13", "AAECAwQFBgc=",
                     "5b8efff798038103d269b633813fc60c", "2026-01-01T00:00:00Z", 2**64, -1,
                     2**31, "NaN", {"serviceName": "api", "host": "h", "schemaUrl": "u"},
                     {"service_name": "api"}, {"name": "n", "attributes": {"a": 1}},
                     {"attributes": {"a": {"intValue": "7"}, "b": [1, "x"]}},
                     {"droppedAttributesCount": 3, "foo": 1}, {"values": [1, {"x": None}]}]))


@given(st.dictionaries(record_keys, full_values, min_size=1, max_size=6))
@settings(max_examples=400, deadline=None)
def test_json_reader_refuses_odd_full_forms_by_name(doc: dict[str, object]) -> None:
    """Any document is a record that serializes, or a `ConversionError` naming a field."""
    try:
        record = pb_record_from_json(copy.deepcopy(doc))
    except ConversionError as exc:
        assert exc.field and exc.reason
        return
    assert pb.LogRecord.FromString(record.SerializeToString()) == record


def test_json_reader_builds_upb_records() -> None:
    short = pb_record_from_json({"message": "hi", "level": "warn", "ts": 1767225600,
                                 "service": "api", "host": "h", "user": "u1"})
    full = pb_record_from_json(json.loads(LogRecord(
        severity_number=13, body=AnyValue(string_value="x"),
        attributes={"n": AnyValue(int_value=3)},
        resource=Resource(service_name="api")).to_json()))
    assert isinstance(short, pb.LogRecord) and isinstance(full, pb.LogRecord)
    assert (short.body.string_value, short.severity_text, short.time_unix_nano) == \
        ("hi", "warn", 1767225600 * NS)
    assert (short.resource.service_name, short.attributes["user"].string_value) == ("api", "u1")
    assert (full.severity_number, full.attributes["n"].int_value) == (13, 3)


@pytest.mark.parametrize(("doc", "field", "reason"), [
    ({"message": "x", "ts": "yesterday"}, "ts", "'yesterday' is not an RFC 3339 timestamp"),
    ({"message": "x", "level": 1.5}, "level",
     "a level name or an OpenTelemetry severity number"),
    ({"body": "x", "severityNumber": "loud"}, "severityNumber", "'loud' is not a severity"),
    ({"body": "x", "colour": 1}, "colour", "unknown field; a LogRecord has attributes, body, "
     "droppedAttributesCount, eventName, flags, observedTimeUnixNano, resource, scope, "
     "severityNumber, severityText, spanId, timeUnixNano, traceId"),
    ([1], "record", "a JSON object expected"),
    ({"body": "x", "flags": -1}, "flags", "-1 is not a uint32 (0 to 4294967295)"),
    ({"body": "x", "timeUnixNano": 2**64}, "timeUnixNano",
     "18446744073709551616 is outside the range of a time (0 to 2**64-1 ns since 1970)"),
    ({"body": "x", "severityNumber": 2**31}, "severityNumber",
     "2147483648 is outside the int32 range of a severity number"),
    ({"body": "x", "severityText": "a", "severity_text": "b"}, "severity_text",
     "given twice, as 'severityText' and as 'severity_text'"),
    ({"body": "x", "resource": {"foo": 1}}, "resource.foo",
     "unknown field; a resource has attributes, droppedAttributesCount, serviceName, host, "
     "schemaUrl"),
    ({"body": "x", "attributes": [1]}, "attributes", "an object expected"),
    ({"body": "x", "traceId": 5}, "traceId", "a hex or base64 string expected"),
    ({"body": {"arrayValue": {"values": [{"foo": 1}]}}}, "foo",
     "unknown field; an AnyValue has one of stringValue, boolValue, intValue, doubleValue, "
     "arrayValue, kvlistValue, bytesValue"),
    ({"body": {"arrayValue": {"values": [{"stringValue": "a", "intValue": 1}]}}}, "AnyValue",
     "one value expected, got stringValue, intValue"),
    ({"body": {"intValue": "x1"}}, "intValue", '"x1" is not an integer'),
    ({"body": {"boolValue": "yes"}}, "boolValue", '"yes" is not true or false'),
    ({"message": "x", "level": 2**40}, "level",
     "1099511627776 is outside the int32 range of a severity number"),
])
def test_json_reader_errors_name_the_field(doc: object, field: str, reason: str) -> None:
    with pytest.raises(ConversionError) as caught:
        pb_record_from_json(doc)
    assert (caught.value.field, caught.value.reason) == (field, reason)


@given(st.lists(records, max_size=3))
@settings(max_examples=100, deadline=None)
def test_shipper_sends_protobuf_records_as_they_are(batch: list[LogRecord]) -> None:
    """`laas send` hands the client's Shipper the JSON reader's upb records: over gRPC their
    bytes make the `LogBatch`, over HTTP their JSON reads back as the same record."""
    from laas_client.shipper import _batch, _json

    upb = [pb.LogRecord.FromString(bytes(r)) for r in batch]
    sent = _batch(upb).SerializeToString()
    assert pb.LogBatch.FromString(sent) == pb.LogBatch(records=upb)
    for record in upb:
        assert pb_record_from_json(json.loads(_json(record))) == record
