"""Child processes of the worker: the index sink and the analytics app (docs/stream.md).

A child gets a core of its own (the worker's Faust process was the pipeline's bottleneck with
the second core mostly idle, bench/results/pipeline.md). The worker side (`supervise`) starts
the child with `multiprocessing`'s spawn (a fresh interpreter, no inherited event loop or file
descriptors), restarts it `RESTART_DELAY` s after it exits, and on shutdown sends SIGTERM, then
SIGKILL after `STOP_TIMEOUT` s. The child side (`report_to_worker`) sends the child's metrics to
the worker every second over a pipe (the worker serves them at `/metrics`) and sends itself
SIGTERM when the pipe breaks — the worker is gone, even by SIGKILL — so no orphan keeps working.
A child builds its own `Resources` (agents/resources.py): engines and clients are not shared
across processes.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from agents.resources import Resources
from app.runtime.metrics import METRICS
from app.settings import Settings

log = logging.getLogger(__name__)

SPAWN = multiprocessing.get_context("spawn")
REPORT_INTERVAL = 1.0
RESTART_DELAY = 5.0
STOP_TIMEOUT = 20.0

ChildMain = Callable[[Settings, Connection], None]


def report_to_worker(conn: Connection) -> None:
    """In a child: send our metrics every second from a thread; SIGTERM ourselves once the
    worker's end of `conn` is closed (the worker never writes to it: readable means EOF)."""

    def run() -> None:
        while True:
            try:
                conn.send(METRICS.snapshot())
                if conn.poll(REPORT_INTERVAL):
                    conn.recv()
            except (EOFError, OSError):
                log.warning("the worker is gone; stopping")
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=run, name="laas-report", daemon=True).start()


def child_logging() -> None:
    from app.runtime.logfilter import quiet_repeats

    logging.basicConfig(level=logging.INFO,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)  # a line per request
    quiet_repeats()


async def with_resources(settings: Settings,
                         main: Callable[[Resources], Awaitable[None]]) -> None:
    """In a child: `main(resources)` with the process's resources, closed when it ends."""
    resources = Resources.build(settings)
    try:
        await main(resources)
    finally:
        await asyncio.shield(resources.close())


async def supervise(name: str, main: ChildMain, settings: Settings) -> None:
    """Run `main(settings, conn)` in a child process until cancelled, restarting it whenever
    it exits; its metrics are served as `name`'s."""
    while True:
        ours, theirs = SPAWN.Pipe()
        child = SPAWN.Process(target=main, args=(settings, theirs), name=f"laas-{name}",
                              daemon=True)
        child.start()
        theirs.close()
        log.info("%s process started: pid %s", name, child.pid)
        try:
            await _listen(name, ours)
        except asyncio.CancelledError:
            await asyncio.to_thread(_stop, name, child)
            raise
        finally:
            ours.close()
        await asyncio.to_thread(child.join, STOP_TIMEOUT)
        log.error("%s process exited (code %s); restarting in %.0fs", name, child.exitcode,
                  RESTART_DELAY)
        await asyncio.sleep(RESTART_DELAY)


async def _listen(name: str, conn: Connection) -> None:
    """Absorb the child's metrics until its end of the pipe closes (it exited)."""
    while True:
        if await asyncio.to_thread(conn.poll, REPORT_INTERVAL):
            try:
                METRICS.absorb(name, conn.recv())
            except (EOFError, OSError):
                return


def _stop(name: str, child: BaseProcess) -> None:
    child.terminate()
    child.join(STOP_TIMEOUT)
    if child.is_alive():
        log.warning("%s process did not stop in %.0fs; killing it", name, STOP_TIMEOUT)
        child.kill()
        child.join()
