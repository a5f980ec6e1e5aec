"""`terakoya demo` end to end, as a user runs it (a keyword teacher stands in for the slow local model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FAKES = Path(__file__).parent / "fakes"


def test_demo_runs_the_whole_loop_and_writes_the_report(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "COLUMNS": "160",
        "PYTHONPATH": str(FAKES),
        "TERAKOYA_TEACHER__KIND": "python",
        "TERAKOYA_TEACHER__FUNCTION": "keyword_teacher:label",
    }
    out = subprocess.run(
        [sys.executable, "-m", "terakoya", "demo", str(tmp_path / "demo"), "--budget", "40"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Experts are SIMULATED here" in out.stdout
    report = json.loads((tmp_path / "demo" / "reports" / "latest" / "report.json").read_text())
    assert report["pool_items"] == 454
    assert report["expert_items"] >= 40
    for who in ("teacher", "student"):
        assert 0.0 <= report[who]["accuracy"] <= 1.0
        assert report[who]["items_per_second"] > 0
    assert (tmp_path / "demo" / "reports" / "latest" / "report.html").is_file()

    again = subprocess.run(
        [sys.executable, "-m", "terakoya", "demo", str(tmp_path / "demo"), "--budget", "40"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing the earlier run" in again.stdout
    rerun = json.loads((tmp_path / "demo" / "reports" / "latest" / "report.json").read_text())
    assert rerun["expert_items"] == report["expert_items"]
