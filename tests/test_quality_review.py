"""Review: the queue of items whose answers do not settle themselves, a decision that wins over aggregation in
the next ``train`` (checked through ``training_labels``), and taking it back.

Runs on a real SQLite file and a real PostgreSQL database (``db_url``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from terakoya.errors import DataError, NotFound, StateError
from terakoya.quality.review import decide, recent_decisions, review_queue, undo_decision
from terakoya.settings import Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, Item, Person, StudentRun, Suggestion, TrainingLabel
from terakoya.training import train

LABELS = ("negative", "neutral", "positive")


def _settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {"name": "r", "labels": [{"name": n} for n in LABELS], "project_dir": tmp_path,
         "student": {"kind": "linear", "teacher_correction": False, "self_training": False}}
    )  # fmt: skip


def _project(db: Database, pid: int) -> dict[str, int]:
    """Twelve pool items answered by ann; three of them answered differently by ben, one flagged by cy."""
    ids: dict[str, int] = {}
    with db.session() as s:
        people = {}
        for name in ("ann", "ben", "cy", "rita"):
            person = Person(name=name, role="reviewer" if name == "rita" else "trainer")
            s.add(person)
            s.flush()
            people[name] = person.id
        for i in range(12):
            label = LABELS[i % 3]
            item = Item(project_id=pid, external_id=f"p{i}", text=f"{label} news number {i}", text_hash=f"r{i}")
            s.add(item)
            s.flush()
            ids[f"p{i}"] = item.id
            probs = {c: 0.8 if c == label else 0.1 for c in LABELS}
            s.add(Suggestion(item_id=item.id, agent_kind="teacher", agent="t", label=label, probabilities=probs))
            s.add(Answer(item_id=item.id, person_id=people["ann"], kind="label", label=label, rationale="clear"))
        for i in (0, 1, 2):
            s.add(Answer(item_id=ids[f"p{i}"], person_id=people["ben"], kind="label", label=LABELS[(i + 1) % 3],
                         rationale="I read it otherwise"))  # fmt: skip
        s.add(Answer(item_id=ids["p5"], person_id=people["cy"], kind="flag", value={"reason": "ambiguous"}))
        ids["rita"] = people["rita"]
    return ids


def test_a_decision_wins_over_aggregation_in_the_next_train_and_can_be_taken_back(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("r")
    settings = _settings(tmp_path)
    ids = _project(db, pid)

    queue = review_queue(db, pid)
    assert [(q.external_id, q.why) for q in queue] == [("p5", "flag"), ("p0", "conflict"), ("p1", "conflict"),
                                                        ("p2", "conflict")]  # fmt: skip
    conflict = queue[1]
    assert {(a.person, a.label, a.rationale) for a in conflict.answers} == {
        ("ann", "negative", "clear"), ("ben", "neutral", "I read it otherwise")}  # fmt: skip
    assert conflict.teacher_label == "negative" and conflict.student_label is None

    with pytest.raises(DataError, match="'maybe' is not one of this project's labels"):
        decide(db, pid, settings, ids["p0"], ids["rita"], "maybe")
    decision = decide(db, pid, settings, ids["p0"], ids["rita"], "positive", rationale="the outlook is what counts")
    assert [q.external_id for q in review_queue(db, pid)] == ["p5", "p1", "p2"]

    def target_of(item: str) -> tuple[str, str, str | None, list[int]]:
        with db.session() as s:
            run = s.scalar(select(StudentRun.id).order_by(StudentRun.id.desc()).limit(1))
            row = s.scalars(select(TrainingLabel).where(TrainingLabel.student_run_id == run,
                                                        TrainingLabel.item_id == ids[item])).one()  # fmt: skip
            return row.label, row.source, row.aggregator, list(row.answer_ids)

    train(db, pid, settings)
    label, source, aggregator, answer_ids = target_of("p0")
    assert (label, source, aggregator) == ("positive", "review", "review") and answer_ids[0] == decision
    assert len(answer_ids) == 3  # the decision, then the two answers it settled
    assert target_of("p1")[1:3] == ("expert", "majority.v1")
    from terakoya.importers.exporters import iter_export_rows

    exported = {r["id"]: r for page in iter_export_rows(db, pid) for r in page}
    assert (exported["p0"]["expert_label"], exported["p0"]["training_label"]) == ("neutral", "positive")
    assert exported["p0"]["training_source"] == "review" and exported["p1"]["training_source"] == "expert (majority.v1)"

    # a second decision supersedes the first; taking it back returns the item to aggregation and the queue
    second = decide(db, pid, settings, ids["p0"], ids["rita"], "neutral")
    with db.session() as s:
        assert s.scalar(select(Answer.superseded).where(Answer.id == decision)) is True
    assert [(d.label, d.standing) for d in recent_decisions(db, pid)] == [("neutral", True), ("positive", False)]
    assert undo_decision(db, pid, second) == ids["p0"]
    with pytest.raises(StateError, match="already taken back"):
        undo_decision(db, pid, second)
    with pytest.raises(NotFound):
        undo_decision(db, pid, ids["p0"] + 10_000)
    assert "p0" in [q.external_id for q in review_queue(db, pid)]
    train(db, pid, settings)
    assert target_of("p0")[1:3] == ("expert", "majority.v1")
