"""Stalled-partition watchdog: an assigned partition that has lag and makes no progress is
logged, counted and recovered (issue 16, FINDINGS 7).

FINDINGS 7: when several workers start together, a worker sometimes keeps partitions assigned
and never consumes them (faust-streaming #471, #629). The core is pure and broker-free:
`StallTracker` is fed, per assigned partition, the position (the group's committed offset)
and the end offset with the time, and returns the partitions whose position has not moved for
`watchdog_seconds` while they had lag. Each report is a strike; the action escalates with the
strikes of one partition (`action_for`): resume it (Faust's own pause/active bookkeeping, then
a seek of the fetcher to the committed offset), ask for a group rejoin, and at last stop the
process so its supervisor (`laas up`, or the worker for its analytics child) starts a fresh
one. `register_faust` runs it as a timer on a Faust app for that app's own assignment.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.kafka.client import client_options
from app.runtime.metrics import METRICS
from app.settings import Settings

log = logging.getLogger(__name__)

Action = Literal["resume", "rejoin", "restart"]
ACTIONS: tuple[Action, ...] = ("resume", "rejoin", "restart")
Key = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class Stall:
    """A partition with lag whose position did not move for `seconds`; `strike` counts the
    reports since it last made progress (1 for the first)."""

    topic: str
    partition: int
    position: int
    end: int
    seconds: float
    strike: int

    @property
    def lag(self) -> int:
        return self.end - self.position


def action_for(strike: int) -> Action:
    """What to do at the `strike`-th report of a partition that never moved in between."""
    return ACTIONS[min(max(strike, 1), len(ACTIONS)) - 1]


@dataclass
class _Clock:
    position: int
    since: float  # when the position last moved (or the partition was first seen, or reported)
    strikes: int = 0


class StallTracker:
    """Which assigned partitions are stalled, from (position, end offset) samples over time.

    A partition's clock starts when it is first seen, and restarts when its position moves or
    it has no lag. One that is stalled is reported once every `seconds` (each report a further
    strike), so an action gets `seconds` to work before the next one. A partition missing from
    a sample is no longer assigned and is forgotten.
    """

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("seconds must be positive (0 turns the watchdog off elsewhere)")
        self.seconds = seconds
        self._clocks: dict[Key, _Clock] = {}

    def observe(self, offsets: Mapping[Key, tuple[int, int]], now: float) -> list[Stall]:
        """`offsets`: every partition assigned now → (position, end offset)."""
        for key in self._clocks.keys() - offsets.keys():
            del self._clocks[key]
        stalls: list[Stall] = []
        for key, (position, end) in sorted(offsets.items()):
            clock = self._clocks.get(key)
            if clock is None or position != clock.position or position >= end:
                self._clocks[key] = _Clock(position, now)
                continue
            idle = now - clock.since
            if idle >= self.seconds:
                clock.strikes += 1
                clock.since = now
                stalls.append(Stall(key[0], key[1], position, end, idle, clock.strikes))
        return stalls


class OffsetReader:
    """Committed and end offsets from the broker (an admin client and a consumer outside any
    group), opened at the first read."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options  # app.kafka.client.client_options
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def read(self, group: str, tps: Collection[TopicPartition]
                   ) -> dict[Key, tuple[int, int]]:
        """(position, end offset) of each of `tps`; the position is `group`'s committed offset,
        or the partition's beginning when the group committed none."""
        if self.admin is None or self.consumer is None:
            self.admin = AIOKafkaAdminClient(**self.options)
            await self.admin.start()
            self.consumer = AIOKafkaConsumer(**self.options)
            await self.consumer.start()
        wanted = list(tps)
        committed = await self.admin.list_consumer_group_offsets(group, partitions=wanted)
        ends = await self.consumer.end_offsets(wanted)
        missing = [tp for tp in wanted
                   if committed.get(tp) is None or committed[tp].offset < 0]
        starts = await self.consumer.beginning_offsets(missing) if missing else {}
        out: dict[Key, tuple[int, int]] = {}
        for tp in wanted:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            out[(tp.topic, tp.partition)] = (position, ends[tp])
        return out

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()
        self.admin = self.consumer = None


class FaustWatchdog:
    """The watchdog of one Faust app over its assigned partitions of `topics`."""

    def __init__(self, app: faust.App, settings: Settings, topics: Collection[str]) -> None:
        self.app = app
        self.group = app.conf.id
        self.topics = set(topics)
        self.tracker = StallTracker(settings.watchdog_seconds)
        self.reader = OffsetReader(client_options(settings))

    async def check(self) -> list[Stall]:
        """One look: report and recover every stalled partition; returns them."""
        assigned = [tp for tp in self.app.consumer.assignment() if tp.topic in self.topics]
        offsets = await self.reader.read(self.group, assigned) if assigned else {}
        stalls = self.tracker.observe(offsets, time.monotonic())
        for stall in stalls:
            action = action_for(stall.strike)
            log.warning(
                "watchdog: partition %s[%d] of group %s stalled: position %d, end offset %d "
                "(lag %d), no progress for %.0f s (strike %d); %s. State: %s", stall.topic,
                stall.partition, self.group, stall.position, stall.end, stall.lag,
                stall.seconds, stall.strike, action, self.describe(stall))
            METRICS.inc("laas_watchdog_stalls_total", group=self.group, topic=stall.topic,
                        partition=stall.partition)
            await self.recover(stall, action)
        return stalls

    def _tp(self, stall: Stall) -> Any:
        return next(tp for tp in self.app.consumer.assignment()
                    if (tp.topic, tp.partition) == (stall.topic, stall.partition))

    def describe(self, stall: Stall) -> str:
        """Faust's and aiokafka's view of the partition (for the diagnosis in the log)."""
        consumer: Any = self.app.consumer
        try:
            tp = self._tp(stall)
            active = consumer._active_partitions
            state = {
                "faust_paused": tp in consumer._paused_partitions,
                "faust_active": active is None or tp in active,
                "faust_buffer_full": tp in consumer._buffered_partitions,
                "flow_active": consumer.flow_active, "rebalancing": self.app.rebalancing,
                "in_recovery": self.app.in_recovery,
                # messages at or below the read offset are dropped by Faust's fetcher loop
                "faust_read_offset": consumer._read_offset.get(tp),
                "faust_committed_offset": consumer._committed_offset.get(tp),
                "faust_acked_pending": len(consumer._acked.get(tp, ())),
                "faust_unacked": sum(1 for m in consumer._unacked_messages if m.tp == tp),
            }
            client = consumer._thread._consumer
            tp_state = client._subscription.subscription.assignment.state_value(tp)
            if tp_state is not None:
                state |= {"kafka_paused": tp_state.paused,
                          "kafka_position": tp_state._position,
                          "kafka_highwater": tp_state.highwater,
                          "kafka_records_buffered": tp in client._fetcher._records}
            return ", ".join(f"{k}={v}" for k, v in state.items())
        except Exception as exc:  # noqa: BLE001 - a diagnosis must not stop the recovery
            return f"unavailable ({exc!r})"

    async def recover(self, stall: Stall, action: Action) -> None:
        """Do `action` for the stalled partition (see the module docstring)."""
        consumer: Any = self.app.consumer
        if action == "resume":
            if self.app.in_recovery:  # its tables are being restored: let Faust resume it
                action = "rejoin"
            else:
                tp = self._tp(stall)
                consumer.resume_partitions({tp})
                # in the consumer's thread: drops what aiokafka buffered, fetches afresh
                await consumer.seek_wait({tp: stall.position})
                return
        if action == "rejoin":
            thread = consumer._thread
            coordinator = thread._consumer._coordinator
            thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)
            return
        log.error("watchdog: group %s still stalled after resume and rejoin; stopping this "
                  "process so that it is started afresh", self.group)
        os.kill(os.getpid(), signal.SIGTERM)


def check_interval(settings: Settings) -> float:
    """Seconds between two looks: a quarter of the stall time, within 1-10 s."""
    return min(10.0, max(1.0, settings.watchdog_seconds / 4))


def register_faust(app: faust.App, settings: Settings, topics: Collection[str]) -> None:
    """Watch `app`'s assigned partitions of `topics` (no-op with `watchdog_seconds` 0)."""
    if settings.watchdog_seconds <= 0:
        return
    watchdog = FaustWatchdog(app, settings, topics)

    @app.timer(check_interval(settings))
    async def partition_watchdog() -> None:
        try:
            await watchdog.check()
        except Exception as exc:  # noqa: BLE001 - the watchdog must never stop the worker
            log.warning("watchdog: check of group %s failed: %r", watchdog.group, exc)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_reader(sender: Any, **kwargs: Any) -> None:
        await watchdog.reader.close()
