"""The CLI as a user runs it: a real process, one clear message on errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TERAKOYA = [sys.executable, "-m", "terakoya"]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([*TERAKOYA, *args], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=120)


def test_init_then_status(tmp_path: Path) -> None:
    out = run("init", "fin", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "fin" / "terakoya.toml").is_file()
    out = run("status", cwd=tmp_path / "fin")
    assert out.returncode == 0, out.stderr
    assert "teacher cost usd" in out.stdout


def test_error_is_one_message_without_traceback(tmp_path: Path) -> None:
    out = run("status", cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "error: no terakoya.toml in" in out.stderr
    assert "run `terakoya init NAME`" in out.stderr


def test_debug_flag_shows_traceback(tmp_path: Path) -> None:
    out = run("--debug", "status", cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" in out.stderr


def test_bad_flag_value_is_clear(tmp_path: Path) -> None:
    run("init", "fin", cwd=tmp_path)
    out = run("--set", "teacher.concurrency=0", "status", cwd=tmp_path / "fin")
    assert out.returncode == 1
    assert "teacher.concurrency: Input should be greater than or equal to 1 (got 0)" in out.stderr
    assert "Traceback" not in out.stderr


def test_user_data_is_printed_as_it_is_never_as_markup(tmp_path: Path) -> None:
    """Square brackets in data once read as the terminal library's markup: a label `[/x]` crashed the import."""
    run("init", "fin", cwd=tmp_path)
    folder = tmp_path / "fin"
    (folder / "data.csv").write_text("text,label\nProfit rose.,[/x]\nSales fell.,[bold]b\n", encoding="utf-8")
    out = run("import", "data.csv", "--text-column", "text", "--label-column", "label", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "[/x]" in out.stdout and "[bold]b" in out.stdout
    out = run("answer", "missing[/x].csv", "--person", "x", cwd=folder)
    assert out.returncode == 1 and "missing[/x].csv" in out.stderr and "Traceback" not in out.stderr
    out = run("--set", "project.name=[/p]", "status", cwd=folder)
    assert "Traceback" not in out.stderr + out.stdout
