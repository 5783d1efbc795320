"""The demo stream of `laas up`: realistic traffic with error bursts, shipped to tenant `demo`."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType

import httpx

from app.settings import Settings

log = logging.getLogger(__name__)

DEMO_TENANT = "demo"  # the same slug as app.accounts.tenancy.DEMO_TENANT (kept import-light here)
KEY_NAME = "demo stream (laas up)"
KEY_FILE = "demo-ingest-key.txt"
RULE_NAME = "Demo: payments error burst"
RULE_QUERY = "service:payments AND level:>=error"
RULE_WINDOW = 30  # seconds; the burst's errors exceed the threshold even split over two windows
RULE_THRESHOLD = 25
RULE_COOLDOWN = 60

# --- traffic (pure) ------------------------------------------------------------------------------

HOSTS: dict[str, tuple[str, ...]] = {
    "frontend": ("web-1", "web-2"),
    "checkout": ("app-1", "app-2"),
    "payments": ("app-2", "app-3"),
    "search": ("search-1",),
    "auth": ("app-1", "app-3"),
}

_WORDS = ("shoes", "laptop", "usb-c", "grinder", "lamp", "headphones", "kettle", "backpack")
_ROUTES = ("/api/items", "/api/cart", "/api/search", "/api/orders", "/static/app.js")
_PROVIDERS = ("stripe", "adyen", "paypal")

VARIABLES: dict[str, Callable[[random.Random], object]] = {
    "ms": lambda r: int(r.lognormvariate(3.5, 0.8)) + 1,
    "slow_ms": lambda r: r.randint(1500, 9000),
    "status": lambda r: r.choices((200, 200, 200, 304, 404), k=1)[0],
    "route": lambda r: r.choice(_ROUTES),
    "bytes": lambda r: r.randint(200, 90_000),
    "user": lambda r: f"u{r.randint(1000, 9999)}",
    "ip": lambda r: f"10.{r.randint(0, 3)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
    "order": lambda r: f"ord-{r.randint(100000, 999999)}",
    "cart": lambda r: f"cart-{r.randint(10000, 99999)}",
    "payment": lambda r: f"pay_{r.randint(10**7, 10**8 - 1)}",
    "amount": lambda r: f"{r.uniform(5, 400):.2f}",
    "items": lambda r: r.randint(1, 7),
    "provider": lambda r: r.choice(_PROVIDERS),
    "term": lambda r: r.choice(_WORDS),
    "hits": lambda r: r.randint(0, 480),
    "segments": lambda r: r.randint(2, 40),
    "attempt": lambda r: r.randint(1, 3),
}


@dataclass(frozen=True)
class Line:
    """A recurring log line of one service: `text` has `{variable}` fields (see VARIABLES);
    `attributes` names the variables also sent as attributes."""

    service: str
    level: str
    text: str
    weight: float
    attributes: tuple[str, ...] = ()


LINES: tuple[Line, ...] = (
    Line("frontend", "INFO", "GET {route} {status} {bytes} bytes in {ms} ms", 10,
         ("route", "status")),
    Line("frontend", "INFO", "POST /api/cart 201 in {ms} ms", 3),
    Line("frontend", "WARN", "upstream checkout slow: {slow_ms} ms for {route}", 0.6, ("route",)),
    Line("checkout", "INFO", "order {order} created for user {user}: {items} items, "
         "{amount} EUR", 3, ("order", "user")),
    Line("checkout", "DEBUG", "cart {cart} loaded from cache in {ms} ms", 3, ("cart",)),
    Line("checkout", "WARN", "inventory reservation retry {attempt}/3 for order {order}", 0.6,
         ("order",)),
    Line("payments", "INFO", "payment {payment} authorized: {amount} EUR via {provider}", 3,
         ("payment", "provider")),
    Line("payments", "INFO", "refund {payment} completed via {provider}", 0.5, ("provider",)),
    Line("payments", "ERROR", "payment {payment} declined: card expired", 0.3, ("payment",)),
    Line("search", "INFO", 'search for "{term}" returned {hits} hits in {ms} ms', 4, ("term",)),
    Line("search", "DEBUG", "index segment merge finished: {segments} segments in {ms} ms", 0.8),
    Line("search", "WARN", 'slow query "{term}" took {slow_ms} ms', 0.4, ("term",)),
    Line("auth", "INFO", "user {user} logged in from {ip}", 2.5, ("user",)),
    Line("auth", "WARN", "failed login for user {user} from {ip} (attempt {attempt})", 0.5,
         ("user",)),
    Line("auth", "DEBUG", "session token refreshed for user {user}", 2, ("user",)),
    Line("auth", "ERROR", "ldap bind failed: connection reset by {ip}", 0.1),
)

# What an incident looks like: the payment provider times out, checkout retries.
BURST_LINES: tuple[Line, ...] = (
    Line("payments", "ERROR", "payment provider {provider} timed out after {slow_ms} ms "
         "for payment {payment}", 3, ("payment", "provider")),
    Line("payments", "ERROR", "charge {payment} failed: {provider} returned 503", 2,
         ("payment", "provider")),
    Line("checkout", "WARN", "payment step failed for order {order}, retrying", 1, ("order",)),
)


def render(line: Line, rnd: random.Random, ts: float, service: str | None = None
           ) -> dict[str, object]:
    """One record of `line` (shorthand JSON form), its variables drawn from `rnd`."""
    values = {name: VARIABLES[name](rnd) for name in VARIABLES if "{" + name + "}" in line.text}
    service = service or line.service
    record: dict[str, object] = {
        "message": line.text.format(**values), "level": line.level, "service": service,
        "host": rnd.choice(HOSTS.get(service, ("demo-1",))), "ts": ts,
    }
    if line.attributes:
        record["attributes"] = {name: values[name] for name in line.attributes}
    if service in ("frontend", "checkout", "payments"):
        record["trace_id"] = f"{rnd.getrandbits(128):032x}"
    return record


class DemoTraffic:
    """Demo traffic as a function of time: records with event times in (clock, until] for
    each `records(until)` call. Normal lines arrive as a Poisson stream whose rate swings
    slowly around `rate` (+-40 % over 10 minutes); error bursts (`burst_rate` lines/s of
    BURST_LINES for `burst_seconds`) start `first_burst` s after `start`, then every
    `burst_every` s (uniform). Deterministic for a given seed; no clock or I/O inside."""

    def __init__(self, start: float, *, seed: int | None = None, rate: float = 8.0,
                 first_burst: float = 20.0, burst_every: tuple[float, float] = (60.0, 90.0),
                 burst_seconds: float = 12.0, burst_rate: float = 8.0,
                 catch_up: float = 10.0) -> None:
        self.rnd = random.Random(seed)
        self.schedule = random.Random(None if seed is None else seed + 1)
        self.start = self.clock = start
        self.rate = rate
        self.burst_every = burst_every
        self.burst_seconds = burst_seconds
        self.burst_rate = burst_rate
        self.catch_up = catch_up
        self.next_burst = start + first_burst
        self.bursts: deque[float] = deque(maxlen=100)  # starts of the latest bursts
        self.burst_count = 0
        self._weights = [line.weight for line in LINES]
        self._burst_weights = [line.weight for line in BURST_LINES]

    def rate_at(self, t: float) -> float:
        """Records per second of the normal traffic at time `t`."""
        return self.rate * (1 + 0.4 * math.sin(2 * math.pi * (t - self.start) / 600))

    def records(self, until: float) -> list[dict[str, object]]:
        """The records of (clock, until], in time order; advances the clock to `until`. After
        a gap longer than `catch_up` s (the sender was stopped) only the last `catch_up` s
        are generated."""
        if until <= self.clock:
            return []
        self.clock = max(self.clock, until - self.catch_up)
        timed = self._draw(LINES, self._weights, self.rate_at, self.clock, until)
        while self.next_burst < until:
            start = self.next_burst
            end = start + self.burst_seconds
            if end > self.clock:  # a burst wholly inside a skipped gap is skipped too
                if not self.bursts or self.bursts[-1] != start:
                    self.bursts.append(start)
                    self.burst_count += 1
                timed += self._draw(BURST_LINES, self._burst_weights,
                                    lambda t: self.burst_rate, max(start, self.clock),
                                    min(end, until))
            if end > until:
                break  # the rest of this burst comes with the next call
            self.next_burst = start + self.schedule.uniform(*self.burst_every)
        self.clock = until
        timed.sort(key=lambda pair: pair[0])
        return [record for _, record in timed]

    def _draw(self, lines: tuple[Line, ...], weights: list[float],
              rate: Callable[[float], float], t: float, until: float
              ) -> list[tuple[float, dict[str, object]]]:
        """A Poisson stream of `lines` at `rate(t)` records/s over (t, until]."""
        out: list[tuple[float, dict[str, object]]] = []
        while True:
            t += self.rnd.expovariate(rate(t))
            if t > until:
                return out
            line = self.rnd.choices(lines, weights, k=1)[0]
            out.append((t, render(line, self.rnd, t)))


def demo_records(service: str | None = None, seed: int | None = 7,
                 clock: Callable[[], float] = time.time) -> Iterator[dict[str, object]]:
    """Endless demo records of the normal mix stamped `clock()` (`laas send --demo`, a load
    generator: as fast as they are taken); `service` overrides every record's service."""
    rnd = random.Random(seed)
    weights = [line.weight for line in LINES]
    while True:
        yield render(rnd.choices(LINES, weights, k=1)[0], rnd, clock(), service)


# --- the demo tenant's key and rule (database) ---------------------------------------------------

async def prepare(settings: Settings) -> str | None:
    """The demo tenant's ingest key (reused from `state_dir/demo-ingest-key.txt` while it is
    valid, else a new one that replaces it there and revokes earlier demo keys) after making
    sure its alert rule exists; None when there is no tenant `demo`."""
    from sqlalchemy import select

    from app.accounts.errors import InvalidCredentials
    from app.accounts.tenancy import create_api_key, revoke_api_key, verify_api_key
    from app.db.engine import create_engine, session_factory
    from app.db.models import AlertRule, ApiKey, Scope, Tenant, utcnow

    key_file = settings.state_dir / KEY_FILE
    engine = create_engine(settings)
    try:
        async with session_factory(engine).begin() as session:
            tenant = await session.scalar(select(Tenant).where(Tenant.slug == DEMO_TENANT))
            if tenant is None:
                return None
            plain = key_file.read_text().strip() if key_file.exists() else None
            if plain:
                try:
                    principal = await verify_api_key(session, plain)
                    if principal.tenant_id != tenant.id or principal.scope != Scope.INGEST:
                        plain = None
                except InvalidCredentials:
                    plain = None
            fresh = plain is None
            if plain is None:
                old = (await session.scalars(select(ApiKey).where(
                    ApiKey.tenant_id == tenant.id, ApiKey.name == KEY_NAME,
                    ApiKey.revoked_at.is_(None)))).all()
                for key in old:
                    await revoke_api_key(session, tenant.id, key.id)
                _, plain = await create_api_key(session, tenant.id, KEY_NAME, Scope.INGEST)
            rule = await session.scalar(select(AlertRule.id).where(
                AlertRule.tenant_id == tenant.id, AlertRule.name == RULE_NAME))
            if rule is None:
                session.add(AlertRule(
                    tenant_id=tenant.id, name=RULE_NAME, query=RULE_QUERY,
                    window_seconds=RULE_WINDOW, condition="above", threshold=RULE_THRESHOLD,
                    cooldown_seconds=RULE_COOLDOWN, enabled=True, created_at=utcnow(),
                    updated_at=utcnow()))
                log.info("demo: alert rule %r created (%s, more than %d in %d s)", RULE_NAME,
                         RULE_QUERY, RULE_THRESHOLD, RULE_WINDOW)
        if fresh:  # written once the key is committed
            write_private(key_file, plain + "\n")
        return plain
    finally:
        await engine.dispose()


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read (mode 0600, also when it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


# --- the sender ----------------------------------------------------------------------------------

def web_url(settings: Settings) -> str:
    return settings.web_url


def web_healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def run_demo(settings: Settings, *, rate: float = 8.0, first_burst: float = 20.0,
             tick: float = 1.0) -> int:
    """Send demo traffic to tenant `demo` through the HTTP ingest until SIGTERM/SIGINT (then 0).

    Waits for the web app, makes sure of the demo key and alert rule (`prepare`); exits 0
    without sending when the database has no tenant `demo`. A failed batch is retried for a
    few seconds and then dropped (demo data); a key refused (revoked, tenant gone) is made
    again, or the demo stops when the tenant is gone.
    """
    from laas_client import SendError, Shipper

    from app.ingest.jsonpb import pb_record_from_json
    from app.runtime.retry import RetryPolicy, retry_blocking

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per batch otherwise
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)

    url = web_url(settings)
    waited = time.monotonic()
    while not web_healthy(url):
        if time.monotonic() - waited > 30:
            log.info("demo: waiting for the web app at %s", url)
            waited = time.monotonic()
        if stop.wait(1.0):
            return 0
    key = asyncio.run(prepare(settings))
    if key is None:
        log.info("demo: no tenant %r in the user database; not sending demo traffic",
                 DEMO_TENANT)
        return 0
    shipper = Shipper(url, key)
    traffic = DemoTraffic(time.time(), rate=rate, first_burst=first_burst)
    log.info("demo: sending ~%.0f records/s to tenant %r at %s; error bursts on payments "
             "(first in %.0f s, then every %.0f-%.0f s) fire the alert rule %r", rate,
             DEMO_TENANT, url, first_burst, *traffic.burst_every, RULE_NAME)
    sent = dropped = 0
    reported = time.monotonic()
    # a failed batch: 5 attempts in ~7.5 s (or as the server asks), then dropped (demo data)
    policy = RetryPolicy(SendError, initial=0.5, maximum=8.0, attempts=5,
                         retry_if=lambda exc: getattr(exc, "retry", False) and not stop.is_set(),
                         retry_after=lambda exc: getattr(exc, "retry_after", None))
    try:
        while not stop.is_set():
            batch = [pb_record_from_json(doc) for doc in traffic.records(time.time())]
            if batch:
                try:
                    sent += retry_blocking(partial(shipper.push, batch), policy,
                                           sleep=stop.wait).accepted
                except SendError as exc:
                    if stop.is_set():
                        break
                    if not exc.retry:  # the key was refused: a new one, or stop
                        log.warning("demo: batch refused (%s); checking the demo key", exc)
                        key = asyncio.run(prepare(settings))
                        if key is None:
                            log.info("demo: tenant %r is gone; stopping", DEMO_TENANT)
                            return 0
                        shipper.close()
                        shipper = Shipper(url, key)
                    else:
                        log.warning("demo: dropped %d records (%s)", len(batch), exc)
                    dropped += len(batch)
            if time.monotonic() - reported >= 60:
                log.info("demo: %d records sent, %d dropped, %d error bursts", sent, dropped,
                         traffic.burst_count)
                reported = time.monotonic()
            stop.wait(tick)
    finally:
        shipper.close()
    log.info("demo: stopped after %d records", sent)
    return 0
