"""`laas worker`: the Faust worker process that runs every stream stage.

With `analytics_process` (the default) the worker is three processes: this one runs normalize
(with templates) and the operations tasks; a child runs the analytics app — stats, detect,
rules and the alert store, a second Faust app `{app_id}-analytics` with its own consumer group,
changelogs and state directory — and another child the index sink (`index_sink_process`).
Process lifetime: agents/children.py. Without it, one Faust app runs everything.
"""

from __future__ import annotations

import asyncio
from multiprocessing.connection import Connection
from typing import Literal

import faust
from mode.utils.times import want_seconds

from agents.resources import Resources
from app.kafka.admin import Say, ensure_topics
from app.kafka.topics import EVENTS, RAW, Topics, TopicSpec, laas_topic_specs, topic_name
from app.pipeline.faust_app import analytics_app_id, build_worker
from app.runtime.gc_tuning import tune_analytics_gc, tune_gc
from app.runtime.loop_lag import LoopLag
from app.settings import Settings

Role = Literal["all", "stream", "analytics"]


def create_worker_app(settings: Settings, role: Role = "all") -> faust.App:
    """The worker's Faust app: LaaS topics declared (created beforehand by
    `ensure_worker_topics`), stages of `role` registered: "stream" (normalize, index,
    operations), "analytics" or "all" of them."""
    app, topics = build_worker(settings, analytics=role == "analytics")
    app.conf.broker_session_timeout = settings.worker_session_timeout
    app.conf.broker_heartbeat_interval = min(3.0, settings.worker_session_timeout / 5)
    resources = Resources.build(settings)  # closed once the app's agents and tasks stopped
    app.async_exit_stack.push_async_callback(resources.close)
    register_stages(app, topics, resources, role)
    lag = LoopLag("analytics" if role == "analytics" else "worker")

    @app.task
    async def event_loop_lag() -> None:
        await lag.run()

    return app


def _faust_topic_specs(app: faust.App) -> list[TopicSpec]:
    """The changelog topics of `app`'s tables and Faust's leader topic, with the partitions,
    replication and configs Faust itself would create them with."""
    topics = [table.changelog_topic for table in app.tables.values()]
    topics.append(app._leader_assignor._leader_topic)  # type: ignore[attr-defined]
    specs = []
    for topic in topics:
        config = {}
        flags = [flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting))
                 if on]
        if flags:
            config["cleanup.policy"] = ",".join(flags)
        if topic.retention:
            config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000.0))
        config.update({k: str(v) for k, v in (topic.config or {}).items()})
        specs.append(TopicSpec(topic.get_topic_name(),
                               topic.partitions or app.conf.topic_partitions,
                               topic.replicas or app.conf.topic_replication_factor, config))
    return specs


def worker_topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic a worker uses: the LaaS topics, then the changelog and leader topics of its
    Faust apps (the stream app and, with `analytics_process`, the analytics app)."""
    roles: list[Role] = ["stream", "analytics"] if settings.analytics_process else ["all"]
    specs = laas_topic_specs(settings)
    for role in roles:
        specs += _faust_topic_specs(create_worker_app(settings, role))
    return specs


def consumer_groups(settings: Settings) -> dict[str, list[str]]:
    """The worker's consumer groups and the LaaS topics each reads."""
    from agents.index import index_group

    raw, events = topic_name(settings, RAW), topic_name(settings, EVENTS)
    groups = {index_group(settings): [events]}
    if settings.analytics_process:  # normalize here, analytics in a child
        groups |= {settings.app_id: [raw], analytics_app_id(settings): [events]}
    else:
        groups |= {settings.app_id: [raw, events]}
    return groups


def ensure_worker_topics(settings: Settings, say: Say) -> None:
    """Create (or check) every topic of the worker before any of its consumers joins a group,
    telling `say` what it created or waits for. Raises `app.kafka.admin.TopicMismatch` or
    `KafkaNotReachable`."""
    ensured = asyncio.run(ensure_topics(settings, worker_topic_specs(settings), say=say))
    if ensured.created:
        say(f"created Kafka topics: {', '.join(ensured.created)}")


def register_stages(app: faust.App, topics: Topics, resources: Resources,
                    role: Role = "all") -> None:
    """The stream stages (agents/), each given the process's `resources`: normalize (with
    templates), index and operations; stats, detect and alerts (the analytics). With
    `analytics_process` / `index_sink_process` the analytics app / the index stage run in child
    processes (agents/children.py) with resources of their own."""
    from agents import alerts, detect, index, normalize, ops, stats, templates
    from agents.children import supervise
    from agents.index_process import index_main

    settings = resources.settings
    if role in ("all", "stream"):
        normalize.register(app, topics, resources,
                           templates=templates.register(app, topics, resources))
        if settings.index_sink_process:

            @app.task
            async def index_sink() -> None:
                await supervise("index", index_main, settings)
        else:
            index.register(app, topics, resources)
        ops.register(app, topics, resources)
    if role in ("all", "analytics"):
        stats.register(app, topics, resources)
        detect.register(app, topics, resources)
        alerts.register(app, topics, resources)
    if role == "stream":

        @app.task
        async def analytics() -> None:
            await supervise("analytics", analytics_main, settings)


def analytics_main(settings: Settings, conn: Connection) -> None:
    """Entry point of the analytics child process."""
    from agents.children import child_logging, report_to_worker

    child_logging()
    report_to_worker(conn)
    app = create_worker_app(settings, role="analytics")
    tune_analytics_gc(settings)
    faust.Worker(app, loglevel="INFO").execute_from_commandline()


def run_worker(settings: Settings) -> None:
    """Run the worker; its topics must exist (`ensure_worker_topics`, done by `laas worker`)."""
    app = create_worker_app(settings, role="stream" if settings.analytics_process else "all")
    tune_gc(settings)
    faust.Worker(app, loglevel="INFO").execute_from_commandline()
