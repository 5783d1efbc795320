"""Process helpers for the local stack: detached start, pid files, readiness waits, service user."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

SERVICE_USER = "laas"
T = TypeVar("T")


class StackError(RuntimeError):
    """A local service could not be prepared, started or reached; the message says which and why."""


def is_root() -> bool:
    return os.geteuid() == 0


def require_command(name: str, install_hint: str) -> str:
    """The path of a command on PATH, or a StackError telling how to install it."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` is not installed; {install_hint}")
    return path


def service_user() -> str | None:
    """The user to run Elasticsearch and PostgreSQL as: `laas` (created if needed) under root."""
    if not is_root():
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
        )
    return SERVICE_USER


def give_to(user: str | None, *paths: Path) -> None:
    """Make paths (recursively) owned by the service user, and their parents traversable by it."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        for root, dirs, files in os.walk(path):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(
                    os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False
                )
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)


def read_pid(pid_file: Path) -> int | None:
    """The pid in pid_file if that process is still alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z":
        return None
    return pid


def spawn(
    cmd: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> int:
    """Start cmd detached in its own session, output appended to log_file, pid written."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            user=user,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def terminate(pid_file: Path, timeout: float = 60.0) -> bool:
    """Stop the process group recorded in pid_file (TERM, then KILL); False if none was running."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(pid_file) is not None:
        time.sleep(0.2)
    if read_pid(pid_file) is not None:
        _signal_group(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    service: str,
    log_file: Path,
    timeout: float,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll ready() until true; raise a StackError naming the service and its log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if alive is not None and not alive():
            raise StackError(f"{service} exited during start-up; see {log_file}\n{tail(log_file)}")
        time.sleep(0.5)
    raise StackError(f"{service} not ready after {timeout:.0f}s; see {log_file}\n{tail(log_file)}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def run_logged(
    cmd: Sequence[str],
    *,
    what: str,
    log_file: Path,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a setup command to completion, output to log_file; StackError if it fails."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        result = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=user,
            env={**os.environ, **(env or {})},
        )
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode}); see {log_file}\n{tail(log_file)}"
        )


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also when an event loop already runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
