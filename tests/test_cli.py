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


def test_init_records_the_database_so_later_commands_reach_it(tmp_path: Path) -> None:
    """`--db URL init` once left the next command in the folder to create and fill a second, SQLite database."""
    out = run("init", "fin", "--db", "sqlite:///shared.db", cwd=tmp_path)  # --db where people type it
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "fin"
    assert f'db = "sqlite:///{(tmp_path / "shared.db").resolve()}"' in (folder / "terakoya.toml").read_text()
    (folder / "data.csv").write_text("text,label\nProfit rose.,positive\nSales fell.,negative\n", encoding="utf-8")
    out = run("import", "data.csv", "--label-column", "label", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert not (folder / "terakoya.db").exists()
    assert "items" in run("status", cwd=folder).stdout
    # a --db / TERAKOYA_DB that disagrees with the file is refused, naming both
    out = run("status", cwd=folder, env={"TERAKOYA_DB": "sqlite:///other.db"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "records the database sqlite:///" in out.stderr and "other.db" in out.stderr
    assert "drop --db / unset TERAKOYA_DB" in out.stderr
    assert not (folder / "other.db").exists()
    # the same database given again (here relative to where the command runs) is fine
    assert run("--db", "sqlite:///../shared.db", "status", cwd=folder).returncode == 0


def test_init_keeps_a_password_out_of_the_project_file(tmp_path: Path, postgres_url: str) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@", 1)
    out = run("--db", with_password, "init", "fin", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "fin" / "terakoya.toml").read_text()
    assert f'db = "{postgres_url}"' in text and "s3cret" not in text
    assert "password is not written there" in out.stdout
    (tmp_path / "fin" / "d.csv").write_text("text\nProfit rose.\n", encoding="utf-8")
    out = run("import", "d.csv", cwd=tmp_path / "fin")  # the server trusts local connections: no password needed
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "fin" / "terakoya.db").exists()


def test_a_project_file_without_a_name_is_refused(tmp_path: Path) -> None:
    """An empty terakoya.toml silently opened a second project called 'terakoya' in the same database."""
    (tmp_path / "terakoya.toml").write_text("", encoding="utf-8")
    out = run("status", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "the project has no name; add it under [project], e.g. name =" in out.stderr
    assert not (tmp_path / "terakoya.db").exists()


def test_usage_errors_are_printed_as_usage_errors(tmp_path: Path) -> None:
    out = run("init", "fin", "--bogus", cwd=tmp_path)
    assert out.returncode == 2
    assert "No such option: --bogus" in out.stderr and "Usage: terakoya init" in out.stderr
    assert "unexpected error" not in out.stderr


def test_unwritable_export_path_and_non_database_file_are_clear(tmp_path: Path) -> None:
    run("init", "fin", cwd=tmp_path)
    folder = tmp_path / "fin"
    out = run("export", "/proc/no-such-place/x.csv", cwd=folder)
    assert out.returncode == 1 and "unexpected error" not in out.stderr
    (folder / "notes.txt").write_text("not a database\n" * 100, encoding="utf-8")
    out = run("status", cwd=folder, env={"TERAKOYA_DB": "sqlite:///notes.txt"})
    assert out.returncode == 1 and "unexpected error" not in out.stderr, out.stderr
    assert "file is not a database; point --db / TERAKOYA_DB" in out.stderr


def test_the_text_size_limit_is_a_setting_the_import_command_reads(tmp_path: Path) -> None:
    run("init", "fin", cwd=tmp_path)
    folder = tmp_path / "fin"
    (folder / "d.csv").write_text("text\nshort\n" + "x" * 50 + "\n", encoding="utf-8")
    out = run("--set", "import.max_text_chars=20", "import", "d.csv", cwd=folder)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "line 3" in out.stderr and "20" in out.stderr
    assert run("--set", "import.max_text_chars=100", "import", "d.csv", cwd=folder).returncode == 0
