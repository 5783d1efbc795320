"""OTLP records share their `ScopeLogs`' resource and scope: `IngestService.push` with
`shared_resources` checks them once per run of equal ones (`validate.check_shared`) and gives
the same acknowledgement, the same refusals (each naming its record, resource and scope
problems after the record's own) and the same records written as checking every record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from app.ingest.auth import Principal
from app.ingest.otlp import decode_export
from app.ingest.service import IngestService
from app.ingest.wire import encode
from app.settings import load_settings


class RecordingWriter:
    """Keeps what would go to Kafka."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    async def write(self, records: Sequence[Any], **_: Any) -> None:
        self.written.extend(encode(r) for r in records)


async def _principal(headers: Any) -> Principal:
    return Principal("1", "t", "ingest", rate_limit=0)


def _pairs(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in values.items()]


def _export() -> bytes:
    """Three resources (valid; an attribute key too long; a host with NUL in an attribute
    key), scopes valid or with a name too long, records valid or with their own problems."""
    good = {"timeUnixNano": "1", "body": {"stringValue": "ok"}}
    bad_trace = {"body": {"stringValue": "x"}, "traceId": "0011"}  # 2 bytes
    bad_attr = {"attributes": _pairs({"k" * 40: "v"})}
    resources = [
        {"attributes": _pairs({"service.name": "a", "host.name": "h"})},
        {"attributes": _pairs({"service.name": "b", "r" * 40: "v"})},
        {"attributes": _pairs({"service.name": "c", "nul\x00key": "v"})},
    ]
    scopes = [{"name": "s"}, {"name": "n" * 40}, {}]
    doc = {"resourceLogs": [
        {"resource": resource, "scopeLogs": [
            {"scope": scope, "logRecords": [good, bad_trace, good, bad_attr, good]}
            for scope in scopes]}
        for resource in resources]}
    return json.dumps(doc).encode()


@pytest.mark.parametrize("as_json", [True, False])
async def test_shared_check_gives_the_same_ack_and_records(as_json: bool) -> None:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )

    body = _export()
    if not as_json:  # the same export, protobuf-encoded (hex ids to base64 for ParseDict)
        doc = json.loads(body)
        for rl in doc["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for rec in sl["logRecords"]:
                    if "traceId" in rec:
                        rec["traceId"] = "ABE="
        body = json_format.ParseDict(doc, ExportLogsServiceRequest()).SerializeToString()
    settings = load_settings(ingest_max_key_length=30)
    outcomes = []
    for shared in (False, True):
        writer = RecordingWriter()
        service = IngestService(settings, _principal, writer=writer,  # type: ignore[arg-type]
                                clock_ns=lambda: 10**9)
        ack = await service.push(Principal("1", "t", "ingest", rate_limit=0),
                                 decode_export(body, as_json=as_json), source="http",
                                 shared_resources=shared)
        outcomes.append((ack.accepted, [(r.index, r.field, r.reason) for r in ack.rejections],
                         writer.written))
    assert outcomes[0] == outcomes[1]
    accepted, rejections, written = outcomes[1]
    assert accepted == 6 == len(written)  # the good records of the first resource's valid scopes
    fields = {index: field for index, field, _ in rejections}
    assert len(rejections) == 45 - 6 and 0 not in fields and 10 not in fields
    assert fields[1] == "trace_id" and fields[3].startswith("attributes.")
    assert fields[5] == "scope.name" and fields[6] == "trace_id"  # its own problem first
    assert fields[15] == fields[29] == "resource.attributes." + "r" * 40
    assert fields[30].startswith("resource.attributes.nul") and fields[31] == "trace_id"
