"""The calibration stage: calibrated versions of the teacher's suggestions, written without calling it again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from fakes.openai_server import FakeOpenAI
from terakoya.settings import Settings
from terakoya.storage import open_database
from terakoya.storage.models import Answer, Item, Person, Suggestion
from terakoya.storage.queries import current_suggestion_ids
from terakoya.teachers.calibrating import MIN_BATCH_ITEMS, calibrate_teacher, label_logprobs
from terakoya.teachers.teaching import teach

LABELS = ["positive", "negative", "neutral"]
WORDS = ["rose", "fell", "growth", "loss", "record", "layoffs", "met", "held", "offices", "covers"]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _settings(tmp_path: Path, server: FakeOpenAI) -> Settings:
    return Settings.model_validate(
        {
            "name": "p",
            "labels": [{"name": n} for n in LABELS],
            "teacher": {"kind": "openai", "model": "fake-model", "base_url": server.base_url, "batch_size": 20},
            "project_dir": tmp_path,
        }
    )


def _current(db: object, pid: int) -> dict[int, Suggestion]:
    with db.session() as s:  # type: ignore[attr-defined]
        ids = current_suggestion_ids(pid, "teacher").subquery()
        return {sg.item_id: sg for sg in s.scalars(select(Suggestion).join(ids, Suggestion.id == ids.c.sid))}


def test_label_logprobs_reads_raw_scores_or_falls_back_to_probabilities() -> None:
    raw = json.dumps({"label_logprobs": {"positive": -0.5, "negative": -2.0, "neutral": -3.0}})
    assert label_logprobs(raw, {}, LABELS) == [-0.5, -2.0, -3.0]
    probs = {"positive": 0.5, "negative": 0.5, "neutral": 0.0}
    got = label_logprobs("plain text", probs, LABELS)
    assert got is not None and got[0] == pytest.approx(np.log(0.5)) and got[2] == -np.inf
    assert label_logprobs("", {}, LABELS) is None


def test_openai_teacher_is_batch_then_re_calibrated_without_new_calls(tmp_path: Path, fake: FakeOpenAI) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(60):
            text = f"Item {i}: sales {WORDS[i % len(WORDS)]} this year."
            s.add(Item(project_id=pid, external_id=str(i), text=text, text_hash=f"h{i}", split="pool"))
    settings = _settings(tmp_path, fake)
    report = teach(db, pid, settings)
    assert fake.calls == 60 and report.calibration and report.calibration[0]["calibration"].startswith("batch:")
    current = _current(db, pid)
    assert len(current) == 60 and all(sg.calibration and sg.calibration.startswith("batch:") for sg in current.values())
    with db.session() as s:
        raw = s.scalar(select(func.count()).select_from(Suggestion).where(Suggestion.calibration.is_(None)))
    assert raw == 60  # the model's own answers stay on record

    # calibrating again with nothing new writes nothing
    assert calibrate_teacher(db, pid, settings).written == 0

    # experts always say the opposite of the teacher's positive/negative: re-calibration learns it, no call made
    flip = {"positive": "negative", "negative": "positive", "neutral": "neutral"}
    with db.session() as s:
        person = Person(name="expert")
        s.add(person)
        s.flush()
        for item_id, sg in current.items():
            s.add(Answer(item_id=item_id, person_id=person.id, label=flip[str(sg.label)]))
    again = calibrate_teacher(db, pid, settings)
    assert fake.calls == 60
    assert again.written == 60 and again.groups[0]["method"] in ("vector", "matrix")
    after = _current(db, pid)
    agree = sum(after[i].label == flip[str(current[i].label)] for i in current)
    assert agree >= 55
    db.close()


def test_too_few_items_keep_the_models_own_probabilities(tmp_path: Path, fake: FakeOpenAI) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'd.db'}")
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(MIN_BATCH_ITEMS - 1):
            s.add(Item(project_id=pid, external_id=str(i), text=f"sales rose {i}", text_hash=f"h{i}", split="pool"))
    report = teach(db, pid, _settings(tmp_path, fake))
    assert report.calibration == []
    assert all(sg.calibration is None for sg in _current(db, pid).values())
    db.close()


def test_re_calibration_keeps_the_batch_version_for_training_to_choose(tmp_path: Path, fake: FakeOpenAI) -> None:
    """The re-calibrated version is written after the batch-calibrated one (even where that one was missing), and
    `uncorrected_suggestion_ids` finds the batch version under it."""
    from sqlalchemy import delete

    from terakoya.teachers.calibrating import is_uncorrected, uncorrected_suggestion_ids

    db = open_database(f"sqlite:///{tmp_path / 'u.db'}")
    pid = db.project_id("p")
    with db.session() as s:
        for i in range(60):
            text = f"Item {i}: sales {WORDS[i % len(WORDS)]} this year."
            s.add(Item(project_id=pid, external_id=str(i), text=text, text_hash=f"h{i}", split="pool"))
    settings = _settings(tmp_path, fake)
    teach(db, pid, settings)
    batch = _current(db, pid)
    with db.session() as s:  # as if the project had been taught before batch calibration existed
        s.execute(delete(Suggestion).where(Suggestion.calibration.like("batch:%")))
        person = Person(name="expert")
        s.add(person)
        s.flush()
        flip = {"positive": "negative", "negative": "positive", "neutral": "neutral"}
        for item_id, sg in batch.items():
            s.add(Answer(item_id=item_id, person_id=person.id, label=flip[str(sg.label)]))
    report = calibrate_teacher(db, pid, settings)
    assert report.written == 120  # the batch version again, then the re-calibrated one
    current = _current(db, pid)
    assert all(not is_uncorrected(sg.calibration) for sg in current.values())
    with db.session() as s:
        sids = uncorrected_suggestion_ids(pid).subquery()
        before = {sg.item_id: sg for sg in s.scalars(select(Suggestion).join(sids, Suggestion.id == sids.c.sid))}
    assert set(before) == set(current)
    for item_id, sg in before.items():
        assert sg.calibration == batch[item_id].calibration and sg.label == batch[item_id].label
        assert sg.id < current[item_id].id
    # nothing new: nothing written
    assert calibrate_teacher(db, pid, settings).written == 0
    db.close()
