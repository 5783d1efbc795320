"""The configuration table (docs/settings.md), generated from the settings model.

`python -m app.settings_doc` prints it, `--write` puts it into docs/settings.md between the
markers; a test keeps the file in step with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.settings import Settings

SETTINGS_DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"

BEGIN = "<!-- settings-table:begin -->"
END = "<!-- settings-table:end -->"


def markdown_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    prefix = Settings.model_config.get("env_prefix", "")
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "(empty)" if default is None else f"`{default}`"
        rows.append(f"| `{prefix}{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def write_table(path: Path = SETTINGS_DOC) -> None:
    """Replace the table between the markers of `path`, leaving the rest as it is."""
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write_table()
    else:
        print(markdown_table())
