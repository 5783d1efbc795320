"""The templates stage's table (agents/templates.py): every raw partition's mined templates."""

from __future__ import annotations

import faust
from faust.types import TableT

from app.pipeline.faust_app import table_options
from app.pipeline.table_names import TEMPLATES
from app.settings import Settings


def templates(app: faust.App, settings: Settings) -> TableT:
    """Table `templates`: key `{raw partition}/{tenant_id}/{template_id}` (str), value the
    miner's record of the template (a JSON list, `Cluster.to_record()`, its former ids last;
    None when absent, the key deleted when the template is evicted or its id moved); JSON key
    and value. Written while an event of that raw partition is current, so the changelog
    partition is the raw partition. Changelog `{app id}-templates-changelog`, compacted,
    `partitions` partitions; replay reads it (app/pipeline/replay.py)."""
    schema: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")
    return app.Table(TEMPLATES, default=None, schema=schema, partitions=settings.partitions,
                     options=table_options(settings))
