"""Authentication for every endpoint, permission checks, and the login/refresh/logout/me API.

`AuthBackend` turns `Authorization: Bearer <jwt | api key>` or `X-API-Key: <key>` (and, on
WebSockets, a `token` query parameter) into a `Principal` on `request.user`. Endpoints call
`require(request, Permission.READ)` (or use `@requires(...)`) to get the principal or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    UnauthenticatedUser,
)
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.status import WS_1008_POLICY_VIOLATION, WS_1011_INTERNAL_ERROR
from starlette.websockets import WebSocket

from app.accounts import logins
from app.accounts.authz import Permission, Principal
from app.accounts.errors import (
    AccountError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    Throttled,
)
from app.accounts.logins import AuthConfig
from app.accounts.security import looks_like_api_key
from app.accounts.tenancy import get_tenant_by_id, user_tenants, verify_api_key
from app.db.engine import SessionFactory

log = logging.getLogger(__name__)


class Anonymous(UnauthenticatedUser):
    """No valid credentials; `reason` tells why when some were presented."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason


def db_sessions(conn: HTTPConnection) -> SessionFactory:
    """The app's session factory (set up by the lifespan in `web.app`)."""
    sessions: SessionFactory | None = getattr(conn.app.state, "sessions", None)
    if sessions is None:
        raise RuntimeError("database not set up: run the app with its lifespan (web.app)")
    return sessions


def auth_config(conn: HTTPConnection) -> AuthConfig:
    config: AuthConfig | None = getattr(conn.app.state, "auth", None)
    if config is None:
        raise RuntimeError("auth not set up: run the app with its lifespan (web.app)")
    return config


def presented_credential(conn: HTTPConnection) -> str | None:
    """The bearer token or API key sent with the request, if any."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return ""  # present but unusable: reported as such
    key = conn.headers.get("x-api-key")
    if key:
        return key.strip()
    if conn.scope["type"] == "websocket":
        # Browsers cannot set headers on WebSockets; URLs end up in logs, so HTTP never reads it.
        return conn.query_params.get("token") or None
    return None


async def principal_of(conn: HTTPConnection, credential: str) -> Principal:
    """Who `credential` (an API key or an access token) is now; `AccountError` if nobody."""
    async with db_sessions(conn).begin() as session:
        if looks_like_api_key(credential):
            return await verify_api_key(session, credential)
        return await logins.principal_from_access_token(
            session, auth_config(conn).codec, credential
        )


class AuthBackend(AuthenticationBackend):
    """Starlette authentication backend for JWT access tokens and API keys.

    Bad credentials do not fail the request here: the caller stays anonymous with a
    reason, and endpoints that need a principal answer 401 with that reason. Public
    endpoints (`/healthz`, login) keep working with a stale token.
    """

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, Any] | None:
        credential = presented_credential(conn)
        if credential is None:
            return None
        if not credential:
            return AuthCredentials(), Anonymous("Authorization header must be 'Bearer <token>'")
        try:
            principal = await principal_of(conn, credential)
        except AccountError as exc:
            return AuthCredentials(), Anonymous(exc.detail)
        scopes = ["authenticated", *sorted(p.value for p in principal.permissions)]
        return AuthCredentials(scopes), principal


def require(conn: HTTPConnection, permission: Permission | str | None = None) -> Principal:
    """The caller, if authenticated and holding `permission`; raises otherwise.

    HTTP: `NotAuthenticated` (401) or `PermissionDenied` (403), rendered as JSON.
    WebSocket: closes with 1008 (policy violation) and the reason.
    """
    user = conn.scope.get("user")
    try:
        if not isinstance(user, Principal):
            reason = getattr(user, "reason", None) or "credentials required"
            raise NotAuthenticated(reason)
        if permission is not None and not user.can(permission):
            raise PermissionDenied(f"{user.describe()} may not {Permission(permission).value}")
    except AccountError as exc:
        if conn.scope["type"] == "websocket":
            raise WebSocketException(WS_1008_POLICY_VIOLATION, exc.detail) from exc
        raise
    return user


# --- open WebSockets: credentials re-checked while they stream ------------------------------

CLOSE_CREDENTIALS_ENDED = 4401  # key revoked, logged out, token expired, removed, deactivated
CLOSE_PERMISSION_LOST = 4403  # still authenticated, but no longer allowed (role or scope)


@dataclass(frozen=True)
class Ended:
    """Why an open WebSocket must close: its close code and the error frame's fields."""

    code: int
    error: str
    detail: str


async def recheck(conn: HTTPConnection, permission: Permission | str) -> Ended | None:
    """Authenticate the connection's credential again, as at connect; None while it still
    holds `permission` in the same tenant."""
    connected = conn.scope.get("user")
    credential = presented_credential(conn)
    if not isinstance(connected, Principal) or not credential:
        return Ended(CLOSE_CREDENTIALS_ENDED, "not_authenticated", "credentials required")
    try:
        principal = await principal_of(conn, credential)
    except AccountError as exc:
        return Ended(CLOSE_CREDENTIALS_ENDED, "not_authenticated", exc.detail)
    if principal.identity != connected.identity or principal.tenant_id != connected.tenant_id:
        return Ended(CLOSE_CREDENTIALS_ENDED, "not_authenticated", "credentials changed")
    if not principal.can(permission):
        return Ended(CLOSE_PERMISSION_LOST, "forbidden",
                     f"{principal.describe()} may not {Permission(permission).value} any more")
    return None


async def watch_credentials(
    conn: HTTPConnection, permission: Permission | str, interval: float
) -> Ended:
    """Re-check every `interval` seconds; returns once the credentials no longer do. A check
    that cannot be made (database down) ends the stream too: it fails closed."""
    while True:
        await asyncio.sleep(interval)
        try:
            ended = await recheck(conn, permission)
        except Exception:
            log.exception("re-checking the credentials of %s failed", conn.url.path)
            return Ended(WS_1011_INTERNAL_ERROR, "unavailable",
                         "credentials could not be re-checked; reconnect later")
        if ended is not None:
            return ended


async def stream_while_authorized(
    ws: WebSocket, permission: Permission | str, pump: Coroutine[Any, Any, None]
) -> None:
    """Run `pump` (which sends frames) until the client goes away or its credentials stop
    holding `permission`: then send `{"type": "error", "error", "detail"}` and close with
    `CLOSE_CREDENTIALS_ENDED` (4401) or `CLOSE_PERMISSION_LOST` (4403), within
    `LAAS_WEBSOCKET_RECHECK_SECONDS`. Exceptions of `pump` (a client gone) propagate."""

    async def receive_until_closed() -> None:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass  # clients send nothing; reading notices the close

    interval = ws.app.state.settings.websocket_recheck_seconds
    watcher = asyncio.create_task(watch_credentials(ws, permission, interval))
    tasks = [asyncio.create_task(pump), asyncio.create_task(receive_until_closed()), watcher]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if watcher in done:
        ended = watcher.result()
        await ws.send_json({"type": "error", "error": ended.error, "detail": ended.detail})
        await ws.close(ended.code, ended.detail[:120])
        return
    for task in done:
        task.result()  # a client gone (WebSocketDisconnect) or a failed send


Endpoint = Callable[[Request], Awaitable[Response]]


def requires(permission: Permission | str | None = None) -> Callable[[Endpoint], Endpoint]:
    """Decorator form of `require` for endpoint functions."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def wrapper(request: Request) -> Response:
            require(request, permission)
            return await endpoint(request)

        return wrapper

    return decorate


async def account_error_response(request: Request, exc: Exception) -> Response:
    """Render an `AccountError` as `{"error", "detail"}` JSON with its status code."""
    assert isinstance(exc, AccountError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
    if exc.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="laas"'}
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


# --- request helpers ---------------------------------------------------------------------------

MAX_ID = 2**31 - 1  # ids are INTEGER columns (int4 on PostgreSQL)


def path_id(request: Request, name: str, what: str) -> int:
    """The integer id `name` of the path; one no row can have is `NotFound` (not a database
    error: SQLite and asyncpg refuse integers past their column's range)."""
    value: int = request.path_params[name]
    if not 0 < value <= MAX_ID:
        raise NotFound(f"{what} {value} not found in this tenant")
    return value



async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; `InvalidInput` if it is not one."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # RecursionError: arrays or objects nested too deep
        raise InvalidInput("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"field {name!r} is required", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"field {name!r} must be a string", field=name)
    return value


# --- endpoints -------------------------------------------------------------------------------


async def login_endpoint(request: Request) -> Response:
    """POST {email, password, tenant?} → access and refresh tokens."""
    body = await json_body(request)
    pair = await logins.login(
        db_sessions(request),
        auth_config(request),
        email=text_field(body, "email") or "",
        password=text_field(body, "password") or "",
        tenant=text_field(body, "tenant", required=False),
        client_address=request.client.host if request.client else None,
    )
    return JSONResponse(pair.to_dict(), headers={"Cache-Control": "no-store"})


async def refresh_endpoint(request: Request) -> Response:
    """POST {refresh_token} → a new pair; the old refresh token is spent."""
    body = await json_body(request)
    token = text_field(body, "refresh_token") or ""
    pair = await logins.refresh(db_sessions(request), auth_config(request), token)
    return JSONResponse(pair.to_dict(), headers={"Cache-Control": "no-store"})


async def logout_endpoint(request: Request) -> Response:
    """POST (access token and/or {refresh_token}) → the session is revoked."""
    user = request.scope.get("user")
    session_id = user.session_id if isinstance(user, Principal) else None
    body = await json_body(request) if await request.body() else {}
    token = text_field(body, "refresh_token", required=False)
    if session_id is None and token is None:
        require(request)  # reports why the access token was not accepted
        raise InvalidInput("send the refresh token to end a session", field="refresh_token")
    await logins.logout(db_sessions(request), session_id=session_id, refresh_token=token)
    return Response(status_code=204)


async def me_endpoint(request: Request) -> Response:
    """GET → who the caller is, in which tenant, with which permissions."""
    principal = require(request)
    async with db_sessions(request)() as session:
        tenant = await get_tenant_by_id(session, principal.tenant_id)
        tenants = (
            [
                {"slug": t.slug, "name": t.name, "role": r.value}
                for t, r in await user_tenants(session, principal.user_id)
            ]
            if principal.user_id is not None
            else []
        )
    return JSONResponse(
        {
            "kind": principal.kind,
            "user": (
                {"id": principal.user_id, "email": principal.email}
                if principal.kind == "user"
                else None
            ),
            "api_key": principal.api_key_id,
            "tenant": {"id": tenant.id, "slug": tenant.slug, "name": tenant.name},
            "role": principal.role.value if principal.role else None,
            "scope": principal.scope.value if principal.scope else None,
            "permissions": sorted(p.value for p in principal.permissions),
            "tenants": tenants,
        }
    )


routes = [
    Route("/api/v1/auth/login", login_endpoint, methods=["POST"]),
    Route("/api/v1/auth/refresh", refresh_endpoint, methods=["POST"]),
    Route("/api/v1/auth/logout", logout_endpoint, methods=["POST"]),
    Route("/api/v1/me", me_endpoint, methods=["GET"]),
]
