"""The OTLP/JSON reader (`app.ingest.jsonpb.pb_records_from_otlp_json`, the one reader of
OTLP/JSON exports) reads valid OTLP/JSON as protobuf's own proto3 JSON parser
(`json_format.ParseDict`) reads it, but for trace and span ids, which OTLP/JSON writes in hex
where proto3 JSON writes base64: the records are those the protobuf encoding of ParseDict's
message gives (`convert.otlp_records`), in either field spelling, with int64s as numbers or
text, enums by name or number, and nulls for defaults. Unreadable parts are refused naming
them; unknown fields are ignored, as the OTLP specification asks of OTLP/JSON receivers."""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict, ParseDict
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from app.ingest.convert import ConversionError, otlp_records
from app.ingest.jsonpb import pb_records_from_otlp_bytes, pb_records_from_otlp_json

TEXT = st.text(max_size=8)
KEYS = st.one_of(st.sampled_from(["a", "b", "service.name", "host.name", ""]), TEXT)
LEAVES = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), TEXT),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-2**63, 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=False)),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=8)),
    st.just(AnyValue()))


def _pairs(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[list[KeyValue]]:
    return st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v), KEYS, children), max_size=3)


ANY = st.recursive(LEAVES, lambda children: st.one_of(
    st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)),
              st.lists(children, max_size=3)),
    st.builds(lambda kvs: AnyValue(kvlist_value=KeyValueList(values=kvs)), _pairs(children))),
    max_leaves=8)
U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)
RECORD = st.builds(
    LogRecord, time_unix_nano=U64, observed_time_unix_nano=U64,
    severity_number=st.one_of(st.integers(0, 24), st.integers(-2**31, 2**31 - 1)),
    severity_text=TEXT, body=st.one_of(st.none(), ANY), attributes=_pairs(ANY),
    dropped_attributes_count=U32, flags=U32,
    trace_id=st.one_of(st.just(b""), st.binary(min_size=16, max_size=16)),
    span_id=st.one_of(st.just(b""), st.binary(min_size=8, max_size=8)), event_name=TEXT)
REQUEST = st.builds(
    lambda rls: ExportLogsServiceRequest(resource_logs=rls),
    st.lists(st.builds(
        ResourceLogs, resource=st.one_of(st.none(), st.builds(
            Resource, attributes=_pairs(LEAVES), dropped_attributes_count=U32)),
        scope_logs=st.lists(st.builds(
            ScopeLogs, scope=st.one_of(st.none(), st.builds(
                InstrumentationScope, name=TEXT, version=TEXT, attributes=_pairs(LEAVES),
                dropped_attributes_count=U32)),
            log_records=st.lists(RECORD, max_size=3), schema_url=TEXT), max_size=2),
        schema_url=TEXT), max_size=2))

IDS = ("traceId", "spanId", "trace_id", "span_id")
INT64S = ("timeUnixNano", "observedTimeUnixNano", "intValue", "time_unix_nano",
          "observed_time_unix_nano", "int_value")
ENUMS = ("severityNumber", "severity_number")
RECORD_FIELDS = ("severityText", "flags", "eventName", "body", "traceId")


def _snake(key: str) -> str:
    return re.sub("([A-Z])", r"_\1", key).lower()


def _otlp(doc: object, draw: st.DrawFn, numbers: dict[str, int]) -> object:
    """ParseDict's input as OTLP/JSON: hex ids; and, as drawn, the proto field name for a
    key, an int64 as a number, an enum by number, a field's null or a default written null."""
    if isinstance(doc, list):
        return [_otlp(v, draw, numbers) for v in doc]
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in IDS:
            value = base64.b64decode(value).hex()
        elif key in INT64S and draw(st.booleans()):
            value = int(value)
        elif key in ENUMS and isinstance(value, str) and draw(st.booleans()):
            value = numbers[value]
        else:
            value = _otlp(value, draw, numbers)
        if key not in ("key", "value", "values") and draw(st.booleans()):
            key = _snake(key)
        out[key] = value
    if "timeUnixNano" in doc or "time_unix_nano" in doc or "body" in doc:  # a LogRecord
        for key in RECORD_FIELDS:
            if key not in doc and _snake(key) not in doc and draw(st.booleans()):
                out[key] = None
    return out


@st.composite
def exports(draw: st.DrawFn) -> tuple[ExportLogsServiceRequest, dict[str, Any]]:
    request = draw(REQUEST)
    numbers = {v.name: v.number
               for v in LogRecord.DESCRIPTOR.fields_by_name["severity_number"].enum_type.values}
    doc = MessageToDict(request, preserving_proto_field_name=draw(st.booleans()))
    otlp = _otlp(doc, draw, numbers)
    assert isinstance(otlp, dict)
    return request, otlp


def _bytes(records: list[Any]) -> list[bytes]:
    return [r.SerializeToString(deterministic=True) for r in records]


def _with_base64_ids(doc: object) -> object:
    """OTLP/JSON → proto3 JSON: hex ids to base64 (for ParseDict)."""
    if isinstance(doc, list):
        return [_with_base64_ids(v) for v in doc]
    if not isinstance(doc, dict):
        return doc
    return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in IDS and v is not None
            else _with_base64_ids(v) for k, v in doc.items()}


@settings(max_examples=300, deadline=None)
@given(exports())
def test_otlp_json_is_read_as_parse_dict_reads_it(drawn: tuple[Any, dict[str, Any]]) -> None:
    request, doc = drawn
    parsed = ParseDict(_with_base64_ids(copy.deepcopy(doc)), ExportLogsServiceRequest())
    assert parsed == request  # the document is valid proto3 JSON (ids aside) of the request
    expected = _bytes(otlp_records(parsed.SerializeToString()))
    assert _bytes(pb_records_from_otlp_json(doc)) == expected
    assert _bytes(pb_records_from_otlp_bytes(json.dumps(doc).encode())) == expected


def _export(*records: object, resource: object = None, scope: object = None) -> dict[str, Any]:
    scope_logs: dict[str, Any] = {"logRecords": list(records)}
    if scope is not None:
        scope_logs["scope"] = scope
    resource_logs: dict[str, Any] = {"scopeLogs": [scope_logs]}
    if resource is not None:
        resource_logs["resource"] = resource
    return {"resourceLogs": [resource_logs]}


def test_unknown_fields_are_ignored_and_nulls_are_defaults() -> None:
    doc = _export({"body": {"stringValue": "a", "futureValue": 1}, "futureField": [1],
                   "severityText": None, "attributes": [{"key": "k", "value": None,
                                                         "extra": 2}]},
                  resource={"attributes": None, "entityRefs": [{"type": "t"}], "newer": 1},
                  scope={"name": "s", "version": None})
    doc["futureEnvelope"] = {}
    doc["resourceLogs"][0]["futureField"] = 1
    (record,) = pb_records_from_otlp_json(doc)
    assert record.body.string_value == "a" and record.severity_text == ""
    assert record.attributes["k"].WhichOneof("value") is None
    assert record.scope.name == "s" and record.resource.service_name == "unknown_service"


@pytest.mark.parametrize(("record", "error"), [
    ({"traceId": "not hex"}, "traceId: 'not hex' is not a hex id"),
    ({"spanId": 5}, "spanId: 5 is not a hex id"),
    ({"timeUnixNano": "soon"}, 'timeUnixNano: "soon" is not an integer'),
    ({"timeUnixNano": -1}, "timeUnixNano: -1 is outside the range of a time"),
    ({"severityNumber": "BOGUS"}, "severityNumber: 'BOGUS' is not a severity"),
    ({"severity_number": 2**31}, "severityNumber: 2147483648 is outside the int32 range"),
    ({"flags": -1}, "flags: -1 is not a uint32"),
    ({"severityText": 3}, "severityText: a string expected"),
    ({"time_unix_nano": 1, "timeUnixNano": 2}, "time_unix_nano: given twice"),
    ({"body": {"intValue": "seven"}}, 'record: body: intValue: "seven" is not an integer'),
    ({"body": 5}, "record: body: 5 is not an AnyValue object"),
    ({"body": {"stringValue": "a", "boolValue": True}},
     "record: body: one value expected, got stringValue, boolValue"),
    ({"body": {"doubleValue": "many"}}, 'record: body: doubleValue: "many" is not a number'),
    ({"body": {"bytesValue": "!!"}}, "record: body: bytesValue: not base64"),
    ({"body": {"arrayValue": {"values": [{"boolValue": "yes"}]}}},
     'record: body[0]: boolValue: "yes" is not true or false'),
    ({"attributes": [{"key": "m", "value": {"kvlistValue": {"values": [
        {"key": "n", "value": {"intValue": 2**63}}]}}}]},
     "record: attributes.m.n: intValue: 9223372036854775808 is outside the int64 range"),
    ({"attributes": [{"key": "s", "value": {"stringValue": "\ud800"}}]},
     "record: attributes.s: not valid UTF-8 (lone surrogate)"),
    ({"attributes": {"k": "v"}}, 'record: attributes: {"k": "v"} is not a list'),
    ({"attributes": [{"key": 1}]}, "record: attributes[0].key: 1 is not a string"),
    ([1], "record: [1] is not a LogRecord object"),
])
def test_a_bad_record_is_refused_alone_naming_its_field(record: object, error: str) -> None:
    good = {"body": {"stringValue": "kept"}}
    out = pb_records_from_otlp_json(_export(good, record, good))
    assert isinstance(out[1], ConversionError) and str(out[1]).startswith(error), out[1]
    assert [r.body.string_value for r in (out[0], out[2])] == ["kept", "kept"]
    data = json.dumps(_export(good, record, good)).encode()  # the orjson path says the same
    assert [str(r) if isinstance(r, Exception) else r for r in pb_records_from_otlp_bytes(data)
            ] == [str(r) if isinstance(r, Exception) else r for r in out]


@pytest.mark.parametrize(("doc", "error"), [
    ([1, 2], "request: an ExportLogsServiceRequest object expected"),
    ({"resourceLogs": 5}, "resourceLogs: 5 is not a list"),
    ({"resourceLogs": [3]}, "resourceLogs[0]: 3 is not an object"),
    ({"resourceLogs": [{"scopeLogs": {}}]}, "resourceLogs[0].scopeLogs: {} is not a list"),
    (_export(resource={"attributes": [{"key": "k", "value": {"intValue": "x"}}]}),
     'resourceLogs[0].resource.attributes.k: intValue: "x" is not an integer'),
    (_export(scope={"name": 5}), "resourceLogs[0].scopeLogs[0].scope.name: a string expected"),
    ({"resourceLogs": [{"schemaUrl": 1}]}, "resourceLogs[0].schemaUrl: a string expected"),
    ({"resourceLogs": [{"scopeLogs": [{"logRecords": 7}]}]},
     "resourceLogs[0].scopeLogs[0].logRecords: 7 is not a list"),
])
def test_a_bad_envelope_refuses_the_request_naming_the_part(doc: object, error: str) -> None:
    with pytest.raises(ConversionError) as caught:
        pb_records_from_otlp_json(doc)
    assert str(caught.value).startswith(error), caught.value
