"""Property tests (hypothesis): ingest validators, conversions, JSON and protobuf forms."""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest.convert import ConversionError, from_any, record_from_json, to_any
from app.ingest.errors import RateLimited, RecordRejected
from app.ingest.ratelimit import RateLimiter
from app.ingest.validate import (
    NS,
    Limits,
    severity_number_for,
    severity_text_for,
    validate_record,
)
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
    assert record_from_json(json.loads(record.to_json())) == record


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
    r = record_from_json({"message": "x", "attributes": {"a": "\ud800"}})
    try:
        validate_record(r, 0, LIMITS, NOW)
    except RecordRejected as exc:
        assert exc.field == "attributes.a" and "UTF-8" in exc.reason
    else:
        raise AssertionError("lone surrogate accepted")


@pytest.mark.parametrize(("value", "field"), [
    ({"intValue": str(2**63)}, "intValue"),
    ({"intValue": -(2**63) - 1}, "intValue"),
    ({"bytesValue": "!!!"}, "bytesValue"),
    ({"arrayValue": {"values": [{"intValue": 2**70}]}}, "intValue"),
    ({"kvlistValue": {"values": {"k": {"bytesValue": "%%"}}}}, "bytesValue"),
])
def test_anyvalue_json_past_int64_or_not_base64_is_refused(value: object, field: str) -> None:
    """Both converters refuse it by name (betterproto wrapped the int and the upb path decoded
    bad base64 to other bytes); the in-range neighbours are kept."""
    from app.ingest.jsonpb import pb_record_from_json

    doc = {"body": {"stringValue": "x"}, "attributes": {"a": value}}
    for convert in (record_from_json, pb_record_from_json):
        with pytest.raises(ConversionError) as caught:
            convert(doc)
        assert caught.value.field == field
    kept = {"body": {"stringValue": "x"},
            "attributes": {"a": {"intValue": str(2**63 - 1)}, "b": {"bytesValue": "aGk="}}}
    record = pb_record_from_json(kept)
    assert record.attributes["a"].int_value == 2**63 - 1
    assert record.attributes["b"].bytes_value == b"hi"


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5))
def test_shorthand_never_crashes(doc: dict[str, object]) -> None:
    try:
        record_from_json(doc)
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
    from app.ingest.wire import encode, pb

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


# --- the upb JSON fast path (app.ingest.jsonpb) against the reference converter ----------------

def _outcome(convert: Callable[[object], object], doc: object) -> object:
    """What a converter makes of `doc`: the record as a dict, or the error's field and reason."""
    from app.ingest.wire import encode

    try:
        record = convert(copy.deepcopy(doc))
    except ConversionError as exc:
        return ("error", exc.field, exc.reason)
    try:
        data = encode(record)
    except (ValueError, TypeError, OverflowError, struct.error) as exc:
        # e.g. a lone surrogate, a time past 2**64: both must fail alike
        return ("unencodable", type(exc).__name__)
    return LogRecord().parse(data).to_dict()


def _same_as_reference(doc: object) -> None:
    from app.ingest.jsonpb import pb_record_from_json

    assert _outcome(pb_record_from_json, doc) == _outcome(record_from_json, doc)


shorthand_keys = st.sampled_from(["message", "msg", "level", "ts", "timestamp", "time",
                                  "service", "host", "trace_id", "span_id", "attributes",
                                  "user", "n", ""])
shorthand_values = st.one_of(
    json_values, st.sampled_from(["warn", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00",
                                  "5b8efff798038103d269b633813fc60c", "051581bf3cb55c13",
                                  "AAECAwQFBgc=", "1767225600000", 1767225600.5, 17, 99, -3]))


@given(st.dictionaries(shorthand_keys, shorthand_values, max_size=7))
@settings(max_examples=400, deadline=None)
def test_fast_json_path_matches_reference_shorthand(doc: dict[str, object]) -> None:
    _same_as_reference(doc)


@given(records)
@settings(max_examples=300, deadline=None)
def test_fast_json_path_matches_reference_full_form(record: LogRecord) -> None:
    _same_as_reference(json.loads(record.to_json()))
    _same_as_reference(record.to_dict())


record_keys = st.sampled_from(["timeUnixNano", "observedTimeUnixNano", "severityNumber",
                               "severityText", "body", "attributes", "resource", "traceId",
                               "spanId", "flags", "scope", "eventName",
                               "droppedAttributesCount"])
any_json = st.recursive(
    json_values,
    lambda inner: st.dictionaries(st.sampled_from(["stringValue", "intValue", "boolValue",
                                                   "doubleValue", "bytesValue", "arrayValue",
                                                   "kvlistValue", "values"]),
                                  inner, max_size=2),
    max_leaves=8)
full_values = st.one_of(
    any_json,
    st.sampled_from(["SEVERITY_NUMBER_WARN", "warning", "nope", "13", "AAECAwQFBgc=",
                     "5b8efff798038103d269b633813fc60c", "2026-01-01T00:00:00Z", 2**64, -1,
                     2**31, {"serviceName": "api", "host": "h", "schemaUrl": "u"},
                     {"service_name": "api"}, {"name": "n", "attributes": {"a": 1}},
                     {"attributes": {"a": {"intValue": "7"}, "b": [1, "x"]}},
                     {"droppedAttributesCount": 3, "foo": 1}]))


@given(st.dictionaries(record_keys, full_values, min_size=1, max_size=6))
@settings(max_examples=400, deadline=None)
def test_fast_json_path_matches_reference_on_odd_full_forms(doc: dict[str, object]) -> None:
    _same_as_reference(doc)


def test_fast_json_path_builds_upb_records_for_plain_input() -> None:
    from app.ingest.jsonpb import pb_record_from_json
    from app.ingest.wire import is_pb

    short = pb_record_from_json({"message": "hi", "level": "warn", "ts": 1767225600,
                                 "service": "api", "host": "h", "user": "u1"})
    full = pb_record_from_json(json.loads(LogRecord(
        severity_number=13, body=AnyValue(string_value="x"),
        attributes={"n": AnyValue(int_value=3)},
        resource=Resource(service_name="api")).to_json()))
    assert is_pb(short) and is_pb(full)
    assert (short.body.string_value, short.severity_text, short.time_unix_nano) == \
        ("hi", "warn", 1767225600 * NS)
    assert (short.resource.service_name, short.attributes["user"].string_value) == ("api", "u1")
    assert (full.severity_number, full.attributes["n"].int_value) == (13, 3)


def test_fast_json_path_errors_name_the_field() -> None:
    from app.ingest.jsonpb import pb_record_from_json

    for doc, field in (({"message": "x", "ts": "yesterday"}, "ts"),
                       ({"message": "x", "level": 1.5}, "level"),
                       ({"body": "x", "severityNumber": "loud"}, "severityNumber"),
                       ({"body": "x", "colour": 1}, "colour"), ([1], "record")):
        try:
            pb_record_from_json(doc)
        except ConversionError as exc:
            assert exc.field == field, (doc, exc)
        else:
            raise AssertionError(f"{doc} accepted")
