"""Training targets aggregated by a model of each answerer's reliability (``quality.aggregator``), with the
teacher and the student as workers, recorded in ``training_labels`` with the aggregator's versioned name.

Runs on a real SQLite file and a real PostgreSQL database (``db_url``).
"""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import select

from terakoya.quality.aggregate import AGGREGATOR
from terakoya.settings import Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, Item, Person, Suggestion, TrainingLabel
from terakoya.training import build_training_set, train

LABELS = ("negative", "neutral", "positive")
WORDS = {"negative": "losses fell sharply", "neutral": "the meeting is on monday", "positive": "profits rose strongly"}


def _settings(tmp_path: Path, aggregator: str) -> Settings:
    return Settings.model_validate(
        {"name": "q", "labels": [{"name": n} for n in LABELS], "project_dir": tmp_path,
         "student": {"kind": "linear", "teacher_correction": False, "self_training": False},
         "quality": {"aggregator": aggregator}}
    )  # fmt: skip


def _crowd(db: Database, project_id: int, n: int = 150) -> dict[int, str]:
    """``n`` pool items answered by a careful trainer, a random clicker and one who always says neutral; a
    teacher right four times in five. Returns item id -> the true label."""
    rng = random.Random(3)
    truth: dict[int, str] = {}
    with db.session() as s:
        people = {}
        for name in ("careful", "clicker", "always-neutral"):
            person = Person(name=name, role="trainer")
            s.add(person)
            s.flush()
            people[name] = person.id
        for i in range(n):
            label = LABELS[i % 3]
            item = Item(project_id=project_id, external_id=str(i), text=f"{WORDS[label]} {i}", text_hash=f"q{i}")
            s.add(item)
            s.flush()
            truth[item.id] = label
            said = label if rng.random() < 0.8 else rng.choice([x for x in LABELS if x != label])
            probs = {c: (0.7 if c == said else 0.15) for c in LABELS}
            s.add(Suggestion(item_id=item.id, agent_kind="teacher", agent="big", label=said, probabilities=probs,
                             confidence=0.7, confidence_known=True))  # fmt: skip
            careful = label if rng.random() < 0.85 else rng.choice([x for x in LABELS if x != label])
            for name, given in (("careful", careful), ("clicker", rng.choice(LABELS)), ("always-neutral", "neutral")):
                s.add(Answer(item_id=item.id, person_id=people[name], kind="label", label=given))
    return truth


def test_dawid_skene_with_the_teacher_as_a_worker_beats_majority_vote(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("q")
    truth = _crowd(db, pid)

    def accuracy(aggregator: str) -> tuple[float, list[float]]:
        data = build_training_set(db, pid, _settings(tmp_path, aggregator))
        rows = [i for i, source in enumerate(data.sources) if source == "expert"]
        assert len(rows) == len(truth)
        right = [LABELS[int(data.targets[i].argmax())] == truth[data.item_ids[i]] for i in rows]
        return sum(right) / len(right), [float(data.weights[i]) for i in rows]

    majority, majority_weights = accuracy("majority")
    ds, ds_weights = accuracy("dawid_skene")
    mace, _ = accuracy("mace")
    assert ds >= majority + 0.10, (majority, ds)
    assert mace >= majority + 0.05, (majority, mace)
    assert set(majority_weights) == {3.0}  # majority: sure targets at student.expert_weight
    assert min(ds_weights) < 3.0 and max(ds_weights) <= 3.0  # DS: weighted by the posterior's confidence


def test_train_records_the_aggregator_of_each_expert_target(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("q")
    _crowd(db, pid, n=60)
    train(db, pid, _settings(tmp_path, "dawid_skene"))
    train(db, pid, _settings(tmp_path, "majority"))
    with db.session() as s:
        rows = s.execute(select(TrainingLabel.student_run_id, TrainingLabel.aggregator, TrainingLabel.answer_ids)).all()
    runs = sorted({run for run, _, _ in rows})
    assert {agg for run, agg, _ in rows if run == runs[0]} == {"dawid_skene.crowdkit-1.4.2+models"}
    assert {agg for run, agg, _ in rows if run == runs[1]} == {AGGREGATOR}
    assert all(len(ids) == 3 for _, _, ids in rows)  # every target names the three answers behind it


def test_the_report_section_shows_agreement_reliability_and_the_aggregator(db_url: str, tmp_path: Path) -> None:
    from terakoya.evaluation.render import _quality, quality_lines
    from terakoya.evaluation.sections import QualitySection
    from terakoya.quality.summary import quality_summary

    db = open_database(db_url)
    pid = db.project_id("q")
    _crowd(db, pid, n=60)
    section = QualitySection.from_summary(quality_summary(db, pid, _settings(tmp_path, "dawid_skene")))
    assert QualitySection.from_json(section.to_json()) == section  # report.json keeps it whole
    lines = quality_lines(section)
    assert lines[0].startswith("Agreement among 3 people on 60 items answered by two or more: Fleiss' kappa")
    assert "180 answers on 60 items: 3.00 per item (60 with 3)." in lines
    assert "Training aggregates answers by dawid_skene (setting quality.aggregator)." in lines
    html = _quality(section)
    assert "Krippendorff" in html and html.count("<tr>") == 1 + 3 + 1 + 3  # per-label and people tables
    estimated = {p.person: p.estimated_accuracy for p in section.people}
    assert estimated["careful"] is not None and estimated["clicker"] is not None
    assert estimated["careful"] > 0.7 > estimated["clicker"]
    assert _quality(None).startswith('<p class="muted">This report was written before')


def test_under_dawid_skene_an_unsure_aggregate_waits_for_review(db_url: str, tmp_path: Path) -> None:
    from terakoya.quality.review import review_queue

    db = open_database(db_url)
    pid = db.project_id("q")
    _crowd(db, pid, n=60)
    with db.session() as s:  # items only the careful trainer answered, where the teacher says otherwise
        careful = s.scalar(select(Person.id).where(Person.name == "careful"))
        for i in range(6):
            item = Item(project_id=pid, external_id=f"lone{i}", text=f"a lone item {i}", text_hash=f"lone{i}")
            s.add(item)
            s.flush()
            probs = {"negative": 0.1, "neutral": 0.1, "positive": 0.8}
            s.add(Suggestion(item_id=item.id, agent_kind="teacher", agent="big", label="positive", probabilities=probs))
            s.add(Answer(item_id=item.id, person_id=careful, kind="label", label="negative"))
    majority = review_queue(db, pid, settings=_settings(tmp_path, "majority"), limit=500)
    assert {q.why for q in majority} <= {"conflict", "weak majority"}  # one answer agrees with itself
    ds = review_queue(db, pid, settings=_settings(tmp_path, "dawid_skene"), limit=500)
    lone = {q.external_id: q.why for q in ds if q.external_id.startswith("lone")}
    assert lone == {f"lone{i}": "unsure aggregate" for i in range(6)}
    assert [q.why for q in ds][-1] == "unsure aggregate"  # after the conflicts
