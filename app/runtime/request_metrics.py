"""HTTP request metrics of every Starlette app (the web app, the gateway's OTLP/HTTP port).

`RequestMetrics` counts every HTTP request by method, route template (`/api/v1/search`, not
the concrete path, so the series stay few) and status, and times it. WebSockets (the live tail,
the alert stream) are long-lived and not timed; the tail counts its sockets itself.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.runtime.metrics import METRICS

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
