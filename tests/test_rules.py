"""Each shared rule once, used by every caller: one test per rule, across the stages that apply it.

- the current suggestion of an item (the newest one that is not an error): work queue, dashboard, status,
  export, training and the evaluation read the same one;
- what an item's expert answers say together (``aggregate.majority``, ties to the newest answer): export,
  training, trust and the evaluation give the same label;
- the calibration error: training reports the evaluation's ECE;
- the guideline version stamped on an answer: the same from a file and from the web, and it changes with
  the approved glossary;
- a person's name, and the count of teacher-labelled items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from terakoya import training, workqueue
from terakoya.dashboard import dashboard_data
from terakoya.evaluation.gather import gather, label_of
from terakoya.evaluation.metrics import classification_metrics, expected_calibration_error, reliability_bins
from terakoya.people import accounts, glossary
from terakoya.project import Project
from terakoya.quality.aggregate import majority, top_labels
from terakoya.routing.trust import blind_pairs
from terakoya.settings import Settings
from terakoya.storage import open_database
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, Item, Person, Suggestion, Task
from terakoya.storage.queries import current_suggestion
from terakoya.training import build_training_set, train_arrays
from terakoya.workqueue.answers import record_answers

LABELS = ["positive", "negative", "neutral"]
PASSWORD = "correct horse battery"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    settings = Settings(
        name="rules",
        labels=[{"name": n} for n in LABELS],
        guidelines="Label what the sentence says about the company.",
        db=f"sqlite:///{tmp_path / 'terakoya.db'}",
        project_dir=tmp_path,
    )
    p = Project(settings, open_database(settings.db_url))
    yield p
    p.close()


def add_item(db: Database, pid: int, key: str, *, split: str = "pool", gold: str | None = None) -> int:
    text = f"Item {key}: operating profit moved."
    with db.session() as s:
        item = Item(
            project_id=pid,
            external_id=key,
            text=text,
            text_hash=hashlib.sha256(text.encode()).hexdigest(),
            split=split,
            gold_label=gold,
        )
        s.add(item)
        s.flush()
        return item.id


def suggest(db: Database, item_id: int, label: str | None, confidence: float = 0.95, error: str | None = None) -> int:
    """A teacher suggestion; with ``error`` a failed call (no label, uniform probabilities), as teaching stores it."""
    if error is None and label is not None:
        rest = (1 - confidence) / (len(LABELS) - 1)
        probs = {name: (confidence if name == label else rest) for name in LABELS}
    else:
        probs = dict.fromkeys(LABELS, 1 / len(LABELS))
    with db.session() as s:
        row = Suggestion(
            item_id=item_id, agent_kind="teacher", agent="tiny", prompt_version="v1", label=label,
            probabilities=probs, confidence=None if error else confidence, error=error,
        )  # fmt: skip
        s.add(row)
        s.flush()
        return row.id


def add_task(db: Database, pid: int, item_id: int, *, kind: str = "label", reason: str = "routed") -> int:
    with db.session() as s:
        task = Task(project_id=pid, item_id=item_id, kind=kind, reason=reason, status="queued")
        s.add(task)
        s.flush()
        return task.id


def answer(db: Database, item_id: int, person: str, label: str, *, task_id: int | None = None) -> None:
    with db.session() as s:
        who = accounts.get_or_create_person(s, person)
        s.add(Answer(item_id=item_id, person_id=who.id, task_id=task_id, kind="label", label=label, source="file"))


def trainer(p: Project, name: str, email: str) -> accounts.Account:
    _, token = accounts.create_invite(p.db, p.project_id, p.settings, created_by=None, languages=["en"])
    return accounts.accept_invite(p.db, token, name=name, password=PASSWORD, email=email)


def export_rows(p: Project, tmp_path: Path) -> dict[str, dict[str, object]]:
    """The project's export as the CLI writes it (``Project.export``), read back by item id."""
    import json

    out = tmp_path / "export.jsonl"
    p.export(out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return {str(r["id"]): r for r in rows}


def training_targets(p: Project) -> dict[int, str]:
    data = build_training_set(p.db, p.project_id, p.settings)
    return {i: data.classes[int(t.argmax())] for i, t in zip(data.item_ids, data.targets, strict=True)}


# ----------------------------------------------------------------------------- the current suggestion


def test_a_failed_retry_does_not_hide_the_current_suggestion_anywhere(project: Project, tmp_path: Path) -> None:
    db, pid, settings = project.db, project.project_id, project.settings
    verified = add_item(db, pid, "a")
    suggest(db, verified, "positive", 0.6)
    good = suggest(db, verified, "negative", 0.95)  # the current suggestion ...
    suggest(db, verified, None, error="timeout")  # ... and a newer failed retry
    taught = add_item(db, pid, "b")
    suggest(db, taught, "neutral", 0.95)
    suggest(db, taught, None, error="HTTP 500")
    tested = add_item(db, pid, "c", split="test", gold="neutral")
    suggest(db, tested, "neutral", 0.95)
    suggest(db, tested, None, error="timeout")
    add_task(db, pid, verified, kind="verify")
    ann = trainer(project, "ann", "ann@example.org")

    with db.session() as s:
        current = current_suggestion(s, verified)
        assert current is not None and current.id == good

    # the work queue shows it on the verify task and records it with the answer
    view = workqueue.lease_next(db, pid, settings, ann.id)
    assert view is not None
    assert (view.kind, view.teacher_label, view.teacher_confidence) == ("verify", "negative", 0.95)
    workqueue.submit_answer(db, pid, settings, ann.id, view.task_id, label="positive")
    with db.session() as s:
        stored = s.scalars(select(Answer).where(Answer.item_id == verified)).one()
        assert (stored.value["teacher_label"], stored.value["accepted"]) == ("negative", False)

    # the dashboard compares the expert with it, and counts all three items as teacher-labelled
    board = dashboard_data(db, pid, settings)
    negative, positive = board.confusion.labels.index("negative"), board.confusion.labels.index("positive")
    assert board.confusion.matrix[negative][positive] == 1 and board.confusion.total == 1
    assert [(d.teacher_label, d.teacher_confidence) for d in board.disagreements] == [("negative", 0.95)]
    assert board.funnel.teacher_labeled == project.status()["teacher_labeled"] == 3

    # the export shows it
    rows = export_rows(project, tmp_path)
    assert (rows["a"]["teacher_label"], rows["a"]["teacher_confidence"]) == ("negative", 0.95)
    assert rows["b"]["teacher_label"] == "neutral"

    # training learns it where no expert answered; the evaluation scores it on the test split
    assert training_targets(project)[taught] == "neutral"
    gathered = gather(db, pid, settings)
    assert gathered.teacher_test[tested].label == "neutral" and gathered.teacher_test_failed == 0
    assert gathered.teacher_pool == {verified: "negative", taught: "neutral"}


# ----------------------------------------------------------------------------- what the answers say together


def test_majority_breaks_a_tie_by_the_newest_answer() -> None:
    assert majority([(1, "a"), (2, "b")]) == "b"
    assert majority([(2, "b"), (1, "a")]) == "b"  # by answer id, not by position
    assert majority([(1, "a"), (2, "b"), (3, "a")]) == "a"  # two against one
    assert majority([(1, "b"), (2, "a"), (3, "a"), (4, "b")]) == "b"
    assert top_labels([(1, "a"), (2, "b"), (3, "c"), (4, "c")]) == ["c"]
    assert top_labels([(1, "a"), (2, "b")]) == ["b", "a"]
    with pytest.raises(ValueError, match="majority"):
        majority([])


def test_export_training_trust_and_evaluation_give_one_expert_label(project: Project, tmp_path: Path) -> None:
    db, pid, settings = project.db, project.project_id, project.settings
    tie = add_item(db, pid, "tie")
    audit = add_task(db, pid, tie, reason="audit")
    answer(db, tie, "ann", "neutral", task_id=audit)
    answer(db, tie, "bob", "positive", task_id=audit)  # 1-1: the newer answer decides
    undeclared = add_item(db, pid, "undeclared")
    answer(db, undeclared, "ann", "negative")
    answer(db, undeclared, "bob", "mixed")  # not a declared label: it counts for nothing
    gold = add_item(db, pid, "gold", split="test", gold="positive")
    answer(db, gold, "ann", "neutral")
    answer(db, gold, "bob", "positive")
    for item in (tie, undeclared, gold):
        suggest(db, item, "negative")

    targets = training_targets(project)
    assert (targets[tie], targets[undeclared]) == ("positive", "negative")

    rows = export_rows(project, tmp_path)
    assert (rows["tie"]["expert_label"], rows["tie"]["expert_answers"]) == (targets[tie], 2)
    assert (rows["undeclared"]["expert_label"], rows["undeclared"]["expert_answers"]) == (targets[undeclared], 1)
    assert rows["gold"]["expert_label"] == "positive"

    # trust reads the blind audit and the answers given on no task (imported), both splits, by the same rule
    items, truth, _ = blind_pairs(db, pid, LABELS)
    said = {item: LABELS[t] for item, t in zip(items, truth, strict=True)}
    assert said == {tie: targets[tie], undeclared: targets[undeclared], gold: "positive"}

    gathered = gather(db, pid, settings)
    by_item: dict[int, list] = {}
    for row in gathered.answers:
        by_item.setdefault(row.item_id, []).append(row)
    assert {i: label_of(rows_) for i, rows_ in by_item.items()} == {
        tie: "positive",
        undeclared: "negative",
        gold: "positive",
    }


# ----------------------------------------------------------------------------- calibration error


def test_training_reports_the_evaluations_ece(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[np.ndarray, np.ndarray, float | None]] = []
    real = training.probabilities_ece

    def watched(proba: np.ndarray, truth: np.ndarray) -> float | None:
        value = real(proba, truth)
        seen.append((np.asarray(proba), np.asarray(truth), value))
        return value

    monkeypatch.setattr(training, "probabilities_ece", watched)
    words = {"positive": "profit rose strongly", "negative": "loss widened badly", "neutral": "meeting held today"}
    rng = np.random.default_rng(0)
    labels = [LABELS[i] for i in rng.integers(0, 3, 80)]
    # every fifth text says the wrong thing, so the student is not sure of everything
    texts = [f"{words[LABELS[(LABELS.index(y) + (i % 5 == 0)) % 3]]} {i}" for i, y in enumerate(labels)]
    fit = train_arrays(texts, labels, None, LABELS, seed=0)

    assert len(seen) == 2, "training computes its ECE through evaluation.metrics"
    (_, _, before), (_, _, after) = seen
    assert (fit.calibration["ece_before"], fit.calibration["ece_after"]) == (before, after)
    for proba, truth, value in seen:
        names = [LABELS[int(i)] for i in truth]
        predicted = [LABELS[int(i)] for i in proba.argmax(axis=1)]
        evaluated = classification_metrics(names, proba, predicted, LABELS)
        assert value == pytest.approx(evaluated["ece"])
        # and the same bins as the reliability diagram of the report
        confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == truth
        bins = reliability_bins(confidence, correct)
        by_bins = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / len(truth)
        assert value == pytest.approx(by_bins) == pytest.approx(expected_calibration_error(confidence, correct))


# ----------------------------------------------------------------------------- the guideline version


def test_the_guideline_version_is_what_the_expert_saw(project: Project, tmp_path: Path) -> None:
    db, pid, settings = project.db, project.project_id, project.settings
    for key in ("f1", "f2"):
        add_item(db, pid, key)
    web = [add_task(db, pid, add_item(db, pid, key)) for key in ("w1", "w2")]
    ann = trainer(project, "ann", "ann@example.org")
    owner = accounts.create_owner(db, pid, "olga", "olga@example.org", PASSWORD)

    def from_file(key: str) -> str | None:
        path = tmp_path / f"{key}.csv"
        path.write_text(f"id,label,person\n{key},positive,ben\n", encoding="utf-8")
        record_answers(db, pid, settings, path)
        with db.session() as s:
            return s.scalar(select(Answer.guideline_version).join(Item).where(Item.external_id == key))

    def from_web(task_id: int) -> str | None:
        view = workqueue.lease_next(db, pid, settings, ann.id)
        assert view is not None and view.task_id == task_id
        result = workqueue.submit_answer(db, pid, settings, ann.id, task_id, label="positive")
        with db.session() as s:
            return s.scalar(select(Answer.guideline_version).where(Answer.id == result.answer_id))

    before = glossary.guideline_version(db, pid, settings)
    assert from_file("f1") == from_web(web[0]) == before
    term = glossary.propose_term(db, pid, ann.id, term="EBITDA", definition="earnings before interest and taxes")
    assert glossary.guideline_version(db, pid, settings) == before  # proposed: nobody sees it yet
    glossary.decide_term(db, pid, term.id or 0, decided_by=owner.id, approve=True)
    after = glossary.guideline_version(db, pid, settings)
    assert after != before
    assert from_file("f2") == from_web(web[1]) == after


# ----------------------------------------------------------------------------- people and counts


def test_a_person_has_one_name_everywhere(project: Project, tmp_path: Path) -> None:
    db, pid, settings = project.db, project.project_id, project.settings
    add_item(db, pid, "a")
    ann = trainer(project, "  Ann   Smith ", "Ann@Example.org")
    assert (ann.name, ann.email) == ("Ann Smith", "ann@example.org")
    path = tmp_path / "answers.csv"
    path.write_text('id,label,person\na,positive,"Ann  Smith"\n', encoding="utf-8")
    assert record_answers(db, pid, settings, path).recorded == 1
    assert record_answers(db, pid, settings, path).duplicates == 1  # the same person, the same answer
    with db.session() as s:
        assert accounts.get_or_create_person(s, "Ann \t Smith").id == ann.id
        assert s.scalars(select(Person.id)).all() == [ann.id]
        assert s.scalars(select(Answer.person_id)).all() == [ann.id]
    assert accounts.authenticate(db, pid, "Ann  Smith", PASSWORD).id == ann.id
    assert accounts.authenticate(db, pid, " ANN@example.org", PASSWORD).id == ann.id


def test_status_and_dashboard_count_items_alike(project: Project) -> None:
    db, pid, settings = project.db, project.project_id, project.settings
    failed = add_item(db, pid, "failed")
    suggest(db, failed, None, error="timeout")  # never labelled by the teacher
    suggest(db, add_item(db, pid, "good"), "positive")
    retried = add_item(db, pid, "retried", split="test", gold="neutral")
    suggest(db, retried, "neutral")
    suggest(db, retried, None, error="timeout")
    status = project.status()
    funnel = dashboard_data(db, pid, settings).funnel
    assert (status["teacher_labeled"], status["items"], status["test"]) == (2, 3, 1)
    assert (funnel.teacher_labeled, funnel.imported, funnel.test_items) == (2, 3, 1)
    gathered = gather(db, pid, settings)
    assert (gathered.pool_total, gathered.test_total) == (status["pool"], status["test"])
