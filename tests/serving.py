"""Serving an app (with its lifespan already running) over real HTTP/WebSocket on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette

from tests.test_kafka import free_port


@asynccontextmanager
async def served(app: Starlette, timeout: float = 30) -> AsyncIterator[int]:
    """Run uvicorn for `app` in this event loop; yields the port, stops the server on exit."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(timeout):
            while not server.started:
                if serving.done():
                    serving.result()  # raises why the server did not start
                    raise RuntimeError(f"uvicorn exited before serving on port {port}")
                await asyncio.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        await serving
