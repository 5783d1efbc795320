"""The index sink in a child process of the worker (`index_sink_process`, the default).

The worker's Faust agents and the sink shared one event loop and one core, and the worker was
the pipeline's bottleneck (bench/results/pipeline.md); in its own process the sink uses a second
core. Nothing else changes: the child runs the same `IndexConsumer` (own consumer group, commits
only what Elasticsearch accepted), so a child that dies or is stopped at any point loses nothing
— its successor re-reads the uncommitted records and overwrites the same `_id`s.

Lifetime: the worker starts the child (spawned: a fresh interpreter, no inherited event loop)
and restarts it 5 s after it exits; on shutdown it sends SIGTERM, then SIGKILL after 15 s. The
child sends its metrics to the worker every second over a pipe (the worker serves them at
`/metrics`); when that pipe breaks — the worker is gone, even by SIGKILL — the child stops.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from multiprocessing.connection import Connection

from agents.index import IndexConsumer
from app.logfilter import quiet_repeats
from app.metrics import METRICS
from app.settings import Settings

log = logging.getLogger(__name__)

SPAWN = multiprocessing.get_context("spawn")
REPORT_INTERVAL = 1.0
RESTART_DELAY = 5.0
STOP_TIMEOUT = 15.0


async def run_consumer(settings: Settings) -> None:
    """`IndexConsumer.run` forever, restarted with a fresh consumer after a failure."""
    while True:
        try:
            await IndexConsumer(settings).run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - restart with a fresh consumer, never die
            log.exception("index consumer failed; restarting in 5s (uncommitted records "
                          "are read again)")
            await asyncio.sleep(RESTART_DELAY)


def child_main(settings: Settings, conn: Connection) -> None:
    """Entry point of the child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the worker stops us in order
    logging.basicConfig(level=logging.INFO,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)  # a line per request
    quiet_repeats()
    asyncio.run(_child(settings, conn))


async def _child(settings: Settings, conn: Connection) -> None:
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    reporter = asyncio.create_task(_report(conn, main))
    log.info("index sink process started")
    try:
        await run_consumer(settings)
    except asyncio.CancelledError:
        log.info("index sink process stopping")
    finally:
        reporter.cancel()


async def _report(conn: Connection, main: asyncio.Task[None]) -> None:
    """Send our metrics every second; stop the process when the worker stopped listening."""
    while True:
        try:
            conn.send(METRICS.snapshot())
        except OSError:  # BrokenPipeError: the worker is gone
            log.warning("index sink: the worker is gone; stopping")
            main.cancel()
            return
        await asyncio.sleep(REPORT_INTERVAL)


async def supervise(settings: Settings) -> None:
    """Run the sink process until cancelled, restarting it whenever it exits."""
    while True:
        receiver, sender = SPAWN.Pipe(duplex=False)
        child = SPAWN.Process(target=child_main, args=(settings, sender),
                              name="laas-index-sink", daemon=True)
        child.start()
        sender.close()
        try:
            await _listen(receiver)
        except asyncio.CancelledError:
            await asyncio.to_thread(_stop, child)
            raise
        finally:
            receiver.close()
        await asyncio.to_thread(child.join, STOP_TIMEOUT)
        log.error("index sink process exited (code %s); restarting in %.0fs",
                  child.exitcode, RESTART_DELAY)
        await asyncio.sleep(RESTART_DELAY)


async def _listen(receiver: Connection) -> None:
    """Absorb the child's metrics until its end of the pipe closes (it exited)."""
    while True:
        if await asyncio.to_thread(receiver.poll, REPORT_INTERVAL):
            try:
                METRICS.absorb("index", receiver.recv())
            except (EOFError, OSError):
                return


def _stop(child: multiprocessing.process.BaseProcess) -> None:
    child.terminate()
    child.join(STOP_TIMEOUT)
    if child.is_alive():
        log.warning("index sink process did not stop in %.0fs; killing it", STOP_TIMEOUT)
        child.kill()
        child.join()
