"""The demo as a new user runs it, with the real packaged local teacher: its teacher must beat the majority class."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from terakoya.demo import bundled_data


@pytest.mark.slow
def test_demo_teacher_beats_the_majority_class(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "160", "HF_HUB_OFFLINE": "1"}
    for key in [k for k in env if k.startswith("TERAKOYA_")]:
        env.pop(key)
    out = subprocess.run(
        [sys.executable, "-m", "terakoya", "demo", str(tmp_path / "demo")],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "reports" / "latest" / "report.json").read_text())
    with (bundled_data() / "fin_news.csv").open(encoding="utf-8", newline="") as fh:
        test_labels = [row["label"] for row in csv.DictReader(fh) if row["split"] == "test"]
    majority = Counter(test_labels).most_common(1)[0][1] / len(test_labels)
    assert report["teacher"]["accuracy"] > majority + 0.05, (report["teacher"]["accuracy"], majority)
    # the first lines say in plain words whether the student beats the teacher, and at what expert cost
    assert report["findings"][0].startswith("The student ")
    assert any(line.startswith("Expert cost:") for line in report["findings"][:4])
    assert report["experts_alone"]["available"] is True
    assert "The student " in out.stdout and "Experts alone" in out.stdout
