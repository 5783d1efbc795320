"""Starlette application factory."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.settings import Settings


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the web process answers."""
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings) -> Starlette:
    app = Starlette(routes=[Route("/healthz", healthz)])
    app.state.settings = settings
    return app
