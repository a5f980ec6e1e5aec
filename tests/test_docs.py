"""Docs are tested: every CLI command and every setting appears in docs/reference.md and the README's commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from terakoya.cli import app
from terakoya.settings import settings_reference

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    out = []

    def walk(cmd: object, prefix: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, f"{prefix}{name} ")
            else:
                out.append(f"{prefix}{name}")
                for p in sub.params:
                    if p.param_type_name == "option":
                        out.append(f"{prefix}{name} {p.opts[0]}")

    walk(typer.main.get_command(app), "")
    return out


def test_every_command_and_option_documented() -> None:
    ref = (ROOT / "docs" / "reference.md").read_text()
    for entry in _commands():
        name, _, option = entry.partition(" --")
        assert f"`terakoya {name}`" in ref, f"command `terakoya {name}` missing from docs/reference.md"
        if option:
            assert f"--{option}" in ref, f"option --{option} of `terakoya {name}` missing from docs/reference.md"


def test_every_setting_documented() -> None:
    ref = (ROOT / "docs" / "reference.md").read_text()
    for name, _default, _desc in settings_reference():
        assert f"`{name}`" in ref, f"setting {name} missing from docs/reference.md (run python tools/gen_reference.py)"


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    known = {c.split(" --")[0].split()[0] for c in _commands()}
    used = set(re.findall(r"^terakoya (\w+)", readme, flags=re.M))
    assert used, "README shows no terakoya commands"
    assert used <= known, f"README uses unknown commands: {used - known}"


def test_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
