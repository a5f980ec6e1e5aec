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
