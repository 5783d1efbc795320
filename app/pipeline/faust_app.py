"""The Faust application object: one per worker process, built from the settings."""

from __future__ import annotations

import faust

from app.kafka.client import faust_credentials
from app.kafka.topics import EVENTS, Topics, declare_topics, topic_name
from app.settings import Settings


def create_app(
    settings: Settings, *, app_id: str | None = None, store: str | None = None,
    datadir: str = "worker", web: bool = True,
) -> faust.App:
    """Build the Faust app with broker, table store and state directory from the settings."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id or settings.app_id,
        broker=f"kafka://{settings.kafka_servers}",
        broker_credentials=faust_credentials(settings),
        store=store or settings.table_store,
        datadir=str((settings.state_dir / datadir).resolve()),
        web_enabled=web,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,
        producer_linger=0.005,  # batch sends: one produce request per few ms, not per event
        # logs.events and the changelogs: 5-15x fewer bytes through Kafka and every reader's
        # socket for ~0.1 µs per event (app/ingest/writer.py measures the codecs)
        producer_compression_type="zstd",
        web_port=settings.worker_web_port,
        web_bind=settings.web_host,
        autodiscover=False,
    )


def analytics_app_id(settings: Settings) -> str:
    """The app id (consumer group, changelog prefix) of the analytics app."""
    return f"{settings.app_id}-analytics"


def build_worker(settings: Settings, *, analytics: bool = False) -> tuple[faust.App, Topics]:
    """The worker's app (or, with `analytics`, the analytics app of its child process) with the
    LaaS topics declared on it (agents register themselves here)."""
    if analytics:
        from app.pipeline.watchdog import register_faust

        app = create_app(settings, app_id=analytics_app_id(settings), datadir="analytics",
                         web=False)
        # The analytics child's own stalled-partition watchdog (the stream app's: agents/ops.py)
        register_faust(app, settings, [topic_name(settings, EVENTS)])
    else:
        app = create_app(settings)
    return app, declare_topics(app, settings)


def table_options(settings: Settings) -> dict[str, int]:
    """RocksDB sizes for every table: Faust's defaults (a 2 GB block cache and 3 x 64 MB write
    buffers per table partition) let a worker's memory grow for hours (bench/results/soak.md)."""
    mb = 1024 * 1024
    return {"block_cache_size": settings.table_cache_mb * mb,
            "write_buffer_size": settings.table_write_buffer_mb * mb,
            "max_write_buffer_number": 2}
