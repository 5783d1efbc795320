"""Starlette application factory.

Areas add their endpoints by exposing `routes` in a module listed in `ROUTE_MODULES`.
The lifespan migrates the user database and opens the engine; endpoints reach it through
`web.auth.db_sessions(request)` and the caller through `web.auth.require(request, ...)`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ExceptionHandler

from app.accounts.errors import AccountError
from app.accounts.logins import AuthConfig
from app.db.engine import create_engine, session_factory
from app.db.migrations import upgrade_database_async
from app.elastic.client import es_client
from app.live.tail import TailHub
from app.runtime.readiness import readiness, report, service_checks
from app.runtime.request_metrics import RequestMetrics
from app.settings import Settings
from web.auth import AuthBackend, account_error_response
from web.proxies import TrustedProxyMiddleware

# Modules exposing `routes: list[BaseRoute]` (and optionally `exception_handlers`); add yours here.
ROUTE_MODULES = [
    "web.auth",
    "web.apikeys",
    "web.users",
    "web.invitations",
    "web.tenants",
    "web.ingest",
    "web.ingest_loki",  # POST /loki/api/v1/push
    "web.ingest_bulk",  # Elasticsearch _bulk; its GET / (ES clients only) must precede web.ui
    "web.search",
    "web.tail",
    "web.sources",
    "web.templates",
    "web.alerts",
    "web.alert_rules",
    "web.metrics",  # GET /metrics (Prometheus)
    "web.openapi",  # GET /openapi.json, built from the routes of every module here
    "web.ui",  # the web UI at / (its route pattern excludes /api, /v1 and the like)
]


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the web process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: Kafka (with the LaaS topics), Elasticsearch and the user database answer;
    503 naming what is not ready."""
    state = request.app.state
    body, status = report(await readiness(service_checks(state.settings, state.es, state.engine)))
    return JSONResponse(body, status_code=status)


async def http_error_response(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such path: 404, wrong method: 405) as `{"error", "detail"}`."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    body = {"error": code, "detail": exc.detail}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Migrate the user database, open the engine and signing keys; close on shutdown."""
    settings: Settings = app.state.settings
    engine = create_engine(settings)
    try:
        await upgrade_database_async(engine)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.auth = AuthConfig.from_settings(settings)
        app.state.es = es_client(settings)
        app.state.tail = TailHub(settings)
        yield
    finally:
        if (tail := getattr(app.state, "tail", None)) is not None:
            await tail.stop()
        if (alert_hub := getattr(app.state, "alert_hub", None)) is not None:  # web.alerts
            await alert_hub.stop()
        if (es := getattr(app.state, "es", None)) is not None:
            await es.close()
        if (ingest := getattr(app.state, "ingest", None)) is not None:  # web.ingest's producer
            await ingest.close()
        await engine.dispose()


def collect_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [Route("/healthz", healthz), Route("/readyz", readyz)]
    for name in ROUTE_MODULES:
        routes.extend(importlib.import_module(name).routes)
    return routes


def collect_exception_handlers() -> dict[Any, ExceptionHandler]:
    handlers: dict[Any, ExceptionHandler] = {
        AccountError: account_error_response,
        HTTPException: http_error_response,
    }
    for name in ROUTE_MODULES:
        handlers.update(getattr(importlib.import_module(name), "exception_handlers", {}))
    return handlers


def server_config(app: Starlette, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How `laas web` serves the app: HTTPS with `tls_certfile`/`tls_keyfile`, else plain HTTP
    on a loopback address only (or with `tls_plaintext_ok`, behind a TLS-terminating proxy);
    `GatewayConfigError` (a ValueError) saying what to set otherwise. uvicorn's proxy headers
    are off: its default trusts `X-Forwarded-For` from 127.0.0.1, so any local process could
    choose its address; `web.proxies` reads the header from `LAAS_TRUSTED_PROXIES` only."""
    from app.ingest.gateway import tls_files  # the gateway's rules, shared

    values: dict[str, Any] = {
        "host": settings.web_host, "port": settings.web_port, "proxy_headers": False, **overrides
    }
    if tls_files(settings, values["host"]) is not None:
        values["ssl_certfile"] = str(settings.tls_certfile)
        values["ssl_keyfile"] = str(settings.tls_keyfile)
    return uvicorn.Config(app, **values)


def create_app(settings: Settings) -> Starlette:
    app = Starlette(
        routes=collect_routes(),
        middleware=[
            Middleware(TrustedProxyMiddleware, trusted_proxies=settings.trusted_proxies),
            Middleware(AuthenticationMiddleware, backend=AuthBackend()),
            Middleware(RequestMetrics),  # innermost: sees the matched route's template
        ],
        exception_handlers=collect_exception_handlers(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
