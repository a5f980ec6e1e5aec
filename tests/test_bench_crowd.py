"""The quality-control benchmark (bench/crowd.py) on a tiny synthetic data set: its result's shape, the targets it
reports, and the two effects it exists to show (Dawid–Skene with the teacher over majority vote when a spammer and
an adversary answer; the pause rule stopping them and sparing careful trainers). Seeded, so deterministic."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import crowd, datasets  # noqa: E402
from bench.datasets import Row  # noqa: E402

CLASSES = ["positive", "negative", "neutral"]
CUES = {
    "positive": "profit rose grew record strong improved beat gain",
    "negative": "loss fell weak cut dropped decline missed lower",
    "neutral": "meeting office held board listed report published located",
}
FILLER = ["the", "of", "in", "and", "a", "to", "for", "on", "with", "said", "shares", "year", "quarter", "company"]


def _rows(n: int = 300, seed: int = 0) -> list[Row]:
    """Sentences with a cue word for their label (FPB-like label shares), difficulty levels 0-3 at random."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choices(CLASSES, weights=[0.27, 0.13, 0.6])[0]
        words = [*rng.sample(CUES[label].split(), 2), *rng.sample(FILLER, 6)]
        rng.shuffle(words)
        rows.append(Row(f"s-{i}", " ".join(words) + f" {i}", label, rng.randrange(4)))
    return rows


TINY = crowd.Config(seeds=1, answered=150, budget=90, trainers=40, horizon=30, settings=("k=3",))


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return crowd.run(_rows(), CLASSES, TINY, say=lambda _: None)


def test_result_has_every_table_and_target(results: dict[str, Any]) -> None:
    summary = results["summary"]
    assert isinstance(summary, dict)
    assert summary["settings"] == ["k=3"]
    for team in ("mixed", "honest"):
        cell = summary["aggregation"][team]["k=3"]
        assert set(crowd.METHODS) <= set(cell)
        assert cell["answers_per_item"]["mean"] == 3.0
    assert set(summary["budget"]) == set(crowd.TEAMS)
    assert summary["budget"]["careful"]["k=3"]["items"]["mean"] == TINY.budget // 3
    profiles = summary["pausing"]
    assert list(profiles) == ["careful", "average", "spammer", *(f"adversary ({c})" for c in CLASSES)]
    assert all(p["trainers"] == TINY.trainers for p in profiles.values())
    texts = [c["text"] for c in results["checks"]]
    assert texts[0].startswith("DS with teacher ≥ majority + 3 points with a spammer present (k=3): ")
    assert texts[1].startswith("spammer paused within 15 check items: ")
    assert texts[2].startswith("adversary (positive) paused within 15 check items — the team's adversary: ")
    assert texts[-1].startswith(f"careful trainers paused: 0 of {TINY.trainers}: MET")
    assert {c["status"] for c in results["checks"]} <= {"MET", "MISSED"}


def test_ds_with_the_teacher_beats_majority_vote_with_a_spammer(results: dict[str, Any]) -> None:
    cell = results["summary"]["aggregation"]["mixed"]["k=3"]
    assert cell["ds_teacher"]["mean"] >= cell["majority"]["mean"] + 0.05
    # without the spammer and the adversary, majority vote does better than with them
    honest = results["summary"]["aggregation"]["honest"]["k=3"]
    assert honest["majority"]["mean"] > cell["majority"]["mean"]


def test_the_pause_rule_stops_the_spammer_and_spares_careful_trainers(results: dict[str, Any]) -> None:
    pausing = results["summary"]["pausing"]
    assert pausing["careful"]["paused"] == 0
    assert pausing["spammer"]["paused"] >= 0.7 * TINY.trainers
    # always "negative" (13 % of the labels) is right on few check items: paused, after at least min_gold answers
    assert pausing["adversary (negative)"]["paused"] == TINY.trainers
    assert pausing["adversary (negative)"]["median_checks"] >= 10


def test_tables_and_files(results: dict[str, Any], tmp_path: Path) -> None:
    text = crowd.markdown(results)
    assert text.count("### ") == 4
    assert "| spammer + adversary | k=3 | 3.00 |" in text
    paths = crowd.write(results, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths.values())


def test_main_skips_without_the_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(datasets, "FPB_DIR", tmp_path / "nowhere")
    assert crowd.main(["--quick", "--out", str(tmp_path / "out")]) == 0
    assert "skipping the quality-control benchmark: data not found" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_config_names_a_wrong_setting() -> None:
    with pytest.raises(ValueError, match="unknown overlap settings \\['k=5'\\]; choose from k=1, k=2, k=3, adaptive"):
        crowd.Config(settings=("k=5",))
