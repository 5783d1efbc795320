"""Stage `detect`: `logs.events` → `alerts`: per-source anomaly detection and user alert rules.

Per tenant+source (`tenant/service/host`; `logs.events` puts a source on one partition,
app/pipeline/event_messages.py) events are folded into tumbling windows of
`detect_window_seconds` by **ingest time** (`observed_time`: a backlog replayed after an outage
is not a spike of event time, and producer clocks do not matter). A timer closes windows (empty
ones too: that is how silence is seen) and hands each to the source's `SourceMonitor`
(Half-Space Trees + explicit detectors, app/anomaly); findings become alerts, grouped per tenant
and source (app/pipeline/alerting.py).

State: tables `detect-light` (key: source; the monitor without its model, under 1 KB, written
every `detect_light_snapshot_seconds`, at once after a window that fired) and `detect-model`
(the compact HST state, a few KB compressed, written every `detect_model_snapshot_seconds`),
changelog-backed (declared in tables/detection.py). Faust only lets a table be written while an
event of the table's partition is being processed, so writes are queued per partition by the
timer and done by the agent with the next events of that partition, at most `PERSIST_BATCH`
sources per event (writing thousands at once held the loop). A restarted worker restores a
source's monitor from the tables on its first event. A worker keeps at most
`detect_max_sources` monitors (~18 KB each, docs/analytics.md): the least recently active
source is evicted when a new one needs room, and one silent for `detect_idle_seconds` is
evicted too; an evicted monitor's full state (light and model) is queued for its tables and
restored when the source returns. At most `detect_max_sources_per_tenant` sources of a tenant
are monitored by one worker (further sources are counted in `laas_detect_skipped`).

The timer scores windows source by source (`Windows.closing`) and lets the other tasks run
whenever it has worked for `YIELD_AFTER` seconds, so no burst of sources holds the event loop
(a new source builds no trees: the splits are shared and its counters are one 5 KB bytearray,
app/anomaly/hst.py). A tick stops after `TICK_SHARE` of the timer's interval and the next one
goes on where it stopped, so ticks fit their interval however many sources close a window at
once (windows are scored up to a few seconds later instead). Monitors are frozen out of the
garbage collector's generations as they are admitted (`app.runtime.gc_tuning.Freezer`).

Alert rules (`alert_rules` table, reloaded every `alert_rules_refresh_seconds`) are evaluated
here too: every event is matched against its tenant's rules (`compile_predicate`, the query
language of search) and counted per rule window (`RuleCounter`). A tenant's sources are spread
over workers, so each worker sends its partial counts to `rule-counts` every tick, on the
partition of the tenant (`tenant_partition`); the worker that owns that partition sums them
(agent `rules`, `RuleEngine`): "above" rules fire as soon as a window's sum passes the
threshold, "below" rules are judged `RULE_GRACE` seconds after the window ended.

At start the rules are loaded and the open alert groups and rule cooldowns restored from the
alerts index before the agent counts or the timer fires anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Iterator
from typing import Any

import faust

from agents.resources import AlertRuleRepository, Resources
from app.anomaly import MonitorConfig, SourceMonitor, Windows
from app.anomaly.features import Window
from app.kafka.stamp import ALERTS, RULE_COUNTS, Stamps
from app.kafka.topics import Topics
from app.pipeline.alerting import (
    Grouper,
    Rule,
    RuleCounter,
    RuleEngine,
    alerts_index,
    anomaly_alert,
    encode,
    restore,
)
from app.pipeline.event_messages import decode_shared
from app.pipeline.events import LogEvent
from app.query import parse
from app.query.match import compile_predicate
from app.runtime.gc_tuning import Freezer
from app.runtime.metrics import METRICS
from app.runtime.turns import Turns
from tables.detection import detect_light, detect_model

log = logging.getLogger(__name__)

RESTORE_HORIZON = 86_400.0  # alerts fired within a day give their rules' cooldowns back
PERSIST_BATCH = 64  # sources whose state one event's persist writes at most (~5 ms)
YIELD_AFTER = 0.005  # seconds of scoring in a tick before the other tasks get the loop
TICK_SHARE = 0.5  # of the timer's interval one tick may take; the next tick goes on from there


async def load_rules(repository: AlertRuleRepository) -> list[Rule]:
    """Every enabled rule, compiled (a rule whose query no longer parses is skipped)."""
    rules = []
    for row in await repository.enabled():
        try:
            predicate = compile_predicate(parse(row.query))
        except Exception as exc:  # noqa: BLE001 - one bad rule must not stop every tenant's
            log.warning("alert rule %d: query does not compile (%r); skipped", row.id, exc)
            continue
        rules.append(Rule(row.id, str(row.tenant_id), row.name, row.query,
                          row.window_seconds, row.condition, row.threshold,
                          row.cooldown_seconds, predicate))
    return rules


class Detection:
    """Windows, monitors, their tables, the rule engine and the alert grouper of one worker."""

    def __init__(self, app: faust.App, topics: Topics, resources: Resources) -> None:
        settings = self.settings = resources.settings
        self.resources = resources
        self.topics = topics
        self.stamps = Stamps.from_settings(settings)  # signs alerts and rule counts
        self.light = detect_light(app, settings)
        self.model = detect_model(app, settings)
        self.config = MonitorConfig(warmup=settings.detect_warmup_windows,
                                    hst_warmup=settings.detect_hst_warmup_windows)
        self.windows = self._new_windows()
        self.monitors: dict[str, SourceMonitor] = {}
        self.partition_of: dict[str, int] = {}
        self.per_tenant: dict[str, set[str]] = {}
        # per partition: sources whose light state is to be written; evicted sources' state
        self.pending_light: dict[int, set[str]] = {}
        self.pending_evicted: dict[int, dict[str, tuple[bytes, bytes]]] = {}
        self.model_saved: dict[str, float] = {}
        self.light_saved: dict[str, float] = {}  # tick clock of the last light write, per source
        self.interval = min(1.0, settings.detect_window_seconds / 2)  # the timer's
        self._closing: Iterator[Window] | None = None  # a pass over the windows, unfinished
        self.freezer = Freezer()
        self.grouper = Grouper(settings.alert_group_seconds)
        self.counter = RuleCounter()  # this worker's share of every rule's counts
        self.rules = RuleEngine(self.grouper, grace=RULE_GRACE)  # judges the owned tenants
        self.app = app
        # set once the rules were loaded and the alert state restored (or both tried): the
        # agent counts nothing and the timer fires nothing before, or a worker's first events
        # (a backlog read at start) would miss every rule and repeat open alerts
        self.started = asyncio.Event()

    # -- inside the agent -------------------------------------------------------------------

    def observe(self, events: list[LogEvent], partition: int) -> None:
        """Count the events of one `logs.events` message read from `partition`."""
        now = time.time()
        for event in events:
            source = event.source_key
            self.counter.observe(event, now)
            if source not in self.monitors and \
                    not self._admit(event.tenant_id, source, partition):
                continue
            self.windows.add(source, event.observed_time / 1e9, event.severity,
                             event.template_id, event.template_new, event.message)
        self.evict(self.windows.take_dropped())
        self.persist(partition)

    def _admit(self, tenant_id: str, source: str, partition: int) -> bool:
        sources = self.per_tenant.setdefault(tenant_id, set())
        if len(sources) >= self.settings.detect_max_sources_per_tenant:
            METRICS.inc("laas_detect_skipped_total", tenant=tenant_id)
            return False
        saved = self.pending_evicted.get(partition, {}).pop(source, None)
        light, model = saved or (self.light.get(source), self.model.get(source))
        monitor = None
        if light:
            try:
                monitor = SourceMonitor.restore(light, model)
            except Exception as exc:  # noqa: BLE001 - a bad snapshot must not stop detection
                log.warning("detect: cannot restore %s (%r); starting afresh", source, exc)
        self.monitors[source] = monitor or SourceMonitor(source, self.config)
        self.partition_of[source] = partition
        # the model is written `detect_model_snapshot_seconds` from now: a restored model is in
        # the table already, a new one has learnt nothing worth keeping yet (writing both at
        # once cost ~10 ms per source: seconds of CPU for many new or restored sources)
        self.model_saved[source] = time.time()
        sources.add(source)
        self.freezer.admitted()
        return True

    def evict(self, sources: list[str]) -> None:
        """Drop the monitors of `sources` (forgotten or pushed out by `Windows`), queueing
        their full state for the tables: a returning source continues where it stopped."""
        for source in sources:
            self.evict_one(source)

    def evict_one(self, source: str) -> None:
        monitor = self.monitors.pop(source, None)
        partition = self.partition_of.pop(source, None)
        self.model_saved.pop(source, None)
        self.light_saved.pop(source, None)
        self.per_tenant.get(source.split("/", 1)[0], set()).discard(source)
        if monitor is None or partition is None:
            return
        METRICS.inc("laas_detect_evicted_total")
        self.pending_light.get(partition, set()).discard(source)
        self.pending_evicted.setdefault(partition, {})[source] = (
            monitor.light_state(), monitor.model_state())

    def persist(self, partition: int) -> None:
        """Write queued table values of this partition's sources, at most `PERSIST_BATCH`
        (needs the current event to be of `partition`: Faust writes a table's changelog
        partition from it)."""
        budget = PERSIST_BATCH
        evicted = self.pending_evicted.get(partition)
        while evicted and budget:
            source, (light, model) = evicted.popitem()
            self.light[source] = light
            self.model[source] = model
            budget -= 1
        queued = self.pending_light.get(partition)
        now = time.time()
        while queued and budget:
            source = queued.pop()
            budget -= 1
            monitor = self.monitors.get(source)
            if monitor is None:
                continue
            self.light[source] = monitor.light_state()
            if now - self.model_saved.get(source, now) >= \
                    self.settings.detect_model_snapshot_seconds:
                self.model[source] = monitor.model_state()
                self.model_saved[source] = now

    # -- the timers -------------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> int:
        """Close ended windows, score them, judge rule windows; send the alerts. `now`
        (seconds) is the clock, `time.time()` by default (benchmarks pass their own).
        Scoring stops after `TICK_SHARE` of the timer's interval (wall clock); the next tick
        finishes that pass over the sources before it starts a new one."""
        now = time.time() if now is None else now
        alerts = []
        # let the agents and the other timers run every YIELD_AFTER s of work (10,000
        # sources' windows take seconds; 1,000 new sources once held the loop for ~30 s,
        # bench/results/FINDINGS.md 17)
        turn = Turns(YIELD_AFTER)
        stop = time.perf_counter() + TICK_SHARE * self.interval
        if self._closing is None:
            self._closing = self.windows.closing(now)
        light_every = self.settings.detect_light_snapshot_seconds
        for window in self._closing:
            source = window.source
            monitor = self.monitors.get(source)
            partition = self.partition_of.get(source)
            if monitor is not None and partition is not None:
                findings = monitor.observe(window)
                for finding in findings:
                    alerts.append(anomaly_alert(self.grouper, finding, now))
                saved = self.light_saved.get(source)
                if saved is None:  # first window here: spread the sources' writes over time
                    saved = self.light_saved[source] = now - light_every * spread(source)
                if findings or now - saved >= light_every:
                    self.pending_light.setdefault(partition, set()).add(source)
                    self.light_saved[source] = now
            await turn.maybe()
            if time.perf_counter() >= stop:
                break
        else:
            self._closing = None
        for source in self.windows.take_dropped():
            self.evict_one(source)
            await turn.maybe()
        await self.send_rule_counts()
        alerts += self.rules.tick(now, owns=self.owns)
        for alert in alerts:
            key, value = alert["tenant_id"].encode(), encode(alert)
            await self.topics.alerts.send(key=key, value=value,
                                          headers=self.stamps.sign(key, value, kind=ALERTS))
            METRICS.inc("laas_alerts_total", kind=alert["kind"])
            log.info("alert %s (%s, occurrence %d): %s", alert["id"], alert["kind"],
                     alert["occurrences"], alert["title"])
        return len(alerts)

    async def start(self) -> None:
        try:
            await self.reload_rules()
            await self.restore_alerts()
        finally:
            self.started.set()

    async def restore_alerts(self) -> None:
        """Open alert groups and rule cooldowns from the alerts index
        (`app.pipeline.alerting.restore`):
        after a restart, a condition still firing joins its open alert."""
        since = time.time() - max(self.settings.alert_group_seconds, RESTORE_HORIZON)
        try:
            found = await self.resources.es.search(
                index=alerts_index(self.settings), ignore_unavailable=True, size=10_000,
                query={"range": {"last_fired": {"gte": int(since * 1000),
                                                "format": "epoch_millis"}}})
        except Exception as exc:  # noqa: BLE001 - start anyway, with fresh groups
            log.warning("detect: open alerts not restored (%r); a condition firing again "
                        "opens a new alert", exc)
            return
        restored = restore(self.grouper, self.rules,
                           (hit["_source"] for hit in found["hits"]["hits"]))
        log.info("detect: %d open alert groups restored", restored)

    async def reload_rules(self) -> None:
        try:
            rules = await load_rules(self.resources.rules)
        except Exception as exc:  # noqa: BLE001 - keep the last rule set
            log.warning("alert rules: reload failed (%r); keeping %d tenants' rules", exc,
                        len(self.rules.by_tenant))
            return
        self.rules.load(rules, time.time())
        self.counter.load(rules)

    async def send_rule_counts(self) -> None:
        for partial in self.counter.take():
            tenant = partial["tenant_id"]
            key, value = tenant.encode(), json.dumps(partial).encode()
            await self.topics.rule_counts.send(
                key=key, value=value, headers=self.stamps.sign(key, value, kind=RULE_COUNTS),
                partition=tenant_partition(tenant, self.settings.partitions))

    def owns(self, tenant_id: str) -> bool:
        """Whether this worker judges the tenant's rules (owns its `rule-counts` partition)."""
        partition = tenant_partition(tenant_id, self.settings.partitions)
        topic = self.topics.rule_counts.get_topic_name()
        return any(tp.topic == topic and tp.partition == partition
                   for tp in self.app.consumer.assignment())

    def forget(self) -> None:
        """Partitions revoked: drop in-memory monitors (rebuilt from the tables on demand)."""
        self.monitors.clear()
        self.partition_of.clear()
        self.per_tenant.clear()
        self.pending_light.clear()
        self.pending_evicted.clear()
        self.model_saved.clear()
        self.light_saved.clear()
        self.windows = self._new_windows()
        self._closing = None

    def _new_windows(self) -> Windows:
        return Windows(size=self.settings.detect_window_seconds,
                       lateness=min(2.0, self.settings.detect_window_seconds / 2),
                       forget_after=self.settings.detect_idle_seconds,
                       max_sources=self.settings.detect_max_sources)


RULE_GRACE = 3.0  # seconds before a below-rule window is judged (shares are sent every tick)


def spread(source: str) -> float:
    """A fixed share in [0, 1) per source: sources that appear together are not written
    together."""
    return (zlib.crc32(source.encode()) % 1000) / 1000


def tenant_partition(tenant_id: str, partitions: int) -> int:
    """The `rule-counts` partition of a tenant (stable across processes, unlike `hash`)."""
    return zlib.crc32(tenant_id.encode()) % partitions


def register(app: faust.App, topics: Topics, resources: Resources) -> Detection:
    settings = resources.settings
    detection = Detection(app, topics, resources)

    @app.agent(topics.rule_counts, name="rules", concurrency=1)
    async def rules_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if not detection.stamps.valid_message(event.message, kind=RULE_COUNTS):
                log.warning("rule-counts: skipping a message not signed by LaaS at %s/%d/%d",
                            event.message.topic, event.message.partition, event.message.offset)
                continue
            try:
                detection.rules.add(json.loads(event.value))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("rule-counts: skipping an undecodable message (%r)", exc)

    @app.agent(topics.events, name="detect", concurrency=1)
    async def detect_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                events = decode_shared(event.message, detection.stamps)
            except (ValueError, TypeError, KeyError):
                continue  # the index stage dead-letters undecodable messages
            await detection.started.wait()
            METRICS.inc("laas_events_in_total", len(events), stage="detect")
            detection.observe(events, event.message.partition)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        detection.forget()

    @app.timer(detection.interval)
    async def detect_tick() -> None:
        if not detection.started.is_set():
            return
        try:
            await detection.tick()
        except Exception:  # noqa: BLE001 - the next tick goes on
            log.exception("detect: tick failed")

    @app.timer(settings.alert_rules_refresh_seconds)
    async def rules_reload() -> None:
        await detection.reload_rules()

    @app.task
    async def detect_start() -> None:
        await detection.start()

    return detection
