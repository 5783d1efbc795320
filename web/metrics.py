"""The web app's `GET /metrics` (Prometheus, app/runtime/metrics.py); its request metrics are
`RequestMetrics` (app/runtime/request_metrics.py, shared with the gateway's OTLP/HTTP port)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.runtime.metrics import CONTENT_TYPE, METRICS
from app.runtime.request_metrics import RequestMetrics

__all__ = ["RequestMetrics", "metrics", "routes"]


async def metrics(request: Request) -> Response:
    """This process's metrics in the Prometheus text format."""
    return Response(METRICS.render(), media_type=CONTENT_TYPE)


routes: list[BaseRoute] = [Route("/metrics", metrics, methods=["GET"])]
