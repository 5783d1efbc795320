"""A minimal Faust app for the round-trip test: upper-cases values from one topic into another.

Run as `python -m tests.faust_echo worker`; topic names come from ECHO_SOURCE / ECHO_SINK.
"""

from __future__ import annotations

import os

from app.pipeline.faust_app import create_app
from app.settings import load_settings

settings = load_settings()
app = create_app(settings, store="memory://")
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
source = app.topic(os.environ["ECHO_SOURCE"], partitions=2, **RAW)
sink = app.topic(os.environ["ECHO_SINK"], partitions=2, **RAW)


@app.agent(source)
async def echo(stream):  # type: ignore[no-untyped-def]
    async for key, value in stream.items():
        await sink.send(key=key, value=value.upper())


if __name__ == "__main__":
    app.main()
