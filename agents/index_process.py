"""The index stage in a child process of the worker (`index_sink_process`, the default).

The child runs the same consumer loop as the in-process stage (agents/index.py: own consumer
group, commits only what Elasticsearch accepted) over its own `Resources`, so a child that dies
or is stopped at any point loses nothing: its successor re-reads the uncommitted records and
overwrites the same `_id`s. Process lifetime: agents/children.py.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from multiprocessing.connection import Connection

from agents.children import child_logging, report_to_worker, with_resources
from agents.index import run_consumer
from app.runtime.gc_tuning import tune_gc
from app.runtime.loop_lag import LoopLag
from app.settings import Settings

log = logging.getLogger(__name__)


def index_main(settings: Settings, conn: Connection) -> None:
    """Entry point of the child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the worker stops us in order
    child_logging()
    report_to_worker(conn)
    tune_gc(settings)
    asyncio.run(_run(settings))


async def _run(settings: Settings) -> None:
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    lag = asyncio.create_task(LoopLag("index").run())
    try:
        await with_resources(settings, run_consumer)
    except asyncio.CancelledError:
        log.info("index sink process stopping")
    finally:
        lag.cancel()
