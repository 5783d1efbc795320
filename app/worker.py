"""`laas worker`: the Faust worker process that runs every stream stage."""

from __future__ import annotations

import faust

from app.settings import Settings
from app.streams import build_worker
from app.topics import Topics


def create_worker_app(settings: Settings) -> faust.App:
    """The worker's Faust app: LaaS topics declared (and created on start), stages registered."""
    app, topics = build_worker(settings)
    app.conf.broker_session_timeout = settings.worker_session_timeout
    app.conf.broker_heartbeat_interval = min(3.0, settings.worker_session_timeout / 5)

    @app.task(on_leader=False)
    async def declare_topics() -> None:
        for topic in (topics.raw, topics.events, topics.deadletter, topics.alerts,
                      topics.rule_counts):
            await topic.maybe_declare()

    register_stages(app, topics, settings)
    return app


def register_stages(app: faust.App, topics: Topics, settings: Settings) -> None:
    """The stream stages (agents/): normalize (with templates), stats, detect, alerts, index,
    and operations."""
    from agents import alerts, detect, index, normalize, ops, stats, templates

    normalize.register(app, topics, settings, templates=templates.register(app, settings))
    stats.register(app, topics, settings)
    detect.register(app, topics, settings)
    alerts.register(app, topics, settings)
    index.register(app, settings)
    ops.register(app, settings)


def run_worker(settings: Settings) -> None:
    app = create_worker_app(settings)
    faust.Worker(app, loglevel="INFO").execute_from_commandline()
