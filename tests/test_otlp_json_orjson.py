"""OTLP/JSON bodies parsed by orjson (`pb_records_from_otlp_bytes`) decode exactly as with the
stdlib's `json.loads` (`pb_records_from_otlp_json`): the same records, the same refusals and
the same errors, also where the two parsers differ (integers beyond 64 bits, NaN, a BOM,
UTF-16, lone surrogates, deep nesting); a plain export never reaches `json.loads`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.ingest import jsonpb
from app.ingest.jsonpb import pb_records_from_otlp_bytes, pb_records_from_otlp_json


def _export(records: str, resource: str = "{}") -> bytes:
    return ('{"resourceLogs": [{"resource": ' + resource + ', "scopeLogs": [{"scope": '
            '{"name": "s"}, "logRecords": [' + records + "]}]}]}").encode()


PLAIN = _export(
    '{"timeUnixNano": "1796505637277087886", "severityText": "INFO", "severityNumber": 9, '
    '"body": {"stringValue": "GET /a 200"}, "traceId": "00112233445566778899aabbccddeeff", '
    '"attributes": [{"key": "user", "value": {"stringValue": "u1"}}, '
    '{"key": "n", "value": {"intValue": "42"}}, {"key": "d", "value": {"doubleValue": 1.5}}, '
    '{"key": "m", "value": {"kvlistValue": {"values": [{"key": "k", "value": '
    '{"boolValue": true}}]}}}]}',
    '{"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]}')

BODIES = [
    PLAIN,
    _export('{"timeUnixNano": 18446744073709551616}, {"body": {"stringValue": "ok"}}'),
    _export('{"body": {"intValue": -9223372036854775809}}, '
            '{"body": {"doubleValue": 18446744073709551617}}'),
    _export('{"body": {"doubleValue": NaN}}, {"body": {"stringValue": "fine"}}'),
    _export('{"body": {"stringValue": "\\ud800"}}, {"body": {"stringValue": "fine"}}'),
    b"\xef\xbb\xbf" + PLAIN,
    PLAIN.decode().encode("utf-16"),
    _export('{"traceId": "zz"}, {"body": {"stringValue": "fine"}}'),
    _export('{"attributes": [{"key": "a", "value": {"stringValue": "x"}}, '
            '{"key": "a", "value": {"intValue": 3}}]}'),
    _export('{"body": {"stringValue": "a", "intValue": 1}}, {"body": "plain"}, {}'),
    _export('{"body": {"stringValue": ""}}, {"body": {}}, {"body": null}'),
    _export('{"body": ' + '{"arrayValue": {"values": [' * 300 + "]}}" * 300 + "}"),
    b"[1, 2]",
    b'{"resourceLogs": 5}',
    b"{not json",
    b"",
    b"[" * 100_000,
]


def _outcome(decode: Any, data: bytes) -> object:
    try:
        records = decode(data)
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return ("raised", type(exc).__name__, str(exc))
    return [("refused", str(r)) if isinstance(r, Exception)
            else ("record", r.SerializeToString(deterministic=True)) for r in records]


@pytest.mark.parametrize("data", BODIES, ids=range(len(BODIES)))
def test_orjson_path_decodes_as_the_stdlib_path(data: bytes) -> None:
    expected = _outcome(lambda d: pb_records_from_otlp_json(json.loads(d)), data)
    assert _outcome(pb_records_from_otlp_bytes, data) == expected


def test_plain_export_is_parsed_by_orjson_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(data: bytes) -> None:
        raise AssertionError("json.loads called for a plain export")

    monkeypatch.setattr(jsonpb.json, "loads", refuse)
    records = pb_records_from_otlp_bytes(PLAIN)
    assert len(records) == 1
    record = records[0]
    assert record.body.string_value == "GET /a 200"
    assert record.time_unix_nano == 1796505637277087886
    assert record.attributes["n"].int_value == 42
    assert record.attributes["m"].kvlist_value.values["k"].bool_value is True
    assert record.trace_id == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert record.resource.service_name == "svc" and record.scope.name == "s"


@pytest.mark.parametrize("data", [PLAIN, b"{not json"], ids=["export", "bad JSON"])
def test_collector_state_is_restored(data: bytes) -> None:
    import gc

    assert gc.isenabled()
    _outcome(pb_records_from_otlp_bytes, data)
    assert gc.isenabled()
    gc.disable()
    try:
        _outcome(pb_records_from_otlp_bytes, data)
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
