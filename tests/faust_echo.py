"""A minimal Faust app for the round-trip test: upper-cases values from one topic into another.

Run as `python -m tests.faust_echo worker`; topic names come from ECHO_SOURCE / ECHO_SINK.
"""

from __future__ import annotations

import os

import faust

from app.pipeline.faust_app import create_app
from app.settings import load_settings

settings = load_settings()
app = create_app(settings, store="memory://")


def _raw_topic(name: str) -> faust.TopicT:
    """A two-partition topic of raw bytes keys and values."""
    return app.topic(name, partitions=2, key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


source = _raw_topic(os.environ["ECHO_SOURCE"])
sink = _raw_topic(os.environ["ECHO_SINK"])


@app.agent(source)
async def echo(stream: faust.StreamT[bytes]) -> None:
    async for key, value in stream.items():
        await sink.send(key=key, value=value.upper())


if __name__ == "__main__":
    app.main()
