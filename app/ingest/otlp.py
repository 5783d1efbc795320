"""OTLP requests and replies on the fast runtime: decode an export (protobuf or JSON) into upb
`LogRecord`s, answer with an `ExportLogsServiceResponse` or a `google.rpc.Status`.

Shared by the gateway's gRPC `LogsService/Export`, its OTLP/HTTP port and the web app's
`/v1/logs`. The mapping is in docs/ingest.md (*OpenTelemetry*).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import Any

import betterproto

from app.ingest.convert import ConversionError, otlp_records
from app.ingest.jsonpb import pb_records_from_otlp_bytes
from protos.laas.v1 import PushAck
from protos.opentelemetry.proto.collector.logs.v1 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)

log = logging.getLogger(__name__)

__all__ = ["RpcStatus", "decode_export", "export_reply", "retry_status"]

TOO_DEEP = "arrays or objects nested too deeply"
# json.loads refuses an integer past Python's int/str conversion limit with a plain ValueError
TOO_LONG = f"a number of more than {sys.get_int_max_str_digits()} digits"


def decode_export(data: bytes, *, as_json: bool = False) -> list[Any]:
    """The records of a serialized `ExportLogsServiceRequest` (protobuf, or OTLP/JSON with
    `as_json`): upb `LogRecord`s with their resource and scope, or a `ConversionError` in place
    of a record that cannot be read (refused alone). Raises `ConversionError` for a request
    that is not an export request at all."""
    try:
        if not as_json:
            return otlp_records(data)
        try:
            return pb_records_from_otlp_bytes(data)  # orjson; the stdlib's errors
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConversionError("request", f"not JSON: {exc}") from exc
        except ValueError as exc:  # not a warning with Python's hint at its limit setting
            if isinstance(exc, ConversionError) or "integer string conversion" not in str(exc):
                raise
            raise ConversionError("request", f"not JSON: {TOO_LONG}") from None
    except RecursionError:
        raise ConversionError("request", TOO_DEEP) from None
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the input, the caller's error (4xx)
        log.warning("unexpected error decoding an OTLP export: %r", exc)
        raise ConversionError("request", f"not an OTLP logs export: {exc!r}") from exc


def export_reply(ack: PushAck) -> ExportLogsServiceResponse:
    """An OTLP response: rejected records are a partial success, as the OTLP spec asks."""
    if not ack.rejections:
        return ExportLogsServiceResponse()
    message = "; ".join(f"record {r.index}: {r.field}: {r.reason}" for r in ack.rejections[:20])
    return ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
        rejected_log_records=len(ack.rejections), error_message=message))


# google.rpc.Status with a google.rpc.RetryInfo detail, written with betterproto so the
# gateway needs no googleapis-common-protos at run time.
@dataclass(eq=False, repr=False)
class _Duration(betterproto.Message):
    seconds: int = betterproto.int64_field(1)
    nanos: int = betterproto.int32_field(2)


@dataclass(eq=False, repr=False)
class _RetryInfo(betterproto.Message):
    retry_delay: _Duration = betterproto.message_field(1)


@dataclass(eq=False, repr=False)
class _Any(betterproto.Message):
    type_url: str = betterproto.string_field(1)
    value: bytes = betterproto.bytes_field(2)


@dataclass(eq=False, repr=False)
class RpcStatus(betterproto.Message):
    """`google.rpc.Status` (what OTLP/HTTP answers on error, and gRPC's status details)."""

    code: int = betterproto.int32_field(1)
    message: str = betterproto.string_field(2)
    details: list[_Any] = betterproto.message_field(3)


def retry_status(code: int, message: str, retry_after: float | None) -> RpcStatus:
    """A `google.rpc.Status`, with a `google.rpc.RetryInfo` detail when a retry delay is set."""
    if retry_after is None:
        return RpcStatus(code, message, [])
    info = _RetryInfo(_Duration(int(retry_after), int((retry_after % 1) * 1e9)))
    return RpcStatus(code, message,
                     [_Any("type.googleapis.com/google.rpc.RetryInfo", bytes(info))])
