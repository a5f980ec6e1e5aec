"""Teacher trust: measured on the experts' blind answers, and the gate it puts on routing and training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from terakoya.routing.trust import MIN_BLIND, cohen_kappa, measure_trust, trust_from_pairs
from terakoya.settings import Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, Item, Person, Suggestion, Task
from terakoya.training import build_training_set

LABELS = ["negative", "neutral", "positive"]


def test_kappa_by_hand() -> None:
    truth = np.array([0, 0, 1, 1])
    said = np.array([0, 1, 1, 1])
    # observed 3/4; chance: truth (1/2, 1/2), said (1/4, 3/4) -> 1/8 + 3/8 = 1/2; kappa = (3/4 - 1/2) / (1/2)
    assert cohen_kappa(truth, said, 2) == pytest.approx(0.5)


def test_a_weak_teacher_not_yet_shown_better_than_chance_keeps_its_labels_for_cross_validation() -> None:
    """60 % right on 40 binary items: kappa's interval reaches below 0 (routing ignores the teacher) but also well
    above chance, so its labels are not dropped: cross-validation weighs them."""
    rng = np.random.default_rng(3)
    truth = [i % 2 for i in range(40)]
    said = [t if rng.random() < 0.6 else 1 - t for t in truth]
    trust = trust_from_pairs(truth, said, LABELS[:2])
    assert trust.kappa_ci is not None and trust.kappa_ci[0] <= 0.0 < 0.1 < trust.kappa_ci[1]
    assert trust.trusted is False and not trust.chance_level
    assert "left to cross-validation" in trust.sentence


def test_constant_teacher_is_not_trusted() -> None:
    truth = [i % 3 for i in range(60)]
    trust = trust_from_pairs(truth, [0] * 60, LABELS)
    assert trust.accuracy == pytest.approx(1 / 3)
    assert trust.kappa == pytest.approx(0.0)
    assert trust.trusted is False and trust.weight == 0.0 and trust.chance_level
    assert "not measurably better than chance" in trust.sentence
    assert sum(map(sum, trust.confusion)) == 60 and trust.confusion[1][0] == 20


def test_permuted_teacher_is_not_trusted_as_it_is() -> None:
    truth = [i % 3 for i in range(60)]
    trust = trust_from_pairs(truth, [(t + 1) % 3 for t in truth], LABELS)
    assert trust.accuracy == 0.0 and trust.trusted is False


def test_good_teacher_is_trusted_with_intervals() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 200)
    said = np.where(rng.random(200) < 0.85, truth, (truth + 1) % 3)
    trust = trust_from_pairs(truth.tolist(), said.tolist(), LABELS)
    assert trust.trusted is True and 0.5 < trust.weight <= 1.0
    assert trust.accuracy_ci is not None and trust.accuracy_ci[0] < trust.accuracy < trust.accuracy_ci[1]
    assert trust.kappa_ci is not None and trust.kappa_ci[0] > 0.5
    # a student that cross-validates better than the teacher takes its place
    beaten = trust_from_pairs(truth.tolist(), said.tolist(), LABELS, student_cv_accuracy=0.95)
    assert beaten.trusted is False and "less accurate than a student trained on the experts" in beaten.sentence
    assert not beaten.chance_level  # training still lets cross-validation weigh its labels


def test_too_few_blind_answers_leave_trust_unknown() -> None:
    trust = trust_from_pairs([0, 1, 2], [0, 1, 2], LABELS)
    assert trust.n == 3 < MIN_BLIND
    assert trust.trusted is None and trust.weight == 0.5
    assert "too few to judge" in trust.sentence


# ----------------------------------------------------------------------------- on a database


def _settings(tmp_path: Path, **routing: Any) -> Settings:
    labels = [{"name": n} for n in LABELS]
    return Settings(name="t", labels=labels, routing=routing, teacher={"kind": "python"}, project_dir=tmp_path)


def _fill(db: Database, said: Any, *, n: int = 60, reason: str = "audit", probs: Any = None) -> int:
    """``n`` pool items with a teacher answer ``said(i)`` and an expert answer LABELS[i % 3] on a task of ``reason``;
    plus 40 pool items with only a teacher answer."""
    pid = db.project_id("t")
    with db.session() as s:
        person = Person(name="expert")
        s.add(person)
        s.flush()
        for i in range(n + 40):
            item = Item(project_id=pid, external_id=str(i), text=f"text {i}", text_hash=f"h{i}", split="pool")
            s.add(item)
            s.flush()
            label = said(i)
            p = probs(i) if probs else {c: (0.8 if c == label else 0.1) for c in LABELS}
            s.add(
                Suggestion(item_id=item.id, agent_kind="teacher", agent="big", prompt_version="p", label=label,
                           probabilities=p, confidence=max(p.values()), confidence_known=True)
            )  # fmt: skip
            if i < n:
                task = Task(project_id=pid, item_id=item.id, reason=reason, status="answered")
                s.add(task)
                s.flush()
                s.add(Answer(item_id=item.id, person_id=person.id, task_id=task.id, label=LABELS[i % 3]))
    return pid


def test_only_blind_answers_measure_the_teacher(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    pid = _fill(db, lambda i: LABELS[i % 3], reason="routed")
    trust = measure_trust(db, pid, _settings(tmp_path))
    assert trust.n == 0 and trust.trusted is None  # routed items are chosen, not drawn: they do not count
    db.close()


def test_constant_teacher_is_dropped_from_training(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'b.db'}")
    pid = _fill(db, lambda i: "negative")
    settings = _settings(tmp_path)
    trust = measure_trust(db, pid, settings)
    assert trust.n == 60 and trust.trusted is False
    data = build_training_set(db, pid, settings)
    assert data.teacher_items == 0 and data.expert_items == 60
    assert data.teacher_dropped is not None and "better than chance" in data.teacher_dropped
    assert len(data.unlabelled_texts) == 40  # left for self-training
    # the owner can vouch for the teacher
    vouched = _settings(tmp_path, trust_teacher="always")
    assert build_training_set(db, pid, vouched).teacher_items == 40
    db.close()


def test_permuted_teacher_is_unpermuted_by_recalibration_and_then_trusted(tmp_path: Path) -> None:
    """A teacher that always says the next label is wrong but informative: re-calibration on the experts'
    answers turns its labels back, after which the blind checks trust it and training uses it."""
    from terakoya.teachers.calibrating import calibrate_teacher

    db = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    pid = _fill(db, lambda i: LABELS[(i + 1) % 3])
    settings = _settings(tmp_path)
    assert measure_trust(db, pid, settings).trusted is False
    calibrate_teacher(db, pid, settings)
    trust = measure_trust(db, pid, settings)
    assert trust.trusted is True and trust.accuracy == pytest.approx(1.0)
    data = build_training_set(db, pid, settings)
    assert data.teacher_items == 40
    # the teacher-only items now carry the un-permuted label: item i said LABELS[(i+1)%3], truth LABELS[i%3]
    with db.session() as s:
        externals = dict(s.query(Item.id, Item.external_id).all())
    for item_id, target in zip(data.item_ids, data.targets, strict=True):
        i = int(externals[item_id])
        assert LABELS[int(target.argmax())] == LABELS[i % 3]
    db.close()
