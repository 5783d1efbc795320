"""`laas worker`: the Faust worker process that runs every stream stage."""

from __future__ import annotations

import faust

from app.settings import Settings
from app.streams import build_worker


def create_worker_app(settings: Settings) -> faust.App:
    """The worker's Faust app: LaaS topics declared (and created on start), stages registered."""
    app, topics = build_worker(settings)

    @app.task(on_leader=False)
    async def declare_topics() -> None:
        for topic in (topics.raw, topics.events, topics.deadletter, topics.alerts):
            await topic.maybe_declare()

    return app


def run_worker(settings: Settings) -> None:
    app = create_worker_app(settings)
    faust.Worker(app, loglevel="INFO").execute_from_commandline()
