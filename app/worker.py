"""`laas worker`: the Faust worker process that runs every stream stage.

With `analytics_process` (the default) the worker is three processes: this one runs normalize
(with templates) and the operations tasks; a child runs the analytics app — stats, detect,
rules and the alert store, a second Faust app `{app_id}-analytics` with its own consumer group,
changelogs and state directory — and another child the index sink (`index_sink_process`).
Process lifetime: app/children.py. Without it, one Faust app runs everything.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Literal

import faust

from app.gc_tuning import tune_gc
from app.settings import Settings
from app.streams import build_worker
from app.topics import Topics

Role = Literal["all", "stream", "analytics"]


def create_worker_app(settings: Settings, role: Role = "all") -> faust.App:
    """The worker's Faust app: LaaS topics declared (and created on start), stages of `role`
    registered: "stream" (normalize, index, operations), "analytics" or "all" of them."""
    app, topics = build_worker(settings, analytics=role == "analytics")
    app.conf.broker_session_timeout = settings.worker_session_timeout
    app.conf.broker_heartbeat_interval = min(3.0, settings.worker_session_timeout / 5)

    @app.task(on_leader=False)
    async def declare_topics() -> None:
        for topic in (topics.raw, topics.events, topics.deadletter, topics.alerts,
                      topics.rule_counts):
            await topic.maybe_declare()

    register_stages(app, topics, settings, role)
    return app


def register_stages(app: faust.App, topics: Topics, settings: Settings,
                    role: Role = "all") -> None:
    """The stream stages (agents/): normalize (with templates), index and operations; stats,
    detect and alerts (the analytics)."""
    from agents import alerts, detect, index, normalize, ops, stats, templates
    from app.children import supervise

    if role in ("all", "stream"):
        normalize.register(app, topics, settings, templates=templates.register(app, settings))
        index.register(app, settings)
        ops.register(app, settings)
    if role in ("all", "analytics"):
        stats.register(app, topics, settings)
        detect.register(app, topics, settings)
        alerts.register(app, topics, settings)
    if role == "stream":

        @app.task
        async def analytics() -> None:
            await supervise("analytics", analytics_main, settings)


def analytics_main(settings: Settings, conn: Connection) -> None:
    """Entry point of the analytics child process."""
    from app.children import child_logging, report_to_worker

    child_logging()
    report_to_worker(conn)
    app = create_worker_app(settings, role="analytics")
    tune_gc(settings)
    faust.Worker(app, loglevel="INFO").execute_from_commandline()


def run_worker(settings: Settings) -> None:
    app = create_worker_app(settings, role="stream" if settings.analytics_process else "all")
    tune_gc(settings)
    faust.Worker(app, loglevel="INFO").execute_from_commandline()
