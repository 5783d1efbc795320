"""OTLP/HTTP on its standard port (4318) in the gateway process: `POST /v1/logs`, the same
handler as the web app's (app/ingest/http.py), over the gateway's `IngestService` (one Kafka
producer)."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.ingest.http import otlp_logs
from app.ingest.service import IngestService
from app.runtime.request_metrics import RequestMetrics
from app.settings import Settings

log = logging.getLogger(__name__)


def otlp_http_app(service: IngestService) -> Starlette:
    """A Starlette app with only `POST /v1/logs` (OTLP/HTTP, protobuf or JSON)."""

    async def post_otlp_logs(request: Request) -> Response:
        return await otlp_logs(request, service)

    return Starlette(routes=[Route("/v1/logs", post_otlp_logs, methods=["POST"])],
                     middleware=[Middleware(RequestMetrics)])  # laas_http_requests_total


async def start_otlp_http(settings: Settings, service: IngestService, host: str, port: int,
                          *, tls: bool) -> tuple[Any, int]:
    """Start uvicorn on the running loop (no signal handling of its own: the gateway's);
    return the server and the port it listens on. `tls`: serve `tls_certfile`/`tls_keyfile`."""
    config = uvicorn.Config(
        otlp_http_app(service), host=host, port=port, lifespan="off", access_log=False,
        log_level="warning", server_header=False,
        ssl_certfile=str(settings.tls_certfile) if tls else None,
        ssl_keyfile=str(settings.tls_keyfile) if tls else None)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup()
    except SystemExit as exc:  # uvicorn exits on a port in use; the gateway reports it
        from app.ingest.gateway import GatewayConfigError

        raise GatewayConfigError(f"cannot listen on {host}:{port} (OTLP/HTTP)") from exc
    bound = int(server.servers[0].sockets[0].getsockname()[1])
    return server, bound
