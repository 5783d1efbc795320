"""The detect stage's tables (agents/detect.py): each source's anomaly monitor, in two parts."""

from __future__ import annotations

import faust
from faust.types import TableT

from app.pipeline.faust_app import table_options
from app.pipeline.table_names import DETECT_LIGHT, DETECT_MODEL
from app.settings import Settings


def _bytes_table(app: faust.App, name: str, settings: Settings) -> TableT:
    schema: faust.Schema = faust.Schema(key_serializer="json", value_serializer="raw")
    # value_type=bytes: the RocksDB store decodes with the table's own serializer (from
    # value_type, json by default), not the schema's; after a restart json fails on zlib.
    return app.Table(name, default=None, schema=schema, value_type=bytes,
                     partitions=settings.partitions, options=table_options(settings))


def detect_light(app: faust.App, settings: Settings) -> TableT:
    """Table `detect-light`: key the source (`tenant/service/host`, JSON str), value the
    monitor without its model (`SourceMonitor.light_state()`, a zlib-compressed pickle of a
    few hundred bytes, raw codec; None when absent). Changelog
    `{app id}-detect-light-changelog`, compacted, `partitions` partitions (co-partitioned with
    `logs.events`)."""
    return _bytes_table(app, DETECT_LIGHT, settings)


def detect_model(app: faust.App, settings: Settings) -> TableT:
    """Table `detect-model`: key the source (JSON str), value the monitor's compact
    Half-Space Trees state (`SourceMonitor.model_state()`, a zlib-compressed pickle of 1-3 KB,
    raw codec; None when absent). Changelog `{app id}-detect-model-changelog`, compacted,
    `partitions` partitions."""
    return _bytes_table(app, DETECT_MODEL, settings)
