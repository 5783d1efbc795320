"""The stats stage's tables (agents/stats.py): per-source running totals and time windows."""

from __future__ import annotations

from datetime import timedelta

import faust
from faust.types import TableT
from faust.types.tables import WindowWrapperT

from app.pipeline.faust_app import table_options
from app.pipeline.table_names import SOURCE_TOTALS, SOURCE_WINDOWS
from app.settings import Settings


def _json() -> faust.Schema:
    return faust.Schema(key_serializer="json", value_serializer="json")


def source_totals(app: faust.App, settings: Settings) -> TableT:
    """Table `source-totals`: key the source (`tenant/service/host`, str), value its running
    totals (a JSON dict, app/pipeline/stats.py; `{}` when absent); JSON key and value.
    Changelog `{app id}-source-totals-changelog`, compacted, `partitions` partitions
    (co-partitioned with `logs.events`, whose key is the source). RocksDB sizes from
    `table_options`."""
    return app.Table(SOURCE_TOTALS, default=dict, schema=_json(),
                     partitions=settings.partitions, options=table_options(settings))


def source_windows(app: faust.App, settings: Settings) -> WindowWrapperT:
    """Table `source-windows`: key the source (str), value the counts of one tumbling window
    of `stats_window_seconds` (a JSON dict, `{}` when absent); JSON key and value. Windows
    follow the arrival time of the `logs.events` message (`relative_to_stream`) and expire
    after `stats_window_retention` seconds. Changelog `{app id}-source-windows-changelog`,
    compacted and deleted after that retention (`cleanup.policy=compact,delete`,
    `retention.ms`), `partitions` partitions."""
    return app.Table(
        SOURCE_WINDOWS, default=dict, schema=_json(), partitions=settings.partitions,
        options=table_options(settings),
    ).tumbling(settings.stats_window_seconds,
               expires=timedelta(seconds=settings.stats_window_retention)
               ).relative_to_stream()
