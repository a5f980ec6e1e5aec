"""Check items: gold scores, the pause rule, and a trainer paused in the real work queue and let back in.

The storage tests run on a real SQLite file and on a real PostgreSQL database (``db_url``).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import select

from terakoya import workqueue
from terakoya.quality.gold import (
    GoldScore,
    PausedError,
    _score,
    gold_scores,
    lift_pause,
    pause_reason,
    pauses,
)
from terakoya.settings import QualitySettings, Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Assignment, Item, Pause, Person, Task
from terakoya.storage.web_models import Membership

LABELS = ("positive", "negative", "neutral")


def _answers(accuracy: float, n: int, rng: random.Random) -> list[tuple[int, str, str]]:
    rows = []
    for i in range(n):
        known = LABELS[i % 3]
        given = known if rng.random() < accuracy else rng.choice([x for x in LABELS if x != known])
        rows.append((i, given, known))
    return rows


def _paused_after(rows: list[tuple[int, str, str]], quality: QualitySettings) -> int | None:
    """The number of check answers after which the rule, checked after every answer, pauses; None: never."""
    for n in range(1, len(rows) + 1):
        if pause_reason(_score(1, rows[:n]), quality) is not None:
            return n
    return None


def test_the_rule_pauses_a_random_clicker_and_not_a_careful_trainer() -> None:
    quality = QualitySettings()
    rng = random.Random(7)
    careful = [_paused_after(_answers(0.85, 60, rng), quality) for _ in range(300)]
    assert careful.count(None) == 300, "a careful trainer (85 % right) was paused"
    spammer = [_paused_after(_answers(1 / 3, 60, rng), quality) for _ in range(300)]
    paused_at = sorted(n for n in spammer if n is not None)
    assert len(paused_at) >= 290 and paused_at[len(paused_at) // 2] <= 15, paused_at
    adversary = [(i, "neutral", LABELS[i % 3]) for i in range(30)]  # always one label on a balanced gold set
    assert (_paused_after(adversary, quality) or 99) <= 15
    # check items 60 % neutral: always saying neutral is 60 % accurate, but 33 % averaged over the labels
    # (the plain accuracy never pauses them: the interval's top stays above 60 %)
    skewed = [(i, "neutral", "neutral" if i % 5 < 3 else LABELS[i % 2]) for i in range(30)]
    assert (_paused_after(skewed, quality) or 99) <= 25


def test_a_score_says_how_many_were_right_overall_and_per_label() -> None:
    rows = [(1, "positive", "positive"), (2, "neutral", "positive"), (3, "negative", "negative")]
    score = _score(5, rows)
    assert (score.answers, score.correct) == (3, 2)
    assert score.per_label["positive"].accuracy == 0.5 and score.per_label["negative"].accuracy == 1.0
    assert score.ci95 is not None and score.ci95[0] < 2 / 3 < score.ci95[1]
    assert score.wrong == [(2, "neutral", "positive")]
    few = GoldScore(5, 4, 0, 0.0, [0.0, 0.49])
    assert pause_reason(few, QualitySettings(min_gold=10)) is None  # too few answers to judge
    assert pause_reason(few, QualitySettings(min_gold=4)) is not None
    assert pause_reason(few, QualitySettings(min_gold=4, min_gold_accuracy=0)) is None  # pausing turned off


def _gold_tasks(db: Database, pid: int, n: int) -> list[int]:
    ids = []
    with db.session() as s:
        for i in range(n):
            item = Item(project_id=pid, external_id=f"g{i}", text=f"gold {i}", text_hash=f"g{pid}-{i}",
                        split="test", gold_label=LABELS[i % 3])  # fmt: skip
            s.add(item)
            s.flush()
            task = Task(project_id=pid, item_id=item.id, priority=i, status="queued", reason="gold")
            s.add(task)
            s.flush()
            ids.append(task.id)
    return ids


def _trainer(db: Database, pid: int, name: str) -> int:
    with db.session() as s:
        person = Person(name=name, role="trainer")
        s.add(person)
        s.flush()
        s.add(Membership(project_id=pid, person_id=person.id, role="trainer"))
        return person.id


def _answer_next(db: Database, pid: int, settings: Settings, person: int, *, right: bool) -> None:
    view = workqueue.lease_next(db, pid, settings, person)
    assert view is not None
    with db.session() as s:
        gold = s.scalar(select(Item.gold_label).join(Task, Task.item_id == Item.id).where(Task.id == view.task_id))
    label = gold if right else next(x for x in LABELS if x != gold)
    assert label is not None
    workqueue.submit_answer(db, pid, settings, person, view.task_id, label=label)


def test_a_trainer_who_fails_check_items_is_paused_sees_why_and_is_let_back_in(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    settings = Settings.model_validate(
        {"name": "p", "labels": [{"name": n} for n in LABELS], "project_dir": tmp_path,
         "quality": {"min_gold": 6, "min_gold_accuracy": 0.6}}
    )  # fmt: skip
    _gold_tasks(db, pid, 40)
    careless, careful, owner = (_trainer(db, pid, n) for n in ("careless", "careful", "owner"))
    for i in range(6):
        _answer_next(db, pid, settings, careful, right=i != 2)  # 5 of 6 right: not paused
        _answer_next(db, pid, settings, careless, right=i == 0)  # 1 of 6 right
    paused = r"paused on this project: 1 of 6 answers on check items .*17% averaged over the labels.*60%"
    with pytest.raises(PausedError, match=paused):
        workqueue.lease_next(db, pid, settings, careless)
    assert workqueue.lease_next(db, pid, settings, careful) is not None
    assert [(p.person, p.gold_answers, p.gold_correct) for p in pauses(db, pid)] == [("careless", 6, 1)]
    score = gold_scores(db, pid)[careless]
    assert (score.answers, score.correct) == (6, 1) and len(score.wrong) == 5

    assert lift_pause(db, pid, careless, by=owner) and not lift_pause(db, pid, careless, by=owner)
    assert pauses(db, pid) == [] and len(pauses(db, pid, active_only=False)) == 1
    assert gold_scores(db, pid).get(careless) is None  # the answers before the lift no longer count
    assert gold_scores(db, pid, all_time=True)[careless].answers == 6
    for _ in range(5):
        _answer_next(db, pid, settings, careless, right=False)
    assert workqueue.lease_next(db, pid, settings, careless) is not None  # 5 new answers: not enough to judge
    _answer_next(db, pid, settings, careless, right=False)  # the task it holds
    with pytest.raises(PausedError):
        workqueue.lease_next(db, pid, settings, careless)
    with db.session() as s:
        rows = s.scalars(select(Pause).where(Pause.person_id == careless).order_by(Pause.id)).all()
        assert [(r.lifted_by, r.gold_answers) for r in rows] == [(owner, 6), (None, 6)]


def test_a_qualification_comes_before_other_work_and_a_failed_one_waits_for_the_owner(
    db_url: str, tmp_path: Path
) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    settings = Settings.model_validate(
        {"name": "p", "labels": [{"name": n} for n in LABELS], "project_dir": tmp_path,
         "quality": {"qualification_items": 3, "min_gold_accuracy": 0.6}}
    )  # fmt: skip
    _gold_tasks(db, pid, 12)  # 12 check items (and their ordinary gold tasks)
    with db.session() as s:  # the ordinary tasks come after the gold ones: make a routed one, first in queue
        item = Item(project_id=pid, external_id="r0", text="routed 0", text_hash=f"r{pid}", split="pool")
        s.add(item)
        s.flush()
        s.add(Task(project_id=pid, item_id=item.id, priority=-10, status="queued", reason="routed"))
    good, bad, owner = (_trainer(db, pid, n) for n in ("good", "bad", "owner"))

    def reasons(person: int, n: int, *, right: bool) -> list[str]:
        out = []
        for _ in range(n):
            view = workqueue.lease_next(db, pid, settings, person)
            assert view is not None
            with db.session() as s:
                task = s.get(Task, view.task_id)
                assert task is not None
                out.append(task.reason)
                gold = s.scalar(select(Item.gold_label).where(Item.id == task.item_id))
            label = (gold if right else next(x for x in LABELS if x != gold)) if gold else "positive"
            result = workqueue.submit_answer(db, pid, settings, person, view.task_id, label=label)
        assert result is not None
        return out

    assert reasons(good, 3, right=True) == ["qualification"] * 3  # before the routed task that comes first
    assert reasons(good, 1, right=True) == ["routed"]  # passed: ordinary work
    assert reasons(bad, 3, right=False) == ["qualification"] * 3
    with pytest.raises(PausedError, match="did not pass the qualification: 0 of 3 qualification items"):
        workqueue.lease_next(db, pid, settings, bad)
    with db.session() as s:  # nobody else was ever offered someone's qualification item
        rows = s.execute(select(Task.id, Assignment.person_id).join(Assignment, Assignment.task_id == Task.id)
                         .where(Task.reason == "qualification")).all()  # fmt: skip
        owners = {}
        for task_id, person in rows:
            owners.setdefault(task_id, set()).add(person)
        assert all(len(people) == 1 for people in owners.values()) and len(owners) == 6
    assert lift_pause(db, pid, bad, by=owner)  # the owner lets them in: the qualification counts as passed
    assert reasons(bad, 1, right=True) != ["qualification"]
