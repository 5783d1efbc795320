"""The Faust tables (tables/): what each declaring function gives, and that the worker's apps
hold exactly these tables, with the changelog topics their state lives in (replay reads the
templates changelog by name, app/pipeline/table_names.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import pytest

from agents.worker import create_worker_app
from app.pipeline.faust_app import analytics_app_id, create_app
from app.pipeline.table_names import TEMPLATES, changelog_topic
from app.settings import Settings, load_settings
from tables.detection import detect_light, detect_model
from tables.sources import source_totals, source_windows
from tables.templates import templates

STREAM_TABLES = [templates]
ANALYTICS_TABLES = [source_totals, source_windows, detect_light, detect_model]


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(state_dir=tmp_path, app_id="tables-test", partitions=5,
                         stats_window_seconds=30, stats_window_retention=600, **overrides)


def declared(settings: Settings, declare: Callable[[faust.App, Settings], Any]) -> Any:
    """The table `declare` puts on a new app (the window wrapper's table for a windowed one)."""
    app = create_app(settings, store="memory://", web=False)
    result = declare(app, settings)
    (table,) = app.tables.values()
    assert getattr(result, "table", result) is table
    return table


def test_each_function_declares_one_table_with_its_codec_window_and_changelog(
        tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    tables = {t.name: t for t in (declared(settings, f)
                                  for f in STREAM_TABLES + ANALYTICS_TABLES)}
    assert len(tables) == 5
    for name, table in tables.items():
        topic = table.changelog_topic
        assert topic.get_topic_name() == changelog_topic(settings.app_id, name)
        assert topic.partitions == settings.partitions and topic.compacting
        assert table.key_serializer == "json"
    windowed = [t for t in tables.values() if t.window is not None]
    (windows,) = windowed
    assert windows.window.size == 30 and windows.window.expires == 600
    assert windows.changelog_topic.deleting and windows.changelog_topic.retention == 600
    plain = [t for t in tables.values() if t.window is None]
    assert not any(t.changelog_topic.deleting for t in plain)
    binary = {t.name for t in tables.values() if t.value_type is bytes}
    assert binary and all(tables[n].value_serializer == "raw" for n in binary)
    assert all(t.value_serializer == "json" for t in tables.values() if t.name not in binary)


@pytest.mark.parametrize("analytics_process", [True, False])
def test_the_worker_apps_hold_exactly_the_declared_tables(tmp_path: Path,
                                                          analytics_process: bool) -> None:
    settings = settings_for(tmp_path, analytics_process=analytics_process)
    names = {"stream": {declared(settings, f).name for f in STREAM_TABLES},
             "analytics": {declared(settings, f).name for f in ANALYTICS_TABLES}}
    if analytics_process:
        apps = {"stream": create_worker_app(settings, "stream"),
                "analytics": create_worker_app(settings, "analytics")}
        assert apps["analytics"].conf.id == analytics_app_id(settings)
    else:
        app = create_worker_app(settings, "all")
        apps, names = {"all": app}, {"all": names["stream"] | names["analytics"]}
    changelogs: set[str] = set()
    for role, app in apps.items():
        assert set(app.tables) == names[role], role
        for name, table in app.tables.items():
            assert table.changelog_topic.get_topic_name() == changelog_topic(app.conf.id, name)
            changelogs.add(table.changelog_topic.get_topic_name())
    # the stream app (app id `app_id`) writes the templates changelog replay reads
    assert changelog_topic(settings.app_id, TEMPLATES) in changelogs
