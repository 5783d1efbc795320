"""The common-form filler of OTLP/JSON records (`jsonpb._fill_common`) makes exactly the record
`jsonpb._otlp_record` makes, or declines: it never accepts what `_otlp_record` refuses or
hands to the reference converter, and never fills a record differently."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest import jsonpb
from app.ingest.wire import pb

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**65, 2**65), st.floats(allow_nan=False),
    st.text(max_size=6), st.sampled_from(["", "12", " 7 ", "1_0", "-1", "18446744073709551616",
                                          "00112233445566778899aabbccddeeff", "0011",
                                          "zz", "\ud800", "INFO"]))
TEXT = st.text(max_size=6)  # lone surrogates come as odd values (SCALARS)
STRING_VALUE = st.builds(lambda t: {"stringValue": t}, TEXT)
ANY_VALUES = st.one_of(
    STRING_VALUE,
    st.dictionaries(st.sampled_from(["stringValue", "intValue", "boolValue"]), SCALARS,
                    max_size=2),
    SCALARS, st.lists(SCALARS, max_size=2))
GOOD_PAIR = st.fixed_dictionaries({"key": st.one_of(st.sampled_from(["a", "b", ""]), TEXT),
                                   "value": STRING_VALUE})
PAIRS = st.lists(st.one_of(
    GOOD_PAIR,
    st.fixed_dictionaries({"key": st.sampled_from(["a", "b", "", "\ud800"]),
                           "value": ANY_VALUES}),
    st.dictionaries(st.sampled_from(["key", "value", "x"]), SCALARS, max_size=3),
    SCALARS), max_size=3)
NUMBERS = st.one_of(st.integers(0, 2**64), st.integers(0, 2**64).map(str))
HEX = st.binary(max_size=16).map(bytes.hex)
GOOD = {"timeUnixNano": NUMBERS, "observedTimeUnixNano": NUMBERS,
        "severityNumber": st.integers(-2**31 - 1, 2**31), "severityText": TEXT,
        "body": STRING_VALUE, "attributes": st.lists(GOOD_PAIR, max_size=3),
        "traceId": HEX, "spanId": HEX,
        "flags": st.integers(0, 2**32), "droppedAttributesCount": st.integers(0, 2**32),
        "eventName": TEXT}
ODD = st.one_of(SCALARS, ANY_VALUES, PAIRS)
GOOD_RECORDS = st.fixed_dictionaries({}, optional=GOOD)
RECORDS = st.one_of(
    GOOD_RECORDS,
    st.builds(lambda doc, key, value: {**doc, key: value}, GOOD_RECORDS,  # one odd value
              st.sampled_from([*GOOD, "time_unix_nano", "other"]), ODD),
    st.dictionaries(st.sampled_from([*GOOD, "time_unix_nano", "other"]), ODD, max_size=4))


def _holder() -> Any:
    holder = pb.LogRecord(resource=pb.Resource(service_name="svc"), scope=pb.Scope(name="s"))
    holder.scope.SetInParent()
    return holder


def _check(doc: object) -> None:
    holder = _holder()
    record = jsonpb._copies(holder, 1)[0]
    if not jsonpb._fill_common(record, doc):
        return
    reference = jsonpb._otlp_record(doc, holder.SerializeToString())  # must not raise
    assert record.SerializeToString(deterministic=True) == \
        reference.SerializeToString(deterministic=True), doc
    assert record == reference


@settings(max_examples=600, deadline=None)
@given(RECORDS)
def test_common_filler_agrees_with_the_record_reader(doc: dict[str, Any]) -> None:
    _check(doc)


def test_common_forms_are_filled_and_odd_ones_declined() -> None:
    plain = {"timeUnixNano": "1796505637277087886", "observedTimeUnixNano": 5,
             "severityNumber": 9, "severityText": "INFO", "body": {"stringValue": "GET /"},
             "attributes": [{"key": "user", "value": {"stringValue": "u1"}},
                            {"key": "b", "value": {"stringValue": ""}}],
             "traceId": "00112233445566778899aabbccddeeff", "spanId": "0011223344556677",
             "flags": 1, "droppedAttributesCount": 2, "eventName": "e"}
    record = jsonpb._copies(_holder(), 1)[0]
    assert jsonpb._fill_common(record, plain)
    assert dict(record.attributes) == {"user": pb.AnyValue(string_value="u1"),
                                       "b": pb.AnyValue(string_value="")}
    assert (record.time_unix_nano, record.trace_id.hex(), record.flags) == (
        1796505637277087886, "00112233445566778899aabbccddeeff", 1)
    assert record.resource.service_name == "svc" and record.scope.name == "s"
    _check(plain)
    odds: list[object] = [
        {"attributes": [{"key": "a", "value": {"stringValue": "x"}},
                        {"key": "a", "value": {"stringValue": "y"}}]},  # a duplicate key
        {"attributes": [{"key": "n", "value": {"intValue": "3"}}]},
        {"body": {"stringValue": "\ud800"}}, {"body": None}, {"traceId": "zz"},
        {"timeUnixNano": 1.5}, {"severityNumber": -1}, {"severityNumber": "INFO"},
        {"flags": 2**32}, {"time_unix_nano": 1}, []]
    for odd in odds:
        assert not jsonpb._fill_common(jsonpb._copies(_holder(), 1)[0], odd), odd
        _check(odd)
