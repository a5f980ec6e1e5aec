"""Quality control from the command line, as a user runs it: agreement, reliability, provenance, pauses."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from test_cli import run

LABELS = ("negative", "neutral", "positive")
WORDS = {"negative": "losses widened", "neutral": "the meeting is on", "positive": "profits rose"}


def _csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_status_quality_show_provenance_and_unpause(tmp_path: Path) -> None:
    assert run("init", "q", cwd=tmp_path).returncode == 0
    folder = tmp_path / "q"
    rng = random.Random(1)
    truth = {f"p{i}": LABELS[i % 3] for i in range(45)}
    _csv(folder / "pool.csv", [{"id": k, "text": f"{WORDS[v]} in unit {k}"} for k, v in truth.items()])
    _csv(folder / "test.csv", [{"id": f"t{i}", "text": f"{WORDS[LABELS[i % 3]]} at t{i}", "label": LABELS[i % 3]}
                               for i in range(15)])  # fmt: skip
    assert run("import", "test.csv", "--id-column", "id", "--label-column", "label", "--split", "test",
               cwd=folder).returncode == 0  # fmt: skip
    out = run("import", "pool.csv", "--id-column", "id", cwd=folder)
    assert out.returncode == 0, out.stderr
    answers = []
    for item, label in truth.items():
        for person, accuracy in (("ann", 0.95), ("ben", 0.9), ("cyd", 0.34)):
            given = label if rng.random() < accuracy else rng.choice([x for x in LABELS if x != label])
            answers.append({"id": item, "label": given, "person": person, "rationale": f"{person} read it"})
    _csv(folder / "answers.csv", answers)
    out = run("answer", "answers.csv", cwd=folder)
    assert out.returncode == 0, out.stderr

    out = run("status", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "answers per item" in out.stdout and "3.0" in out.stdout and "fleiss kappa" in out.stdout
    waiting = next(line for line in out.stdout.splitlines() if "waiting for review" in line)
    assert int(waiting.split("│")[2].strip()) > 0  # the random clicker disagrees with the others

    out = run("quality", "show", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "Agreement among 3 people on 45 items" in out.stdout and "Fleiss' kappa" in out.stdout
    assert "135 answers on 45 items: 3.00 per item (45 with 3)" in out.stdout
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in out.stdout.splitlines() if line.count("│") == 8]
    estimated = {row[0]: float(row[5].rstrip("%")) for row in cells}
    assert set(estimated) == {"ann", "ben", "cyd"}
    assert estimated["cyd"] < 50 < min(estimated["ann"], estimated["ben"])  # the random clicker is found out

    out = run("--set", "student.kind=linear", "--set", "quality.aggregator=dawid_skene", "train", cwd=folder)
    assert out.returncode == 0, out.stderr
    out = run("quality", "provenance", "p4", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "aggregated by dawid_skene.crowdkit-1.4.2" in out.stdout
    assert out.stdout.count("   answer ") == 3 and "ann said" in out.stdout and "cyd read it" in out.stdout
    out = run("quality", "provenance", "t1", cwd=folder)
    assert "no student run has trained on this item yet" in out.stdout
    out = run("quality", "provenance", "nope", cwd=folder)
    assert out.returncode == 1 and "no item 'nope' in this project" in out.stderr

    out = run("quality", "unpause", "ann", cwd=folder)
    assert out.returncode == 1 and "ann is not paused on this project" in out.stderr
    out = run("quality", "unpause", "zed", cwd=folder)
    assert out.returncode == 1 and "nobody is called 'zed'" in out.stderr
