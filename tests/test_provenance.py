"""Every ``train`` records each training target and where it came from (table ``training_labels``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from terakoya.quality.aggregate import AGGREGATOR
from terakoya.storage import open_database
from terakoya.storage.models import StudentRun, TrainingLabel
from terakoya.training import train
from test_training import Builder, make_settings


def test_each_training_target_names_its_source(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    b = Builder(db, db.project_id("t"))
    settings = make_settings(tmp_path, teacher_min_confidence=0.5, teacher_correction=False, self_training=False)

    expert = b.item("profits fell; the experts say negative")
    old_sid = b.teacher(expert, {"negative": 0.1, "neutral": 0.1, "positive": 0.8})
    b.answer(expert, "negative")
    b.answer(expert, "positive", superseded=True)  # undone: not behind the target
    b.answer(expert, "negative", kind="verify")
    confident = b.item("record sales, a confident teacher")
    sid = b.teacher(confident, {"negative": 0.05, "neutral": 0.05, "positive": 0.9})
    accepted = b.item("an unsure teacher label accepted at routing time")
    acc_sid = b.teacher(accepted, {"negative": 0.4, "neutral": 0.35, "positive": 0.25})
    b.auto_accept(accepted, acc_sid, "negative", 0.4)
    unsure = b.item("an unsure teacher label, left out")
    b.teacher(unsure, {"negative": 0.34, "neutral": 0.33, "positive": 0.33})
    b.item("a test item is never a training target", split="test")

    report = train(db, b.project_id, settings)
    with db.session() as s:
        run_pk = s.scalar(select(StudentRun.id).where(StudentRun.run_id == report.run_id))
        rows = {r.item_id: r for r in s.scalars(select(TrainingLabel).where(TrainingLabel.student_run_id == run_pk))}
        with_answers = s.execute(select(TrainingLabel.answer_ids).where(TrainingLabel.item_id == expert)).scalar_one()

    assert set(rows) == {expert, confident, accepted}
    e = rows[expert]
    assert (e.source, e.label, e.aggregator, e.suggestion_id) == ("expert", "negative", AGGREGATOR, None)
    assert len(with_answers) == 2  # the live label and verify answers, not the undone one
    assert e.weight == settings.student.expert_weight
    assert e.target == {"negative": 1.0, "neutral": 0.0, "positive": 0.0}
    t = rows[confident]
    assert (t.source, t.label, t.suggestion_id, t.answer_ids, t.aggregator) == ("teacher", "positive", sid, [], None)
    assert abs(sum(t.target.values()) - 1.0) < 1e-6
    assert rows[accepted].source == "auto_accept" and rows[accepted].suggestion_id == acc_sid
    assert old_sid != sid

    # a second run writes its own rows; the first run's stay as they were
    b.answer(confident, "neutral")
    second = train(db, b.project_id, settings)
    with db.session() as s:
        runs = s.execute(
            select(StudentRun.run_id, TrainingLabel.source)
            .join(TrainingLabel, TrainingLabel.student_run_id == StudentRun.id)
            .where(TrainingLabel.item_id == confident)
            .order_by(StudentRun.id)
        ).all()
    assert [tuple(r) for r in runs] == [(report.run_id, "teacher"), (second.run_id, "expert")]
    db.close()


def test_self_training_targets_are_recorded(tmp_path: Path) -> None:
    """Targets the student gave itself are recorded as such, on the items they were given to."""
    from terakoya.training import TrainingSet, _record_training_labels

    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    b = Builder(db, db.project_id("t"))
    ids = [b.item(f"item {i}") for i in range(4)]
    with db.session() as s:
        run = StudentRun(project_id=b.project_id, run_id="r1", kind="linear.v1", path="x", metrics={})
        s.add(run)
        s.flush()
        run_pk = run.id
    data = TrainingSet(
        texts=["item 0", "item 1"], targets=np.asarray([[1.0, 0, 0], [0, 0.2, 0.8]]), weights=np.asarray([3.0, 1.0]),
        sources=["expert", "teacher"], item_ids=ids[:2], classes=["negative", "neutral", "positive"],
        unlabelled_texts=["item 2", "item 3"], unlabelled_ids=ids[2:],
        answer_ids=[[7], []], suggestion_ids=[None, None], origins=["expert", "teacher"],
    )  # fmt: skip
    # the teacher weighed 0 by cross-validation: its rows were not trained on, so they are not recorded
    _record_training_labels(db, run_pk, data, 0.0, (np.asarray([1]), np.asarray([[0.0, 1.0, 0.0]])))
    with db.session() as s:
        got = s.execute(
            select(TrainingLabel.item_id, TrainingLabel.source, TrainingLabel.label, TrainingLabel.weight).order_by(
                TrainingLabel.item_id
            )
        ).all()
    assert [tuple(r) for r in got] == [(ids[0], "expert", "negative", 3.0), (ids[3], "self_training", "neutral", 1.0)]
    db.close()
