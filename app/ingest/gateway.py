"""The gateway process: gRPC on `gateway_port` (grpcio's asyncio server) with `laas.v1.LogIngest`,
OTLP `LogsService/Export` and the standard `grpc.health.v1.Health`, and OTLP/HTTP `/v1/logs` on
`otlp_http_port` (4318).

gRPC requests are taken as raw bytes (generic handlers, no deserializer) and decoded by upb
record by record, so one unreadable record is reported by index instead of failing the whole
batch; grpcio decompresses gzip and deflate requests on every method. TLS from `tls_certfile`
and `tls_keyfile`; plain text only on loopback unless `tls_plaintext_ok`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from app.ingest.auth import KeyVerifier, Principal
from app.ingest.convert import ConversionError, decode_batch
from app.ingest.errors import (
    BatchRejected,
    IngestError,
    KafkaUnavailable,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from app.ingest.grpc_metrics import MetricsInterceptor
from app.ingest.otlp import RpcStatus, decode_export, export_reply, retry_status
from app.ingest.service import IngestService
from app.runtime.metrics import serve_http as serve_metrics
from app.settings import Settings
from protos.laas.v1 import PushAck

log = logging.getLogger(__name__)

LOG_INGEST = "laas.v1.LogIngest"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
PUSH = f"/{LOG_INGEST}/Push"
PUSH_STREAM = f"/{LOG_INGEST}/PushStream"
OTLP_EXPORT = f"/{LOGS_SERVICE}/Export"
IDEMPOTENCY_METADATA = "idempotency-key"  # a unary call's batch key (docs/ingest.md)
STATUS_DETAILS = "grpc-status-details-bin"
# Headroom over ingest_max_batch_bytes for grpcio's own limit (applied after decompression),
# so an oversized request gets our RESOURCE_EXHAUSTED message naming the limit.
_FRAME_SLACK = 64 * 1024
_HEALTH_POLL_SECONDS = 5.0

_RpcStatus = RpcStatus  # the name tests and older callers import


class GatewayConfigError(ValueError):
    """The gateway cannot start with these settings (TLS files, plain text off loopback)."""


def _status_of(exc: IngestError) -> tuple[grpc.StatusCode, float | None]:
    if isinstance(exc, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, None
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, None
    if isinstance(exc, RateLimited):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, exc.retry_after
    if isinstance(exc, Unavailable):
        return grpc.StatusCode.UNAVAILABLE, exc.retry_after
    if isinstance(exc, BatchRejected) and exc.too_large:
        return grpc.StatusCode.RESOURCE_EXHAUSTED, None
    return grpc.StatusCode.INVALID_ARGUMENT, None


async def _abort(context: grpc.aio.ServicerContext, exc: IngestError) -> NoReturn:
    """End the call with the error's status (raises); a retry delay goes in
    `google.rpc.RetryInfo` (status details) and in `retry-after` trailing metadata."""
    code, retry = _status_of(exc)
    trailers: tuple[tuple[str, str | bytes], ...] = ()
    if retry is not None:
        details = bytes(retry_status(code.value[0], str(exc), retry))
        trailers = ((STATUS_DETAILS, details), ("retry-after", f"{retry:.3f}"))
    await context.abort(code, str(exc), trailers)
    raise AssertionError("grpc.aio's abort returned")  # it raises AbortError


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata, names in lower case."""
    return {k.lower(): v for k, v in (context.invocation_metadata() or ())
            if isinstance(v, str)}


class Gateway:
    """The gRPC methods of both ingest services, over one `IngestService`."""

    def __init__(self, service: IngestService) -> None:
        self.service = service

    def handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        """Generic handlers: requests arrive as bytes, replies leave as bytes."""
        return grpc.method_handlers_generic_handler(LOG_INGEST, {
            "Push": grpc.unary_unary_rpc_method_handler(self.push),
            "PushStream": grpc.stream_stream_rpc_method_handler(self.push_stream),
        }), grpc.method_handlers_generic_handler(LOGS_SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(self.export),
        })

    async def _call(self, context: grpc.aio.ServicerContext,
                    work: Callable[[Principal, dict[str, str]], Awaitable[bytes]]) -> bytes:
        metadata = _metadata(context)
        try:
            principal = await self.service.authenticate(metadata)
            return await work(principal, metadata)
        except IngestError as exc:
            await _abort(context, exc)

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

    async def push(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        async def work(principal: Principal, metadata: dict[str, str]) -> bytes:
            ack = await self._push_one(principal, request, metadata.get(IDEMPOTENCY_METADATA))
            return bytes(ack)

        return await self._call(context, work)

    async def push_stream(self, requests: AsyncIterator[bytes],
                          context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        metadata = _metadata(context)
        try:
            principal = await self.service.authenticate(metadata)
            if IDEMPOTENCY_METADATA in metadata:
                raise BatchRejected(f"{IDEMPOTENCY_METADATA} metadata names one batch; on "
                                    "PushStream set LogBatch.idempotency_key on each batch")
            async for data in requests:
                yield bytes(await self._push_one(principal, data))
        except IngestError as exc:
            await _abort(context, exc)

    async def export(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        async def work(principal: Principal, metadata: dict[str, str]) -> bytes:
            key = self.service.check_idempotency_key(
                (IDEMPOTENCY_METADATA, metadata.get(IDEMPOTENCY_METADATA)))
            try:
                records = decode_export(request)
            except ConversionError as exc:
                raise BatchRejected(f"not an ExportLogsServiceRequest: {exc}") from exc
            self.service.check_batch(len(records), len(request))
            ack = await self.service.push(principal, records, source="gateway",
                                          idempotency_key=key, path="otlp-grpc",
                                          shared_resources=True)
            return bytes(export_reply(ack))

        return await self._call(context, work)


# --- TLS -------------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """Whether a bind address is loopback only (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_files(settings: Settings, host: str) -> tuple[bytes, bytes] | None:
    """The PEM (certificate chain, key) to serve with, None for plain text.

    Raises `GatewayConfigError` for one file without the other, an unreadable file, or plain
    text on a non-loopback address without `tls_plaintext_ok`.
    """
    cert, key = settings.tls_certfile, settings.tls_keyfile
    if (cert is None) != (key is None):
        raise GatewayConfigError("LAAS_TLS_CERTFILE and LAAS_TLS_KEYFILE go together; "
                                 "set both (TLS) or neither (plain text on loopback)")
    if cert is not None and key is not None:
        try:
            return cert.read_bytes(), key.read_bytes()
        except OSError as exc:
            raise GatewayConfigError(f"cannot read the TLS certificate or key: {exc}") from exc
    if not is_loopback(host) and not settings.tls_plaintext_ok:
        raise GatewayConfigError(
            f"refusing to serve plain text on {host}: set LAAS_TLS_CERTFILE and "
            "LAAS_TLS_KEYFILE, bind a loopback address, or set LAAS_TLS_PLAINTEXT_OK=true "
            "behind a TLS-terminating proxy")
    return None


# --- the servers -----------------------------------------------------------------------------

@dataclass
class GatewayServer:
    """A started gateway: the gRPC server (`port`), the OTLP/HTTP server (`http_port`, None
    when off) and the health service."""

    grpc_server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    http: Any = None  # uvicorn.Server
    http_port: int | None = None
    _closing: asyncio.Task[None] | None = field(default=None, repr=False)
    _poll: asyncio.Task[None] | None = field(default=None, repr=False)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Report NOT_SERVING, stop taking calls, finish those in flight (up to `grace` s)."""
        if self._poll is not None:
            self._poll.cancel()
        await self.health.enter_graceful_shutdown()
        if self.http is not None:
            self.http.should_exit = True
            await self.http.shutdown()
        await self.grpc_server.stop(grace)

    def close(self) -> None:
        """Begin `stop()`; `await wait_closed()` for it to end."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.stop())

    async def wait_closed(self) -> None:
        self.close()
        assert self._closing is not None
        await self._closing


SERVICES = ("", LOG_INGEST, LOGS_SERVICE, health.SERVICE_NAME)


def make_server(service: IngestService, settings: Settings) -> grpc.aio.Server:
    limit = settings.ingest_max_batch_bytes + _FRAME_SLACK
    return grpc.aio.server(
        handlers=Gateway(service).handlers(),
        interceptors=[MetricsInterceptor()],  # laas_grpc_requests_total, latency (app/metrics)
        options=[("grpc.max_receive_message_length", limit),
                 ("grpc.max_send_message_length", limit),
                 ("grpc.so_reuseport", 0)])  # a second gateway on a used port fails to start


async def start_gateway(
    settings: Settings, *, verifier: KeyVerifier | None = None, host: str | None = None,
    port: int | None = None, http_port: int | None = None,
) -> tuple[GatewayServer, IngestService]:
    """Start serving (port 0: any free port, read it from `.port` / `.http_port`).

    `http_port` defaults to `settings.otlp_http_port` when a `port` is not given, and is off
    otherwise (tests pass it explicitly). Raises `GatewayConfigError` for bad TLS settings.
    """
    host = host or settings.gateway_host
    tls = tls_files(settings, host)
    if verifier is None:
        from app.ingest.auth import accounts_verifier

        verifier = accounts_verifier(settings)
    if http_port is None and port is None:
        http_port = settings.otlp_http_port or None
    service = IngestService(settings, verifier)
    server = make_server(service, settings)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    address = f"[{host}]" if ":" in host else host
    address = f"{address}:{settings.gateway_port if port is None else port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([tls[::-1]]))
    except RuntimeError as exc:
        raise GatewayConfigError(f"cannot listen on {address}: {exc}") from exc
    await server.start()
    gateway = GatewayServer(server, bound, checker)
    for name in SERVICES:
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    if http_port is not None:
        from app.ingest.otlp_http import start_otlp_http

        try:
            gateway.http, gateway.http_port = await start_otlp_http(
                settings, service, host, http_port, tls=tls is not None)
        except GatewayConfigError:
            await server.stop(0)  # not half a gateway
            raise
    return gateway, service


def bound_port(server: GatewayServer) -> int:
    """The TCP port a started gateway serves gRPC on."""
    return server.port


async def _watch_kafka(server: GatewayServer, service: IngestService) -> None:
    """Keep the ingest services' health NOT_SERVING while Kafka cannot be reached."""
    status = health_pb2.HealthCheckResponse
    while True:
        try:
            await service.writer.start()
            state = status.SERVING
        except KafkaUnavailable as exc:
            log.warning("%s", exc)
            state = status.NOT_SERVING
        for name in (LOG_INGEST, LOGS_SERVICE):
            await server.health.set(name, state)
        await asyncio.sleep(_HEALTH_POLL_SECONDS)


async def serve(settings: Settings) -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    server, service = await start_gateway(settings)
    if settings.gateway_metrics_port:  # Prometheus /metrics (docs/operations.md)
        serve_metrics(settings.gateway_host, settings.gateway_metrics_port)
    log.info("gateway listening on %s:%d (gRPC)%s", settings.gateway_host, server.port,
             f" and :{server.http_port} (OTLP/HTTP)" if server.http_port else "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Pushes answer UNAVAILABLE while Kafka is away; health says NOT_SERVING meanwhile.
    server._poll = asyncio.ensure_future(_watch_kafka(server, service))
    await stop.wait()
    await server.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await server._poll
    await service.close()


def run_gateway(settings: Settings) -> None:
    """Blocking entry point of `laas gateway`: migrate the user database, then serve.

    The gateway checks API keys in the user database, so it brings the schema to head first
    (idempotent, and serialised across processes when `laas up` starts web and gateway at once).
    """
    from app.db.migrations import upgrade_database

    try:
        tls_files(settings, settings.gateway_host)
    except GatewayConfigError as exc:
        raise SystemExit(f"laas gateway: {exc}") from None
    upgrade_database(settings)
    try:
        asyncio.run(serve(settings))
    except GatewayConfigError as exc:
        raise SystemExit(f"laas gateway: {exc}") from None
