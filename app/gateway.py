"""The gRPC gateway: `laas.v1.LogIngest` and OTLP `LogsService/Export` on one port (grpclib).

grpclib serves betterproto messages natively (no second code generator); requests are taken as
raw bytes so one unreadable record is reported by index instead of failing the whole batch.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import betterproto
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoCodec
from grpclib.server import Server, Stream

from app.ingest.auth import KeyVerifier, Principal
from app.ingest.convert import ConversionError, decode_batch, otlp_records
from app.ingest.errors import (
    BatchRejected,
    IngestError,
    KafkaUnavailable,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from app.ingest.service import IngestService
from app.settings import Settings
from protos.laas.v1 import PushAck
from protos.opentelemetry.proto.collector.logs.v1 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)

log = logging.getLogger(__name__)

PUSH = "/laas.v1.LogIngest/Push"
PUSH_STREAM = "/laas.v1.LogIngest/PushStream"
OTLP_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
IDEMPOTENCY_METADATA = "idempotency-key"  # a unary call's batch key (docs/ingest.md)


class Raw:
    """Marker request type: the codec hands the handler the undecoded bytes."""


class RawProtoCodec(ProtoCodec):
    """`ProtoCodec` that leaves requests typed `Raw` as bytes (betterproto replies as usual)."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data if message_type is Raw else super().decode(data, message_type)


# google.rpc.Status with a google.rpc.RetryInfo detail, written with betterproto so the gateway
# needs no googleapis-common-protos at run time.
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
class _RpcStatus(betterproto.Message):
    code: int = betterproto.int32_field(1)
    message: str = betterproto.string_field(2)
    details: list[_Any] = betterproto.message_field(3)


class RetryInfoCodec(StatusDetailsCodecBase):
    """Encodes a retry delay (seconds, float) as `google.rpc.RetryInfo` in grpc-status-details."""

    def encode(self, status: Status, message: str | None, details: Any) -> bytes:
        seconds = float(details)
        info = _RetryInfo(_Duration(int(seconds), int((seconds % 1) * 1e9)))
        detail = _Any("type.googleapis.com/google.rpc.RetryInfo", bytes(info))
        return bytes(_RpcStatus(status.value, message or "", [detail]))

    def decode(self, status: Status, message: str | None, data: bytes) -> Any:
        return _RpcStatus().parse(data)


def _status_of(exc: IngestError) -> tuple[Status, float | None]:
    if isinstance(exc, Unauthenticated):
        return Status.UNAUTHENTICATED, None
    if isinstance(exc, PermissionDenied):
        return Status.PERMISSION_DENIED, None
    if isinstance(exc, RateLimited):
        return Status.RESOURCE_EXHAUSTED, exc.retry_after
    if isinstance(exc, Unavailable):
        return Status.UNAVAILABLE, exc.retry_after
    if isinstance(exc, BatchRejected) and exc.too_large:
        return Status.RESOURCE_EXHAUSTED, None
    return Status.INVALID_ARGUMENT, None


Method = Callable[[Stream[Any, Any], Principal], Awaitable[None]]


class Gateway:
    """The grpclib handler object for both services, over one `IngestService`."""

    def __init__(self, service: IngestService) -> None:
        self.service = service

    def __mapping__(self) -> dict[str, Handler]:
        return {
            PUSH: Handler(self._guard(self._push), Cardinality.UNARY_UNARY, Raw, PushAck),
            PUSH_STREAM: Handler(self._guard(self._push_stream), Cardinality.STREAM_STREAM,
                                 Raw, PushAck),
            OTLP_EXPORT: Handler(self._guard(self._export), Cardinality.UNARY_UNARY, Raw,
                                 ExportLogsServiceResponse),
        }

    def _guard(self, method: Method) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
        async def handle(stream: Stream[Any, Any]) -> None:
            try:
                principal = await self.service.authenticate(
                    {k.lower(): v for k, v in stream.metadata.items()
                     if isinstance(v, str)} if stream.metadata else {})
                await method(stream, principal)
            except IngestError as exc:
                status, retry = _status_of(exc)
                metadata = {"retry-after": f"{retry:.3f}"} if retry is not None else None
                await stream.send_trailing_metadata(
                    status=status, status_message=str(exc), status_details=retry,
                    metadata=metadata)

        return handle

    async def _push_one(self, principal: Principal, data: bytes,
                        metadata_key: str | None = None) -> PushAck:
        try:
            items, sizes, resource, batch_id, field_key = decode_batch(data)
        except ConversionError as exc:
            raise BatchRejected(str(exc)) from exc
        key = self.service.check_idempotency_key(
            (IDEMPOTENCY_METADATA, metadata_key),
            ("LogBatch.idempotency_key", field_key or None))
        self.service.check_batch(len(items), len(data))
        return await self.service.push(principal, items, sizes=sizes, default_resource=resource,
                                       batch_id=batch_id, source="gateway",
                                       idempotency_key=key)

    async def _push(self, stream: Stream[Any, Any], principal: Principal) -> None:
        data = await stream.recv_message()
        await stream.send_message(await self._push_one(principal, data or b"",
                                                       _metadata_key(stream)))

    async def _push_stream(self, stream: Stream[Any, Any], principal: Principal) -> None:
        if _metadata_key(stream) is not None:
            raise BatchRejected(f"{IDEMPOTENCY_METADATA} metadata names one batch; on "
                                "PushStream set LogBatch.idempotency_key on each batch")
        async for data in stream:
            await stream.send_message(await self._push_one(principal, data))

    async def _export(self, stream: Stream[Any, Any], principal: Principal) -> None:
        key = self.service.check_idempotency_key((IDEMPOTENCY_METADATA, _metadata_key(stream)))
        data = await stream.recv_message() or b""
        try:
            records = otlp_records(data)
        except ConversionError as exc:
            raise BatchRejected(f"not an ExportLogsServiceRequest: {exc}") from exc
        self.service.check_batch(len(records), len(data))
        ack = await self.service.push(principal, records, source="gateway",
                                      idempotency_key=key)
        await stream.send_message(otlp_response(ack))


def _metadata_key(stream: Stream[Any, Any]) -> str | None:
    """The `idempotency-key` request metadata (None when absent)."""
    if not stream.metadata:
        return None
    value = next((v for k, v in stream.metadata.items()
                  if k.lower() == IDEMPOTENCY_METADATA), None)
    return value if isinstance(value, str) else None


def otlp_response(ack: PushAck) -> ExportLogsServiceResponse:
    """An OTLP response: rejected records are a partial success, as the OTLP spec asks."""
    if not ack.rejections:
        return ExportLogsServiceResponse()
    message = "; ".join(f"record {r.index}: {r.field}: {r.reason}" for r in ack.rejections[:20])
    return ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
        rejected_log_records=len(ack.rejections), error_message=message))


def make_server(service: IngestService) -> Server:
    return Server([Gateway(service)], codec=RawProtoCodec(),
                  status_details_codec=RetryInfoCodec())


async def start_gateway(
    settings: Settings, *, verifier: KeyVerifier | None = None, host: str | None = None,
    port: int | None = None,
) -> tuple[Server, IngestService]:
    """Start serving (port 0: any free port, read it from `server.sockets`); return both."""
    if verifier is None:
        from app.ingest.auth import accounts_verifier

        verifier = accounts_verifier(settings)
    service = IngestService(settings, verifier)
    server = make_server(service)
    await server.start(host or settings.gateway_host,
                       settings.gateway_port if port is None else port)
    return server, service


def bound_port(server: Server) -> int:
    """The TCP port a started server listens on."""
    inner: Any = server._server  # grpclib keeps the asyncio server here
    return int(inner.sockets[0].getsockname()[1])


async def serve(settings: Settings) -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    server, service = await start_gateway(settings)
    log.info("gateway listening on %s:%d", settings.gateway_host, bound_port(server))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.writer.start()
    except KafkaUnavailable as exc:  # serve anyway: pushes answer UNAVAILABLE until it is back
        log.warning("%s", exc)
    await stop.wait()
    server.close()
    await server.wait_closed()
    await service.close()


def run_gateway(settings: Settings) -> None:
    """Blocking entry point of `laas gateway`: migrate the user database, then serve.

    The gateway checks API keys in the user database, so it brings the schema to head first
    (idempotent, and serialised across processes when `laas up` starts web and gateway at once).
    """
    from app.migrations import upgrade_database

    upgrade_database(settings)
    asyncio.run(serve(settings))
