"""Running Elasticsearch requests for endpoints: one client per app, failures as HTTP errors."""

from __future__ import annotations

import logging
from typing import Any

from elasticsearch import ApiError, AsyncElasticsearch, ConnectionError, ConnectionTimeout
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from app.query.search import BadParameter

log = logging.getLogger(__name__)


class SearchUnavailable(Exception):
    """Elasticsearch could not answer: 503 (unreachable, overloaded) or 504 (too slow)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def elastic(conn: HTTPConnection) -> AsyncElasticsearch:
    """The web app's client (made by the lifespan in `web.app`)."""
    es: AsyncElasticsearch = conn.app.state.es
    return es


async def es_search(conn: HTTPConnection, body: dict[str, Any]) -> dict[str, Any]:
    """One search; its failures become the HTTP errors clients expect."""
    try:
        result = await elastic(conn).search(**body)
    except ConnectionTimeout as exc:
        raise SearchUnavailable(
            504,
            "Elasticsearch did not answer in time; narrow the time range or the query and retry",
        ) from exc
    except ConnectionError as exc:
        raise SearchUnavailable(503, "Elasticsearch is unreachable; retry shortly") from exc
    except ApiError as exc:
        if exc.status_code in (429, 503):
            log.warning("Elasticsearch answered %s to a search: %s", exc.status_code, exc)
            what = "overloaded" if exc.status_code == 429 else \
                "unavailable (a shard not started yet, or overloaded)"
            raise SearchUnavailable(503, f"Elasticsearch is {what}; retry shortly") from exc
        if exc.status_code == 400:
            raise BadParameter("q", f"Elasticsearch refused the query: {exc.message}") from exc
        raise
    return dict(result.body)


async def unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SearchUnavailable)
    headers = {"Retry-After": "5"} if exc.status == 503 else None
    error = "timeout" if exc.status == 504 else "unavailable"
    return JSONResponse({"error": error, "detail": exc.detail}, exc.status, headers=headers)
