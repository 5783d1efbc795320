"""The Python logging handler and `laas send` against a real gateway and Kafka."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

from click.testing import CliRunner

from app.cli.main import main
from app.client import LaasHandler
from app.ingest.convert import from_any
from app.settings import Settings
from protos.laas.v1 import LogRecord
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import consume


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    return logger


def test_handler_with_dead_endpoint_never_blocks() -> None:
    handler = LaasHandler(f"http://127.0.0.1:{_dead_port()}", "k", service="app",
                          capacity=1000, batch_size=100, flush_interval=0.05, close_timeout=1.0)
    logger = _logger("laas-dead", handler)
    started = time.monotonic()
    for i in range(20_000):
        logger.info("message %d", i)
    emitted = time.monotonic() - started
    assert emitted < 5.0  # ~20k emits; no network wait in the caller
    assert handler.dropped >= 20_000 - 1000 - 100
    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 3.0
    assert handler.sent == 0 and handler.failed > 0


async def test_handler_ships_over_grpc(gateway: int, raw_settings: Settings) -> None:
    handler = LaasHandler(f"grpc://127.0.0.1:{gateway}", "ingest-key", service="shop",
                          flush_interval=0.05)
    logger = _logger("laas-grpc", handler)
    logger.warning("order %s shipped", "o-1", extra={"order": 11})
    try:
        raise KeyError("k")
    except KeyError:
        logger.exception("failed")
    await asyncio.to_thread(handler.flush, 5)
    await asyncio.to_thread(handler.close)
    msgs = await consume(raw_settings, 2, timeout=5)
    first, second = (LogRecord().parse(m.value) for m in msgs)
    assert from_any(first.body) == "order o-1 shipped" and first.severity_number == 13
    assert from_any(first.attributes["order"]) == 11
    assert first.resource.service_name == "shop" and msgs[0].key == b"1/shop"
    assert "KeyError" in from_any(second.body)  # type: ignore[operator]
    assert from_any(second.attributes["exception.type"]) == "KeyError"
    assert handler.sent == 2 and handler.dropped == 0


async def test_laas_send_file_and_demo(gateway: int, raw_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "app.log"
    path.write_text("first line\n\nsecond line\n")
    url = f"grpc://127.0.0.1:{gateway}"

    def run(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, ["send", "--api-key", "ingest-key", "--url", url, *args])

    result = await asyncio.to_thread(run, str(path), "--service", "files")
    assert result.exit_code == 0, result.output
    assert "accepted 2, rejected 0" in result.output
    jpath = tmp_path / "app.jsonl"
    jpath.write_text(json.dumps({"message": "j", "level": "error"}) + "\n")
    result = await asyncio.to_thread(run, str(jpath), "--json")
    assert "accepted 1" in result.output
    result = await asyncio.to_thread(run, "--demo", "--count", "50", "--rate", "500")
    assert "accepted 50" in result.output, result.output
    msgs = await consume(raw_settings, 53, timeout=10)
    assert len(msgs) == 53
    assert LogRecord().parse(msgs[0].value).resource.service_name == "files"
