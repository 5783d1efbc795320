"""The web app's `GET /metrics` (Prometheus, app/runtime/metrics.py). Its request metrics are
`app.runtime.request_metrics.RequestMetrics`, shared with the gateway's OTLP/HTTP port."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.runtime.metrics import CONTENT_TYPE, METRICS

__all__ = ["metrics", "routes"]


async def metrics(request: Request) -> Response:
    """This process's metrics in the Prometheus text format."""
    return Response(METRICS.render(), media_type=CONTENT_TYPE)


routes: list[BaseRoute] = [Route("/metrics", metrics, methods=["GET"])]
