"""The web app's `GET /metrics` (Prometheus, app/runtime/metrics.py) and its request metrics.

`RequestMetrics` counts every HTTP request by method, route template (`/api/v1/search`, not
the concrete path, so the series stay few) and status, and times it. WebSockets (the live tail,
the alert stream) are long-lived and not timed; the tail counts its sockets itself.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.runtime.metrics import CONTENT_TYPE, METRICS

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestMetrics:
    """ASGI middleware: `laas_http_requests_total` and `laas_http_request_seconds`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500  # unless a response starts: an exception escaped

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"
            METRICS.inc("laas_http_requests_total", method=method, route=route, status=status)
            METRICS.observe("laas_http_request_seconds", time.monotonic() - started,
                            method=method, route=route)


async def metrics(request: Request) -> Response:
    """This process's metrics in the Prometheus text format."""
    return Response(METRICS.render(), media_type=CONTENT_TYPE)


routes: list[BaseRoute] = [Route("/metrics", metrics, methods=["GET"])]
