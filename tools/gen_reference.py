"""Write docs/reference.md from the CLI and the settings schema (run after changing either)."""

from __future__ import annotations

from pathlib import Path

import typer.main

from terakoya.cli import app
from terakoya.settings import settings_reference

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    group = typer.main.get_command(app)
    lines = [
        "# Reference",
        "",
        "Generated from the code by `python tools/gen_reference.py`; a test checks it is complete.",
        "",
    ]
    lines += [
        "## Commands",
        "",
        "Global options: `--project/-p FOLDER`, `--db URL`, `--set section.key=value` (repeatable), `--debug`.",
        "",
    ]

    def walk(cmd: object, prefix: str) -> None:
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if getattr(sub, "commands", None):
                walk(sub, f"{prefix}{name} ")
                continue
            lines.append(f"### `terakoya {prefix}{name}`")
            lines.append("")
            lines.append((sub.help or "").strip())
            lines.append("")
            for p in sub.params:
                flags = ", ".join(p.opts) if p.param_type_name == "option" else p.name.upper()
                lines.append(f"- `{flags}` — {getattr(p, 'help', '') or ''}")
            lines.append("")

    walk(group, "")
    lines += [
        "## Settings",
        "",
        "In `terakoya.toml` (top-level keys go under `[project]`), as `TERAKOYA_SECTION__KEY` in the",
        "environment (`TERAKOYA_DB` for `db`), or as `--set section.key=value`.",
        "",
    ]
    lines += ["| setting | default | meaning |", "|---|---|---|"]
    for name, default, desc in settings_reference():
        lines.append(f"| `{name}` | `{default}` | {desc} |")
    (ROOT / "docs" / "reference.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
