"""Routing: scores, diversity, budgets, gold share, auto-accept, the random baseline, on real databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from terakoya.errors import ConfigError, StateError
from terakoya.routing import route, score_items, select_diverse, text_vectors
from terakoya.settings import Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, AutoAccept, Item, Person, RouteRun, Suggestion, Task

LABELS = ["positive", "negative", "neutral"]

DISTINCT = [
    "The central bank left interest rates unchanged on Thursday.",
    "Shipping volumes through the northern port fell for a third month.",
    "A new chief executive takes over the paper mill in January.",
    "Mobile subscribers grew faster than analysts had expected.",
    "The airline cancels forty flights because of a pilots' strike.",
    "Copper prices climbed after mines in Chile reported floods.",
    "The retailer opens twelve stores across the Baltic region.",
    "Bond yields slipped as inflation data came in soft.",
]


def settings_for(tmp_path: Path, **routing: Any) -> Settings:
    # these tests pin the teacher-driven part of routing: a vouched-for teacher, no blind audit share
    routing = {"trust_teacher": "always", "audit_share": 0.0, **routing}
    # the suggestions here are written by hand, as a python teacher's: no batch calibration
    return Settings.model_validate(
        {
            "name": "p",
            "labels": [{"name": n} for n in LABELS],
            "routing": routing,
            "teacher": {"kind": "python"},
            # nothing to re-calibrate: with trust decided too, the audit share stays as set (see audits_needed)
            "student": {"teacher_correction": False},
            "project_dir": tmp_path,
        }
    )


def probs(top: float, label: str = "positive") -> dict[str, float]:
    rest = (1.0 - top) / (len(LABELS) - 1)
    return {n: (top if n == label else rest) for n in LABELS}


def add_item(
    s: Any,
    pid: int,
    ext: str,
    text: str | None = None,
    *,
    split: str = "pool",
    gold: str | None = None,
    top: float | None = 0.5,
    label: str = "positive",
    known: bool = True,
    student: dict[str, float] | None = None,
) -> Item:
    item = Item(project_id=pid, external_id=ext, text=text or f"item {ext}", text_hash=f"h{ext}", split=split)
    item.gold_label = gold
    s.add(item)
    s.flush()
    if top is not None:
        s.add(
            Suggestion(
                item_id=item.id,
                agent_kind="teacher",
                agent="m",
                prompt_version="v1",
                label=label,
                probabilities=probs(top, label),
                confidence=top if known else None,
                confidence_known=known,
            )
        )
    if student is not None:
        s.add(Suggestion(item_id=item.id, agent_kind="student", agent="run-1", probabilities=student))
    return item


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'terakoya.db'}")
    yield database
    database.close()


def tasks_of(db: Database, run_id: int) -> list[Task]:
    with db.session() as s:
        rows = s.scalars(select(Task).where(Task.route_run_id == run_id).order_by(Task.priority)).all()
        for t in rows:
            _ = t.item.external_id  # load while the session is open
        return list(rows)


# ----------------------------------------------------------------------------- pure scoring


def test_uncertain_items_score_above_confident_ones() -> None:
    scores = score_items([[0.98, 0.01, 0.01], [0.6, 0.3, 0.1], [0.34, 0.33, 0.33]])
    assert scores.value[0] < scores.value[1] < scores.value[2]
    assert scores.uncertainty[2] == pytest.approx(0.5 * (1 - 0.01) + 0.5 * scores.entropy[2])
    assert scores.entropy[2] == pytest.approx(1.0, abs=1e-3)
    assert np.isnan(scores.js).all()  # no student: no disagreement part
    assert (scores.disagreement == 0).all()


def test_unknown_confidence_counts_as_maximally_uncertain() -> None:
    scores = score_items([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], confidence_known=[True, False])
    assert scores.uncertainty.tolist() == [0.0, 1.0]
    assert np.isnan(scores.margin[1]) and scores.components(1)["margin"] is None
    assert scores.components(0)["margin"] == 1.0


def test_disagreement_with_the_student_raises_value() -> None:
    teacher = [[0.7, 0.2, 0.1]] * 3
    student = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.0, 0.0, 0.0]]
    scores = score_items(teacher, student=student, has_student=[True, True, False])
    assert scores.disagreement[0] == pytest.approx(0.0)
    assert scores.argmax_differs[1] == 1.0
    assert scores.js[1] > 0.1
    assert scores.value[1] > scores.value[0] == pytest.approx(scores.value[2])
    assert np.isnan(scores.js[2])  # no student for the third item
    no_weight = score_items(teacher, student=student, disagreement_weight=0.0)
    assert no_weight.value[1] == pytest.approx(no_weight.value[0])


def test_a_batch_prefers_distinct_items_over_near_duplicates() -> None:
    dupes = [f"Acme Corp said quarterly profit rose sharply, report number {i}." for i in range(10)]
    texts = dupes + DISTINCT[:5]
    values = [1.0] * 10 + [0.9] * 5
    vectors = text_vectors(texts)
    picked, redundancy = select_diverse(values, vectors, 5, diversity_weight=0.3)
    assert sum(1 for i in picked if i < 10) == 1
    assert picked[0] == 0 and redundancy[0] == 0.0
    # without the diversity penalty the batch is all near-copies
    plain, _ = select_diverse(values, vectors, 5, diversity_weight=0.0)
    assert all(i < 10 for i in plain)


# ----------------------------------------------------------------------------- route runs


def test_route_gold_share_auto_accept_and_tasks(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(30):  # confidence 0.36 .. 0.94
            add_item(s, pid, f"p{i}", DISTINCT[i % 8] + f" ({i})", top=round(0.36 + 0.02 * i, 2))
        for i in range(5):
            add_item(s, pid, f"t{i}", split="test", gold="negative", top=None)
        add_item(s, pid, "t-nogold", split="test", top=None)
    settings = settings_for(tmp_path, gold_share=0.2, auto_accept_threshold=0.9, seconds_per_item=30)
    report = route(db, pid, settings, budget_items=10)
    assert (report.routed, report.gold, report.budget_items, report.eligible) == (8, 2, 10, 30)
    assert report.expert_minutes == pytest.approx(5.0)
    assert report.skipped_no_teacher == 0
    tasks = tasks_of(db, report.route_run_id)
    assert [t.priority for t in tasks] == list(range(10))
    gold = [t for t in tasks if t.reason == "gold"]
    routed = [t for t in tasks if t.reason == "routed"]
    assert len(gold) == 2 and all(t.item.split == "test" and t.item.gold_label == "negative" for t in gold)
    # the routed ones are among the least confident items (the diversity pass may swap a few near the cut)
    assert {t.item.external_id for t in routed} <= {f"p{i}" for i in range(12)}
    assert all(t.status == "queued" for t in tasks)
    # verify first: routed items show the teacher's answer; gold checks and audits stay blind
    assert {(t.reason, t.kind) for t in tasks} == {("routed", "verify"), ("gold", "label")}
    first = routed[0].components
    assert set(first) >= {"value", "uncertainty", "margin", "entropy", "disagreement", "redundancy"}
    assert first["value"] == pytest.approx(routed[0].score + 0.3 * first["redundancy"], abs=1e-5)
    with db.session() as s:
        accepted = s.execute(select(Item.external_id, AutoAccept).join(Item, Item.id == AutoAccept.item_id)).all()
        # confidence >= 0.9: items p27, p28, p29 (0.90, 0.92, 0.94)
        assert sorted(ext for ext, _ in accepted) == ["p27", "p28", "p29"]
        assert all(a.label == "positive" and a.route_run_id == report.route_run_id for _, a in accepted)
        run = s.get(RouteRun, report.route_run_id)
        assert run is not None
        assert (run.strategy, run.routed, run.gold, run.auto_accepted) == ("terakoya", 8, 2, 3)
    assert report.auto_accepted == 3

    # a second run skips what is queued or auto-accepted
    again = route(db, pid, settings, budget_items=10)
    assert again.eligible == 30 - 8 - 3
    first_items = {t.item_id for t in tasks}
    assert not first_items & {t.item_id for t in tasks_of(db, again.route_run_id)}
    db.close()


def test_budget_in_minutes(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(20):
            add_item(s, pid, str(i), DISTINCT[i % 8] + f" {i}", top=0.4)
    settings = settings_for(tmp_path, seconds_per_item=30, gold_share=0.0)
    report = route(db, pid, settings, budget_minutes=2.5)
    assert (report.budget_items, report.routed, report.gold) == (5, 5, 0)
    assert report.expert_minutes == pytest.approx(2.5)


def test_budget_must_be_given_once(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    settings = settings_for(tmp_path, seconds_per_item=30)
    message = (
        "give exactly one budget: the number of items an expert should see (--budget N) "
        "or the expert minutes to spend (--minutes M)"
    )
    with pytest.raises(ConfigError) as err:
        route(db, pid, settings)
    assert str(err.value) == message
    with pytest.raises(ConfigError) as err:
        route(db, pid, settings, budget_items=3, budget_minutes=2)
    assert str(err.value) == message
    with pytest.raises(ConfigError) as err:
        route(db, pid, settings, budget_minutes=0.25)
    assert str(err.value) == (
        "0.25 expert minutes is less than one item at routing.seconds_per_item = 30 s; "
        "pass more --minutes or lower routing.seconds_per_item"
    )
    with pytest.raises(ConfigError, match="unknown routing strategy 'smart'; use one of: terakoya, random"):
        route(db, pid, settings, budget_items=3, strategy="smart")


def test_no_teacher_labels_is_a_state_error(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    with db.session() as s:
        add_item(s, pid, "1", top=None)
    with pytest.raises(StateError) as err:
        route(db, pid, settings_for(tmp_path), budget_items=5)
    assert str(err.value) == "no teacher labels yet; run `terakoya teach` first"


def test_budget_larger_than_the_pool_routes_everything(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(4):
            add_item(s, pid, str(i), DISTINCT[i], top=0.5)
        add_item(s, pid, "no-teacher", top=None)
        errored = add_item(s, pid, "errored", top=None)
        s.add(Suggestion(item_id=errored.id, agent_kind="teacher", agent="m", error="timeout"))
    report = route(db, pid, settings_for(tmp_path, gold_share=0.0), budget_items=50)
    assert (report.routed, report.eligible, report.skipped_no_teacher) == (4, 4, 2)
    assert report.notes == [
        "the budget asked for 50 pool items but only 4 are eligible "
        "(teacher-labelled, not answered, not queued, not auto-accepted); all of them were routed"
    ]


def test_unknown_confidence_is_routed_first_and_never_auto_accepted(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    with db.session() as s:
        add_item(s, pid, "unknown", DISTINCT[0], top=1.0, known=False)
        add_item(s, pid, "unknown2", DISTINCT[1], top=1.0, known=False)
        add_item(s, pid, "sure", DISTINCT[2], top=0.99)
        add_item(s, pid, "edge", DISTINCT[3], top=0.9)
        add_item(s, pid, "below", DISTINCT[4], top=0.89)
    report = route(db, pid, settings_for(tmp_path, gold_share=0.0, auto_accept_threshold=0.9), budget_items=1)
    routed = [t.item.external_id for t in tasks_of(db, report.route_run_id)]
    assert routed in (["unknown"], ["unknown2"])
    with db.session() as s:
        accepted = sorted(s.scalars(select(Item.external_id).join(AutoAccept, AutoAccept.item_id == Item.id)))
    assert accepted == ["edge", "sure"]


def test_student_disagreement_moves_an_item_up(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    with db.session() as s:
        add_item(s, pid, "agree", DISTINCT[0], top=0.6, student=probs(0.6))
        add_item(s, pid, "disagree", DISTINCT[1], top=0.6, student=probs(0.8, "negative"))
        add_item(s, pid, "no-student", DISTINCT[2], top=0.6)
    report = route(db, pid, settings_for(tmp_path, gold_share=0.0), budget_items=1)
    [task] = tasks_of(db, report.route_run_id)
    assert task.item.external_id == "disagree"
    assert task.components["argmax_differs"] == 1.0


def test_answered_items_are_not_routed_again(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    with db.session() as s:
        done = add_item(s, pid, "done", DISTINCT[0], top=0.34)
        add_item(s, pid, "open", DISTINCT[1], top=0.6)
        person = Person(name="ann")
        s.add(person)
        s.flush()
        s.add(Answer(item_id=done.id, person_id=person.id, label="negative"))
    report = route(db, pid, settings_for(tmp_path, gold_share=0.0), budget_items=5)
    assert [t.item.external_id for t in tasks_of(db, report.route_run_id)] == ["open"]


def test_diversity_in_a_route_run(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(20):
            add_item(s, pid, f"dup{i}", f"Acme Corp said quarterly profit rose sharply, report {i}.", top=0.40)
        for i, text in enumerate(DISTINCT):
            add_item(s, pid, f"d{i}", text, top=0.45)
    report = route(db, pid, settings_for(tmp_path, gold_share=0.0, diversity_weight=0.3), budget_items=6)
    picked = [t.item.external_id for t in tasks_of(db, report.route_run_id)]
    assert sum(p.startswith("dup") for p in picked) == 1
    # the same pool without the diversity penalty routes only near-copies
    plain = route(db, pid, settings_for(tmp_path, gold_share=0.0, diversity_weight=0.0), budget_items=6)
    assert all(t.item.external_id.startswith("dup") for t in tasks_of(db, plain.route_run_id))


def _random_run(tmp_path: Path, name: str) -> list[str]:
    db = open_database(f"sqlite:///{tmp_path / name}")
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(40):
            add_item(s, pid, str(i), top=round(0.3 + 0.015 * i, 3))
        for i in range(10):
            add_item(s, pid, f"t{i}", split="test", gold="neutral", top=None)
    report = route(
        db, pid, settings_for(tmp_path, gold_share=0.2, auto_accept_threshold=1.0), budget_items=10, strategy="random"
    )
    assert (report.strategy, report.routed, report.gold) == ("random", 8, 2)
    tasks = tasks_of(db, report.route_run_id)
    assert {t.reason for t in tasks} == {"random", "gold"}
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AutoAccept)) == 0
    db.close()
    return [t.item.external_id for t in tasks]


def test_random_strategy_is_seeded_and_reproducible(tmp_path: Path) -> None:
    first = _random_run(tmp_path, "a.db")
    assert _random_run(tmp_path, "b.db") == first
    # the routing seed changes the sample
    db = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    pid = db.project_id("p")
    with db.session() as s:
        s.execute(Task.__table__.delete())
    other = route(db, pid, settings_for(tmp_path, gold_share=0.2), budget_items=10, strategy="random", seed=7)
    assert [t.item.external_id for t in tasks_of(db, other.route_run_id)] != first
    db.close()


# ----------------------------------------------------------------------------- audit share, trust, quotas, cold start


def test_class_quotas_sample_minority_classes() -> None:
    values = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1])
    groups = np.array([0, 0, 0, 0, 0, 1, 2])
    picked, _ = select_diverse(values, None, 3, diversity_weight=0.0, groups=groups)
    assert sorted(groups[picked].tolist()) == [0, 1, 2]
    # without quotas the majority class takes every place
    picked, _ = select_diverse(values, None, 3, diversity_weight=0.0)
    assert groups[picked].tolist() == [0, 0, 0]


def test_typical_picks_cover_the_clusters() -> None:
    from terakoya.routing import typical_picks

    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    sizes = [60, 30, 10]
    vectors = np.vstack([c + 0.05 * rng.standard_normal((n, 3)) for c, n in zip(centres, sizes, strict=True)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cluster = np.repeat([0, 1, 2], sizes)
    picks = typical_picks(vectors, 3, seed=0)
    assert sorted(cluster[picks].tolist()) == [0, 1, 2]


def test_audit_share_is_random_and_blind(db: Database, tmp_path: Path) -> None:
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(60):
            add_item(s, pid, f"p{i}", DISTINCT[i % 8] + f" ({i})", top=round(0.36 + 0.01 * i, 2))
    settings = settings_for(tmp_path, audit_share=0.5, gold_share=0.0, auto_accept_threshold=1.0)
    report = route(db, pid, settings, budget_items=10)
    tasks = tasks_of(db, report.route_run_id)
    audit = [t for t in tasks if t.reason == "audit"]
    assert report.audit == len(audit) == 5
    assert all(t.components["share"] == "audit" for t in audit)
    # the teacher-routed half goes to the least confident items; the audit half is drawn from the whole pool
    routed = [t for t in tasks if t.reason == "routed"]
    assert {t.item.external_id for t in routed} <= {f"p{i}" for i in range(15)}
    assert report.teacher_trust is not None and report.teacher_trust.vouched


def test_audits_fill_up_until_the_teacher_can_be_measured_and_re_calibrated(db: Database, tmp_path: Path) -> None:
    from terakoya.routing import audits_needed
    from terakoya.routing.trust import MIN_BLIND

    pid = db.project_id("p")
    with db.session() as s:
        for i in range(80):
            add_item(s, pid, f"p{i}", DISTINCT[i % 8] + f" ({i})", top=round(0.36 + 0.005 * i, 3))
    settings = settings_for(tmp_path, trust_teacher="measured", audit_share=0.2, gold_share=0.0,
                            auto_accept_threshold=1.0)  # fmt: skip
    with db.session() as s:
        assert audits_needed(s, pid, settings) == MIN_BLIND == 30
        settings.routing.trust_teacher = "always"
        assert audits_needed(s, pid, settings) == 0  # trust decided by the owner, nothing to re-calibrate
        settings.student.teacher_correction = True
        assert audits_needed(s, pid, settings) == 15  # 5 random items per label re-calibrate the teacher
        settings.routing.trust_teacher = "measured"
    reports = [route(db, pid, settings, budget_items=10) for _ in range(4)]
    # all of a small batch is drawn at random until 30 are (queued audits count), then the share as set
    assert [r.audit for r in reports] == [10, 10, 10, 2]
    with db.session() as s:
        assert audits_needed(s, pid, settings) == 0
    settings.routing.audit_share = 0.0  # no audits at all when the owner turns them off
    assert route(db, pid, settings, budget_items=10).audit == 0


def test_untrusted_teacher_steers_nothing(db: Database, tmp_path: Path) -> None:
    """With trust 'never', the non-audit share is picked by typicality (no student yet), not by the teacher."""
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(40):
            add_item(s, pid, f"p{i}", DISTINCT[i % 8] + f" ({i})", top=round(0.36 + 0.01 * i, 2))
    settings = settings_for(tmp_path, trust_teacher="never", audit_share=0.2, gold_share=0.0, auto_accept_threshold=0.5)
    report = route(db, pid, settings, budget_items=10)
    tasks = tasks_of(db, report.route_run_id)
    shares = sorted(t.components["share"] for t in tasks)
    assert shares == ["audit"] * 2 + ["typical"] * 8
    assert report.auto_accepted == 0  # an untrusted teacher's labels are never accepted on its word


def test_routed_items_are_blind_label_tasks_when_the_teacher_is_untrusted_or_verify_is_off(
    db_url: str, tmp_path: Path
) -> None:
    db = open_database(db_url)
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(30):
            add_item(s, pid, f"p{i}", DISTINCT[i % 8] + f" ({i})", top=round(0.36 + 0.02 * i, 2))
    off = route(db, pid, settings_for(tmp_path, verify_routed=False), budget_items=5)
    never = route(db, pid, settings_for(tmp_path, trust_teacher="never"), budget_items=5)
    for report in (off, never):
        assert {t.kind for t in tasks_of(db, report.route_run_id)} == {"label"}
    db.close()
