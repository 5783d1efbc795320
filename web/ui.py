"""The web UI: the Vite build in `web/ui/dist` served at `/` (sources and docs in `web/ui/`).

Hashed bundles under `/assets/` are cached for a year (their names change with their content);
`index.html` is never cached, and answers every client-side route (`/explore`, `/settings`...).
Paths of the API and other endpoints (`/api`, `/v1`, `/healthz`, `/openapi.json`, `/metrics`)
are excluded by the route pattern itself, so the order of `ROUTE_MODULES` does not matter.
When the UI was not built, `/` answers 503 with what to run.
"""

from __future__ import annotations

from pathlib import Path

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

DIST = Path(__file__).resolve().parent / "ui" / "dist"
RESERVED = ("api", "v1", "healthz", "openapi.json", "metrics", "assets")
IMMUTABLE = "public, max-age=31536000, immutable"
NOT_BUILT = (
    "The LaaS web UI is not built.\n"
    "Run `bash deploy/bootstrap.sh install` (or `cd web/ui && npm ci && npm run build`) "
    "and reload this page. The API is available under /api/v1.\n"
)


class UIPathConvertor(Convertor[str]):
    """Any path except those of the API and the other endpoints (which never get index.html)."""

    regex = r"(?!(?:" + "|".join(p.replace(".", r"\.") for p in RESERVED) + r")(?:/|$)).*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("uipath", UIPathConvertor())


def dist_dir(request: Request) -> Path:
    """The build folder (`app.state.ui_dist` overrides the default, for tests)."""
    dist: Path = getattr(request.app.state, "ui_dist", None) or DIST
    return dist


def inside(base: Path, relative: str) -> Path | None:
    """`base/relative` if it is a file inside `base` (no `..` escapes), else None."""
    try:
        candidate = (base / relative).resolve()
        candidate.relative_to(base.resolve())
    except (ValueError, OSError):
        return None
    return candidate if candidate.is_file() else None


async def index(request: Request) -> Response:
    """GET / and every client-side route: index.html (or a top-level file of the build)."""
    dist = dist_dir(request)
    page = dist / "index.html"
    if not page.is_file():
        return PlainTextResponse(NOT_BUILT, status_code=503, headers={"Retry-After": "60"})
    path = request.path_params.get("path", "")
    if path and "/" not in path and (found := inside(dist, path)) is not None:
        return FileResponse(found, headers={"Cache-Control": "public, max-age=3600"})
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


async def asset(request: Request) -> Response:
    """GET /assets/{name}: a hashed bundle, cached for a year; missing ones are a plain 404."""
    found = inside(dist_dir(request) / "assets", request.path_params["name"])
    if found is None:
        return PlainTextResponse("no such asset\n", status_code=404)
    return FileResponse(found, headers={"Cache-Control": IMMUTABLE})


routes = [
    Route("/assets/{name:path}", asset, methods=["GET", "HEAD"]),
    Route("/{path:uipath}", index, methods=["GET", "HEAD"]),
]
