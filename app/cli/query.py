"""`laas search` and `laas tail`: terminal clients of the search API and the live tail WebSocket."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import click

from app.pipeline.events import iso_nanos
from app.settings import Settings

LEVEL_STYLES: dict[str, dict[str, Any]] = {
    "FATAL": {"fg": "red", "bold": True},
    "ERROR": {"fg": "red"},
    "WARN": {"fg": "yellow"},
    "INFO": {"fg": "green"},
    "DEBUG": {"fg": "blue", "dim": True},
    "TRACE": {"dim": True},
}
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
SEEN_IDS = 10_000  # ids remembered to skip duplicates at a reconnect seam
CLOSE_BAD_FILTER = 4400


class ApiFailure(click.ClickException):
    """An error answer from the API, shown as its detail (with a caret for query positions)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(click.style("error: ", fg="red", bold=True) + self.message, err=True)


def describe_error(status: int, body: Mapping[str, Any], query: str) -> ApiFailure:
    """A readable failure for an API error answer; bad queries show a caret at the position."""
    detail = str(body.get("detail") or body.get("error") or f"HTTP {status}")
    if status == 400:
        parameter = body.get("parameter")
        position = body.get("position")
        if parameter == "q" and isinstance(position, int):
            caret = " " * min(position, len(query)) + "^"
            return ApiFailure(f"bad query: {detail}\n  {query}\n  {caret}", 2)
        return ApiFailure(f"bad parameter {parameter}: {detail}" if parameter else detail, 2)
    if status == 401:
        return ApiFailure(f"not authenticated: {detail} (give --api-key, LAAS_API_KEY or --token)")
    if status == 403:
        return ApiFailure(f"not allowed: {detail} (a read key or a viewer login is needed)")
    if status in (503, 504):
        return ApiFailure(f"search unavailable ({status}): {detail}")
    return ApiFailure(f"HTTP {status}: {detail}")


def credential_headers(api_key: str | None, token: str | None) -> dict[str, str]:
    credential = token or api_key
    return {"Authorization": f"Bearer {credential}"} if credential else {}


def short_time(iso: str) -> str:
    """`2026-11-27T10:00:00.123456789Z` → `2026-11-27 10:00:00.123`."""
    return iso[:23].replace("T", " ") if len(iso) >= 23 else iso


def style_level(level: str) -> str:
    return click.style(f"{level:<5}", **LEVEL_STYLES.get(level, {}))


def format_hit(hit: Mapping[str, Any], widths: Mapping[str, int]) -> str:
    """One table row: time, level (coloured), service, host, message."""
    level = str(hit.get("level") or "UNKNOWN")
    message = str(hit.get("message") or "").replace("\n", "⏎ ")
    return "  ".join(
        [
            short_time(str(hit.get("time") or "")),
            style_level(level),
            f"{hit.get('service') or '-':<{widths['service']}}",
            f"{hit.get('host') or '-':<{widths['host']}}",
            message,
        ]
    )


def column_widths(hits: list[Mapping[str, Any]]) -> dict[str, int]:
    return {
        name: min(24, max([len(name), *(len(str(h.get(name) or "-")) for h in hits)]))
        for name in ("service", "host")
    }


def table_header(widths: Mapping[str, int]) -> str:
    return "  ".join(
        [
            "TIME".ljust(23),
            "LEVEL",
            "SERVICE".ljust(widths["service"]),
            "HOST".ljust(widths["host"]),
            "MESSAGE",
        ]
    )


def default_url(settings: Settings) -> str:
    return settings.web_url


# --- search -----------------------------------------------------------------------------------


def search_pages(
    url: str, headers: dict[str, str], params: dict[str, Any], follow: bool
) -> Iterator[dict[str, Any]]:
    """The answers of `GET /api/v1/search`, following `next_cursor` if `follow`."""
    import httpx

    query = str(params.get("q") or "")
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        cursor: str | None = None
        while True:
            page_params = {**params, **({"cursor": cursor} if cursor else {})}
            try:
                response = client.get("/api/v1/search", params=page_params)
            except httpx.HTTPError as exc:
                raise ApiFailure(f"cannot reach {url}: {exc}") from exc
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:200]}
            if response.status_code != 200:
                raise describe_error(response.status_code, body, query)
            yield body
            cursor = body.get("next_cursor")
            if not follow or not cursor:
                return


def run_search(
    url: str, headers: dict[str, str], params: dict[str, Any], follow: bool, as_json: bool
) -> None:
    shown = 0
    total: Mapping[str, Any] = {}
    partial = False
    more = False
    for page in search_pages(url, headers, params, follow):
        hits = page["hits"]
        total, more = page["total"], bool(page.get("next_cursor"))
        partial = partial or bool(page.get("partial"))
        if as_json:
            for hit in hits:
                click.echo(json.dumps(hit, ensure_ascii=False))
        elif hits:
            widths = column_widths(hits)
            if shown == 0:
                click.echo(click.style(table_header(widths), bold=True))
            for hit in hits:
                click.echo(format_hit(hit, widths))
        shown += len(hits)
    counted = f"{total.get('value', 0)}" + ("+" if total.get("relation") == "gte" else "")
    summary = f"{shown} shown of {counted} hits"
    if more and not follow:
        summary += " (more: --all, or a larger --limit)"
    click.echo(summary, err=True)
    if partial:
        click.echo(
            click.style(
                "warning: partial results (Elasticsearch timed out on some shards)", fg="yellow"
            ),
            err=True,
        )


# --- tail -------------------------------------------------------------------------------------


def websocket_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/api/v1/tail", "", ""))


class TailPrinter:
    """Prints tail messages; remembers the last event time and recent ids for resuming."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.last_time: str | None = None
        self.seen: set[str] = set()
        self.order: deque[str] = deque()
        self.widths = {"service": 8, "host": 8}

    def event(self, hit: Mapping[str, Any]) -> None:
        event_id = str(hit.get("id"))
        if event_id in self.seen:
            return  # the history of a resumed connection repeats the seam
        self.seen.add(event_id)
        self.order.append(event_id)
        if len(self.order) > SEEN_IDS:
            self.seen.discard(self.order.popleft())
        time_text = hit.get("time")
        if isinstance(time_text, str) and (self.last_time is None or time_text > self.last_time):
            self.last_time = time_text
        if self.as_json:
            click.echo(json.dumps(hit, ensure_ascii=False))
        else:
            for name in ("service", "host"):
                self.widths[name] = min(24, max(self.widths[name], len(str(hit.get(name) or ""))))
            click.echo(format_hit(hit, self.widths))
        sys.stdout.flush()

    def notice(self, text: str) -> None:
        click.echo(click.style(f"-- {text}", fg="yellow"), err=True)


async def tail_once(
    ws_url: str, headers: dict[str, str], params: dict[str, str], printer: TailPrinter, query: str
) -> None:
    """One connection: print until it closes. Raises ApiFailure for errors not worth retrying."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    full = f"{ws_url}?{urlencode(params)}" if params else ws_url
    async with connect(full, additional_headers=headers, max_size=None) as ws:
        try:
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "event":
                    printer.event(message["event"])
                elif kind == "notice":
                    printer.notice(str(message.get("detail") or message))
                elif kind == "ready":
                    printer.notice(f"live (history: {message.get('history', 0)} events)")
                elif kind == "error":
                    if message.get("parameter"):
                        raise describe_error(400, message, query)
                    printer.notice(str(message.get("detail") or message))
                # heartbeats only keep the connection alive
        except ConnectionClosed:
            pass
        if ws.close_code == CLOSE_BAD_FILTER:
            raise ApiFailure(f"the server refused the filter: {ws.close_reason}", 2)


async def run_tail(
    url: str,
    headers: dict[str, str],
    query: str,
    since: str | None,
    printer: TailPrinter,
    max_retries: int | None,
) -> None:
    """Tail with reconnects: exponential backoff, resuming from the last event's time."""
    from websockets.exceptions import InvalidStatus, InvalidURI

    ws_url = websocket_url(url)
    delay = BACKOFF_START
    failures = 0
    resume_from: str | None = since
    while True:
        params = {"q": query} if query else {}
        if resume_from:
            params["since"] = resume_from
        started = time.monotonic()
        connected_at = iso_nanos(time.time_ns())
        try:
            await tail_once(ws_url, headers, params, printer, query)
            reason = "the server closed the connection"
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                body = exc.response.body.decode(errors="replace") if exc.response.body else ""
                try:
                    detail = json.loads(body) if body else {}
                except ValueError:
                    detail = {"detail": body}
                raise describe_error(status, detail, query) from exc
            reason = f"HTTP {status}"
        except InvalidURI as exc:
            raise ApiFailure(f"bad --url: {exc}") from exc
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - any protocol failure means reconnect
            if isinstance(exc, click.ClickException):
                raise
            reason = f"{type(exc).__name__}: {exc}"
        # resume where we were: the last event seen, or when this connection began
        resume_from = printer.last_time or resume_from or connected_at
        if time.monotonic() - started > 10:
            delay, failures = BACKOFF_START, 0  # it was up for a while: start over
        failures += 1
        if max_retries is not None and failures > max_retries:
            raise ApiFailure(f"connection lost ({reason}); gave up after {max_retries} retries")
        printer.notice(f"connection lost ({reason}); reconnecting in {delay:.1f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)


# --- commands ---------------------------------------------------------------------------------


def register(main: click.Group) -> None:
    """Add `search` and `tail` to the `laas` group."""
    pass_settings = click.make_pass_decorator(Settings)

    def client_options(f: Any) -> Any:
        f = click.option(
            "--token",
            default=None,
            envvar="LAAS_TOKEN",
            help="Access token from a login (or LAAS_TOKEN)",
        )(f)
        f = click.option(
            "--api-key", envvar="LAAS_API_KEY", default=None, help="Read API key (or LAAS_API_KEY)"
        )(f)
        f = click.option(
            "--url", default=None, help="LaaS web app, http://host:port (default: the local one)"
        )(f)
        return f

    @main.command()
    @click.argument("query", required=False, default="")
    @click.option(
        "--since",
        default="15m",
        show_default=True,
        help="Start: ISO 8601 or a duration back from now (30s, 15m, 1h, 7d)",
    )
    @click.option("--until", default=None, help="End (default: now)")
    @click.option(
        "--limit",
        type=click.IntRange(1, 1000),
        default=100,
        show_default=True,
        help="Hits per page",
    )
    @click.option(
        "--order", type=click.Choice(["newest", "oldest"]), default="newest", show_default=True
    )
    @click.option("--all", "follow", is_flag=True, help="Follow the cursor through every page")
    @click.option("--json", "as_json", is_flag=True, help="JSON lines, one hit per line")
    @client_options
    @pass_settings
    def search(
        settings: Settings,
        query: str,
        since: str,
        until: str | None,
        limit: int,
        order: str,
        follow: bool,
        as_json: bool,
        url: str | None,
        api_key: str | None,
        token: str | None,
    ) -> None:
        """Search your tenant's logs (Lucene query syntax).

        Example: laas search 'level:error AND service:api' --since 1h
        """
        params: dict[str, Any] = {
            "q": query,
            "since": since,
            "limit": limit,
            "order": order,
            "highlight": "false",
        }
        if until:
            params["until"] = until
        run_search(
            url or default_url(settings),
            credential_headers(api_key, token),
            params,
            follow,
            as_json,
        )

    @main.command(short_help="Watch your tenant's logs live.")
    @click.argument("query", required=False, default="")
    @click.option(
        "--since",
        default=None,
        help="Begin with history from this time (ISO 8601 or 5m), then go live",
    )
    @click.option("--json", "as_json", is_flag=True, help="JSON lines, one event per line")
    @click.option(
        "--max-retries",
        type=int,
        default=None,
        help="Give up after N failed reconnects in a row (default: never)",
    )
    @client_options
    @pass_settings
    def tail(
        settings: Settings,
        query: str,
        since: str | None,
        as_json: bool,
        max_retries: int | None,
        url: str | None,
        api_key: str | None,
        token: str | None,
    ) -> None:
        """Watch your tenant's logs live (the same query syntax as search).

        Example: laas tail 'service:api AND level:>=warn'
        """
        printer = TailPrinter(as_json)
        try:
            asyncio.run(
                run_tail(
                    url or default_url(settings),
                    credential_headers(api_key, token),
                    query,
                    since,
                    printer,
                    max_retries,
                )
            )
        except KeyboardInterrupt:
            pass
