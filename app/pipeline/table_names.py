"""The names of the Faust tables (declared in tables/) and of their changelog topics.

A table's state lives in its changelog topic, `{app id}-{table name}-changelog` (Faust's rule):
a renamed table would start empty after an upgrade, so these names never change. The stream
app (app id `app_id`) holds `templates`; the analytics app (`{app_id}-analytics`, or the stream
app itself without `analytics_process`) holds the others.
"""

from __future__ import annotations

SOURCE_TOTALS = "source-totals"
SOURCE_WINDOWS = "source-windows"
TEMPLATES = "templates"
DETECT_LIGHT = "detect-light"
DETECT_MODEL = "detect-model"


def changelog_topic(app_id: str, table: str) -> str:
    """The changelog topic Faust gives table `table` of the app `app_id`."""
    return f"{app_id}-{table}-changelog"
