"""OTLP: the official OpenTelemetry SDK exporter (gRPC) ships logs into the gateway unchanged."""

from __future__ import annotations

import asyncio
import logging

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from app.ingest.convert import from_any
from app.settings import Settings
from protos.laas.v1 import LogRecord
from tests.ingest_fixtures import *  # noqa: F403
from tests.ingest_fixtures import consume


def _ship_with_sdk(port: int, key: str) -> None:
    exporter = OTLPLogExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True,
                               headers={"authorization": f"Bearer {key}"}, timeout=10)
    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout",
                                                        "host.name": "node-7",
                                                        "deployment.environment": "prod"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("otel-test")
    logger.propagate = False
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.warning("payment %s failed", "p-1", extra={"order_id": 42, "retry": True})
        logger.info("second")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
async def test_otel_sdk_grpc_export_arrives_intact(gateway: int, raw_settings: Settings) -> None:
    await asyncio.to_thread(_ship_with_sdk, gateway, "ingest-key")
    msgs = await consume(raw_settings, 2, timeout=10)
    assert len(msgs) == 2
    first = LogRecord().parse(msgs[0].value)
    assert first.body.string_value == "payment p-1 failed"
    assert (first.severity_number, first.severity_text) == (13, "WARN")
    assert from_any(first.attributes["order_id"]) == 42
    assert from_any(first.attributes["retry"]) is True
    assert first.resource.service_name == "checkout" and first.resource.host == "node-7"
    assert from_any(first.resource.attributes["deployment.environment"]) == "prod"
    assert first.scope.name == "otel-test"
    assert first.time_unix_nano and first.observed_time_unix_nano
    assert msgs[0].key == b"1/checkout"
    assert LogRecord().parse(msgs[1].value).body.string_value == "second"
