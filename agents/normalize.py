"""Stage `normalize`: `logs.raw` → `logs.events` (+ `logs.deadletter`), a thin agent over
`app.pipeline.raw_input.process` (API key checked, then `app.pipeline.normalize.normalize`).

The agent takes raw messages in batches (`stream_batch_size` messages or `stream_batch_linger`
seconds, Faust's `noack_take`; a message is one record or an ingest request's `LogBatch`) and
sends one `logs.events` message per partition and part of a batch (`stream_batch_events`
events; app/pipeline/event_messages.py): one Kafka message per event, later per source, made
Faust's per-message machinery the worker's bottleneck (bench/results/pipeline.md, tiers.md).

Concurrency stays 1 (faust-streaming #606: with concurrency > 1 an offset can be committed past
an event still in flight). The batch's raw records are acked only after all their events and
dead letters were handed to the producer (`noack_take` leaves acking to us, unlike `take`, which
acks in a `finally` even when the body failed), and Faust flushes the producer before it commits
offsets: a raw record's offset is committed only after its output is in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

import faust
from faust.streams import _current_event

from agents.resources import Resources
from agents.templates import TemplateStage
from app.ingest.auth import DatabaseVerifier
from app.kafka.headers import H_TENANTS
from app.kafka.stamp import EVENTS, Stamps
from app.kafka.topics import Topics
from app.pipeline.event_messages import messages
from app.pipeline.events import LogEvent
from app.pipeline.normalize import Limits
from app.pipeline.raw_input import KeyCheck, process, raw_message
from app.runtime.metrics import METRICS
from app.runtime.retry import Failure, RetryPolicy, retry

log = logging.getLogger(__name__)


def writing_for(event: faust.EventT) -> None:
    """Make `event` this task's current event: Faust writes a table's changelog to the current
    event's partition. Only the context variable is set: `Stream._set_current_event` would also
    overwrite `Stream.current_event`, which the passive `noack_take` reader is still using (it
    then buffered one record twice and another not at all)."""
    _current_event.set(weakref.ref(event))


async def until_done(step: Callable[[], Awaitable[None]], *, delay: float = 0.5,
                     max_delay: float = 15.0) -> None:
    """Run `step` until it succeeds. A failure (a Faust table write while Kafka does not yet
    list the table's new changelog topic, FINDINGS #16; a producer error) is logged and retried
    after a back-off: raised, it would crash the agent, and a crashed agent processes nothing
    more while the worker stays up. The batch stays unacked meanwhile (backpressure); a retry
    may send some of its events twice (statistics skip raw positions already counted, the
    index overwrites the same `_id`)."""
    def failed(failure: Failure) -> None:  # the traceback is logged
        log.exception("normalize: a batch failed; retrying in %.1fs", failure.delay)
        METRICS.inc("laas_stage_retries_total", stage="normalize")

    await retry(step, RetryPolicy(Exception, initial=delay, maximum=max_delay), on_retry=failed,
                sleep=asyncio.sleep)


def register(app: faust.App, topics: Topics, resources: Resources,
             keys: KeyCheck | None = None,
             templates: TemplateStage | None = None) -> faust.types.AgentT:
    """Declare the normalize agent on `app`; with `templates`, events get their template id
    from the tenant's miner (agents/templates.py)."""
    settings = resources.settings
    limits = Limits.from_settings(settings)
    stamps = Stamps.from_settings(settings)
    checker = keys or KeyCheck(settings, DatabaseVerifier(  # on the process's engine
        resources.sessions, ttl=settings.api_key_cache_seconds))
    events_topic = topics.events.get_topic_name()
    dead_topic = topics.deadletter.get_topic_name()

    async def send_events(made: dict[int, list[LogEvent]],
                          last: dict[int, faust.EventT]) -> None:
        """Mine the templates of events made from each raw partition, send them to
        `logs.events`, one message per partition (split at `events_message_bytes`)."""
        out: list[LogEvent] = []
        for partition, events in made.items():
            if templates is not None and events:
                writing_for(last[partition])
                events = await templates.assign(events, partition)
            out.extend(events)
        for message in messages(out, settings.partitions, settings.events_message_bytes):
            headers = stamps.sign(message.key, message.value, [(H_TENANTS, message.tenants)],
                                  kind=EVENTS)
            await topics.events.send(key=message.key, value=message.value,
                                     partition=message.partition, headers=headers)
        if out:
            METRICS.inc("laas_events_out_total", len(out), stage="normalize",
                        topic=events_topic)

    async def handle(batch: Sequence[faust.EventT]) -> None:
        """Normalize a batch of raw messages, send dead letters, then events — in parts of
        about `stream_batch_events` (a batch of large `LogBatch` messages holds many)."""
        last: dict[int, faust.EventT] = {}  # the last raw message of each partition so far
        made: dict[int, list[LogEvent]] = defaultdict(list)
        pending = 0
        for event in batch:
            raw = raw_message(event.message)
            result = await process(raw, checker, limits, stamps)
            last[raw.partition] = event
            made[raw.partition].extend(result.events)
            pending += len(result.events)
            for dead in result.dead:
                log.info("dead letter %s from %s[%d]@%d: %s", dead.reason, raw.topic,
                         raw.partition, raw.offset, dead.detail)
                await topics.deadletter.send(key=raw.key, value=dead.to_json(),
                                             headers=dead.kafka_headers())
                METRICS.inc("laas_deadletters_total", stage="normalize", reason=dead.reason)
            if result.dead:
                METRICS.inc("laas_events_out_total", len(result.dead), stage="normalize",
                            topic=dead_topic)
            if pending >= settings.stream_batch_events:
                await send_events(made, last)
                made, pending = defaultdict(list), 0
        await send_events(made, last)

    @app.agent(topics.raw, name="normalize", concurrency=1)
    async def normalize_agent(stream: faust.StreamT) -> None:
        batches = stream.noack_take(  # type: ignore[attr-defined]
            settings.stream_batch_size, within=settings.stream_batch_linger)
        async for batch in batches:
            METRICS.inc("laas_events_in_total", len(batch), stage="normalize")
            await until_done(lambda: handle(batch))  # noqa: B023 - awaited in this iteration
            for event in batch:
                await stream.ack(event)

    return normalize_agent
