"""`laas up`: the local stack if needed, the LaaS topics, then every LaaS process (and the demo
traffic of the demo tenant), supervised until Ctrl-C.

A process that exits is restarted (after 1, 2, 4, 8 s as its exits pile up); one that exits
`CRASH_LIMIT` times within `CRASH_WINDOW` s is crash-looping (a configuration problem, not a
hiccup): then `laas up` stops everything and says so.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from app.settings import Settings
from deploy.proc import StackError, tail, wait_until
from deploy.stack import Stack

PROCESSES = ("worker", "gateway", "web")
DEMO = "demo"  # `laas demo`: the demo tenant's traffic (app/cli/demo.py), unless `--no-demo`
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0


@dataclass
class Restarts:
    """When to restart a child after an exit at `now`: the delay, or None to give up."""

    limit: int = CRASH_LIMIT
    window: float = CRASH_WINDOW
    exits: list[float] = field(default_factory=list)

    def after_exit(self, now: float) -> float | None:
        self.exits = [t for t in self.exits if now - t < self.window] + [now]
        if len(self.exits) >= self.limit:
            return None
        return float(2 ** (len(self.exits) - 1))


@dataclass
class Child:
    name: str
    log_file: Path
    popen: subprocess.Popen[bytes]
    restarts: Restarts = field(default_factory=Restarts)
    restart_at: float | None = None  # set while waiting to restart after an exit
    finished: bool = False  # a child that may end (the demo) exited 0: not restarted


def start_child(settings: Settings, name: str) -> Child:
    log_file = settings.state_dir / "logs" / f"{name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "app", name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Child(name, log_file, popen)


def supervise(settings: Settings, child: Child, now: float) -> bool:
    """Restart `child` if it exited (once its delay is over); False when it crash-loops."""
    code = child.popen.poll()
    if code is None or child.finished:
        return True
    if code == 0 and child.name == DEMO:  # e.g. no tenant demo: nothing to send, not a crash
        child.finished = True
        print(f"  {child.name:<8} finished; see {child.log_file}", flush=True)
        return True
    if child.restart_at is None:
        delay = child.restarts.after_exit(now)
        print(f"error: {child.name} exited with {code}; see {child.log_file}\n"
              f"{tail(child.log_file)}", file=sys.stderr, flush=True)
        if delay is None:
            print(f"error: {child.name} exited {child.restarts.limit} times within "
                  f"{child.restarts.window:.0f}s; stopping LaaS", file=sys.stderr, flush=True)
            return False
        print(f"restarting {child.name} in {delay:.0f}s", file=sys.stderr, flush=True)
        child.restart_at = now + delay
    elif now >= child.restart_at:
        child.popen = start_child(settings, child.name).popen
        child.restart_at = None
        print(f"  {child.name:<8} restarted: pid {child.popen.pid}", flush=True)
    return True


def web_healthy(settings: Settings) -> bool:
    try:
        context = None
        if settings.tls_certfile:  # our own child on this machine: its certificate may not
            context = ssl.create_default_context()  # name 127.0.0.1, nor have a public CA
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(f"{settings.web_url}/healthz", timeout=2,
                                    context=context) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def demo_login(settings: Settings) -> str:
    """Migrate the user database; on first start make the demo tenant and say how to log in.

    The generated password is kept in `state_dir/demo-login.txt` (mode 0600) so later starts
    can point at it; delete the file once you changed the password.
    """
    from app.accounts.tenancy import ensure_demo

    saved = settings.state_dir / "demo-login.txt"
    created = ensure_demo(settings)
    if created is not None:
        saved.touch(mode=0o600)
        saved.write_text(
            f"tenant: {created.tenant}\nemail: {created.email}\npassword: {created.password}\n"
        )
        return (
            f"  log in as {created.email} with password {created.password}"
            f" (tenant {created.tenant})"
        )
    if saved.exists():
        return f"  demo login: see {saved}"
    return "  log in with your user (create one with `laas user create`)"


def run_up(settings: Settings, *, demo: bool = True) -> int:
    """Bring everything up, print where it is, and supervise; returns the exit status."""
    from agents.worker import ensure_worker_topics
    from app.kafka.admin import KafkaNotReachable, TopicMismatch

    try:
        for line in Stack(settings).up():
            print(line, flush=True)
        # Every topic before any consumer joins a group (a worker that subscribes to a
        # missing topic is assigned none of its partitions until the next rebalance).
        ensure_worker_topics(settings, say=lambda line: print(line, flush=True))
    except (StackError, TopicMismatch, KafkaNotReachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    try:
        login = demo_login(settings)
    except Exception as exc:  # noqa: BLE001 - report any database failure and stop
        print(
            f"error: the user database at {settings.db_url} is not usable: {exc!r}", file=sys.stderr
        )
        return 1

    children = [start_child(settings, name) for name in (*PROCESSES, *([DEMO] if demo else []))]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        web = next(child for child in children if child.name == "web")
        wait_until(
            lambda: web_healthy(settings),
            service="web",
            log_file=web.log_file,
            timeout=60,
            alive=lambda: web.popen.poll() is None,
        )
        print(f"\nLaaS is up: {settings.web_url}/", flush=True)
        print(f"  gRPC/OTLP ingest: {settings.web_host}:{settings.gateway_port}", flush=True)
        if settings.otlp_http_port:
            print(f"  OTLP/HTTP ingest: {settings.web_host}:{settings.otlp_http_port}/v1/logs",
                  flush=True)
        print(login, flush=True)
        if demo:
            print("  demo traffic flows into tenant demo (`laas up --no-demo` turns it off)",
                  flush=True)
        for child in children:
            print(f"  {child.name:<8} pid {child.popen.pid:<8} log {child.log_file}", flush=True)
        print("Ctrl-C stops the LaaS processes; `laas stack down` stops the servers.", flush=True)
        while not stopping:
            for child in children:
                if not stopping and not supervise(settings, child, time.monotonic()):
                    return 1
            time.sleep(0.5)
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in children:
            if child.popen.poll() is None:
                child.popen.terminate()
        for child in children:
            try:
                child.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.popen.kill()
