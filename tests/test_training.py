"""The training recipe on a real database, and predicting a file with the saved student."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from terakoya.errors import DataError, StateError
from terakoya.serving.predicting import predict_file
from terakoya.settings import Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, AutoAccept, Item, Person, StudentRun, Suggestion
from terakoya.students import load
from terakoya.training import (
    NOTHING_TO_TRAIN,
    build_training_set,
    train,
    train_arrays,
)

LABELS = ["negative", "neutral", "positive"]


def make_settings(tmp_path: Path, **student: Any) -> Settings:
    return Settings(
        name="t",
        labels=[{"name": name} for name in LABELS],
        student={"kind": "linear", **student},
        project_dir=tmp_path,
    )


class Builder:
    """Inserts items, teacher suggestions and answers directly."""

    def __init__(self, db: Database, project_id: int) -> None:
        self.db = db
        self.project_id = project_id
        self.n = 0
        with db.session() as s:
            person = Person(name=f"expert-{project_id}")
            s.add(person)
            s.flush()
            self.person_id = person.id

    def item(self, text: str, split: str = "pool") -> int:
        self.n += 1
        with self.db.session() as s:
            item = Item(
                project_id=self.project_id, external_id=str(self.n), text=text, text_hash=f"h{self.n}", split=split
            )
            s.add(item)
            s.flush()
            return item.id

    def teacher(self, item_id: int, probs: dict[str, float], *, known: bool = True, model: str = "big") -> int:
        label = max(probs, key=lambda k: probs[k])
        with self.db.session() as s:
            sug = Suggestion(
                item_id=item_id, agent_kind="teacher", agent=model, prompt_version="p1", label=label,
                probabilities=probs, confidence=max(probs.values()) if known else None, confidence_known=known,
            )  # fmt: skip
            s.add(sug)
            s.flush()
            return sug.id

    def answer(self, item_id: int, label: str, *, kind: str = "label", superseded: bool = False) -> None:
        with self.db.session() as s:
            s.add(Answer(item_id=item_id, person_id=self.person_id, kind=kind, label=label, superseded=superseded))

    def auto_accept(self, item_id: int, suggestion_id: int, label: str, confidence: float) -> None:
        with self.db.session() as s:
            s.add(AutoAccept(item_id=item_id, suggestion_id=suggestion_id, label=label, confidence=confidence))


def test_recipe_picks_targets(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    b = Builder(db, db.project_id("t"))
    settings = make_settings(
        tmp_path,
        teacher_min_confidence=0.5,
        temperature=2.0,
        soft_weight=0.5,
        expert_weight=3.0,
        teacher_correction=False,
    )

    expert = b.item("experts say negative")
    b.teacher(expert, {"negative": 0.05, "neutral": 0.05, "positive": 0.9})
    b.answer(expert, "negative")
    b.answer(expert, "positive")
    b.answer(expert, "negative", kind="verify")
    b.answer(expert, "neutral", superseded=True)
    b.answer(expert, "neutral", kind="flag")

    tie = b.item("a tie goes to the latest answer")
    b.answer(tie, "positive")
    b.answer(tie, "neutral")

    confident = b.item("teacher confident")
    b.teacher(confident, {"negative": 0.1, "neutral": 0.1, "positive": 0.8})

    unsure = b.item("teacher unsure")
    b.teacher(unsure, {"negative": 0.3, "neutral": 0.3, "positive": 0.4})

    accepted = b.item("teacher unsure but auto-accepted")
    sid = b.teacher(accepted, {"negative": 0.4, "neutral": 0.3, "positive": 0.3})
    b.auto_accept(accepted, sid, "negative", 0.4)

    unknown = b.item("confidence unknown")
    b.teacher(unknown, {"negative": 0.0, "neutral": 1.0, "positive": 0.0}, known=False)

    newer = b.item("newest teacher suggestion counts")
    b.teacher(newer, {"negative": 0.9, "neutral": 0.05, "positive": 0.05}, model="old")
    b.teacher(newer, {"negative": 0.45, "neutral": 0.1, "positive": 0.45})

    flagged = b.item("only a flag, no teacher")
    b.answer(flagged, "neutral", kind="flag")

    test_item = b.item("test items are never trained on", split="test")
    b.teacher(test_item, {"negative": 0.9, "neutral": 0.05, "positive": 0.05})
    b.answer(test_item, "negative")

    data = build_training_set(db, b.project_id, settings)
    assert data.item_ids == [expert, tie, confident, accepted]
    assert data.sources == ["expert", "expert", "teacher", "teacher"]
    assert data.classes == LABELS
    assert data.left_out == 4  # unsure, unknown, newer, flagged
    assert data.expert_answers == 5
    np.testing.assert_array_equal(data.weights, [3.0, 3.0, 1.0, 1.0])
    np.testing.assert_array_equal(data.targets[0], [1, 0, 0])
    np.testing.assert_array_equal(data.targets[1], [0, 1, 0])
    # teacher at temperature 2, half soft, half its argmax
    soft = np.sqrt([0.1, 0.1, 0.8])
    soft /= soft.sum()
    np.testing.assert_allclose(data.targets[2], 0.5 * soft + 0.5 * np.array([0, 0, 1]))
    assert data.targets[3].argmax() == 0
    np.testing.assert_allclose(data.targets.sum(axis=1), 1.0)
    assert data.teacher_models == {"big": 2}
    assert data.prompt_versions == {"p1": 2}
    assert len(data.data_hash()) == 64
    assert data.data_hash() == build_training_set(db, b.project_id, settings).data_hash()

    # with no expert items allowed, the expert-labelled item falls back to its (confident) teacher label
    fewer = build_training_set(db, b.project_id, settings, max_expert=1)
    assert fewer.item_ids == [expert, confident, accepted]
    none = build_training_set(db, b.project_id, settings, max_expert=0)
    assert none.sources == ["teacher", "teacher", "teacher"]
    assert none.targets[0].argmax() == 2
    db.close()


def _project(db: Database, n_pool: int = 60, n_test: int = 12) -> Builder:
    b = Builder(db, db.project_id("t"))
    words = {"positive": ["profit rose", "sales grew", "record gains"], "negative": ["loss widened", "sales fell"]}
    words["neutral"] = ["meeting held", "office opened"]
    for i in range(n_pool + n_test):
        label = LABELS[i % 3]
        text = f"{words[label][i % len(words[label])]} item {i}"
        item = b.item(text, split="test" if i >= n_pool else "pool")
        probs = {c: (0.8 if c == label else 0.1) for c in LABELS}
        b.teacher(item, probs)
        if i < 6:
            b.answer(item, label)
    return b


def test_train_saves_records_and_suggests(db_url: str, tmp_path: Path) -> None:
    db = open_database(db_url)
    b = _project(db)
    settings = make_settings(tmp_path)
    seen: list[tuple[int, int]] = []
    report = train(db, b.project_id, settings, progress=lambda done, total: seen.append((done, total)))

    assert report.kind == "linear.v1"
    assert report.run_id.endswith("-linear")
    assert report.path == tmp_path / "runs" / report.run_id
    assert (report.expert_items, report.teacher_items, report.left_out) == (6, 54, 0)
    # 6 expert items are too few to cross-validate anything: the teacher keeps its weight, no temperature
    assert report.temperature == 1.0
    assert report.recipe["teacher_scale"] == 1.0 and report.recipe["self_training"] is None
    assert any("too few to cross-validate" in note for note in report.recipe["notes"])
    assert seen[0] == (0, 72) and seen[-1] == (72, 72)

    student = load(report.path)
    assert student.temperature_ == report.temperature
    meta = student.metadata
    assert meta["teacher_model"] == "big" and meta["prompt_version"] == "p1"
    assert meta["expert_answers"] == 6 and meta["run_id"] == report.run_id
    assert len(meta["data_hash"]) == 64
    assert meta["metrics"]["train_accuracy"] == 1.0

    with db.session() as s:
        run = s.scalars(select(StudentRun)).one()
        assert (run.run_id, run.kind, run.path) == (report.run_id, "linear.v1", str(report.path.resolve()))
        assert run.metrics["expert_items"] == 6
        rows = s.scalars(select(Suggestion).where(Suggestion.agent_kind == "student")).all()
        assert len(rows) == 72  # pool and test items alike
        assert {r.agent for r in rows} == {report.run_id}
        first = rows[0]
        assert abs(sum(first.probabilities.values()) - 1) < 1e-9
        assert first.label == max(first.probabilities, key=first.probabilities.get)
        assert first.confidence == pytest.approx(max(first.probabilities.values()))
        texts = {row.id: row.text for row in s.execute(select(Item.id, Item.text))}
    proba = student.predict_proba([texts[r.item_id] for r in rows])
    np.testing.assert_allclose(proba[:, 0], [r.probabilities["negative"] for r in rows], rtol=1e-12)

    # a second run gets its own id and folder
    again = train(db, b.project_id, settings, out_dir=tmp_path / "elsewhere")
    assert again.run_id != report.run_id
    assert again.path == tmp_path / "elsewhere"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(StudentRun)) == 2
    db.close()


def test_nothing_to_train_says_what_to_run(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    b = Builder(db, db.project_id("t"))
    item = b.item("no teacher yet")
    b.answer(item, "neutral", kind="flag")
    with pytest.raises(StateError) as err:
        train(db, b.project_id, make_settings(tmp_path))
    assert str(err.value) == "nothing to train on: run `terakoya teach` and `terakoya route`/`answer` first"
    assert str(err.value) == NOTHING_TO_TRAIN
    db.close()


def test_train_arrays_calibrates_on_expert_rows_when_there_are_enough() -> None:
    rng = np.random.default_rng(1)
    words = {"positive": "good gain rise", "negative": "bad loss fall", "neutral": "plain note memo"}
    texts, labels = [], []
    for i in range(400):
        label = LABELS[i % 3]
        picked = rng.choice(words[label].split(), size=2)
        noise = rng.choice(["alpha", "beta", "gamma", "delta", "eps"], size=2)
        texts.append(f"{' '.join(picked)} {' '.join(noise)} {i}")
        labels.append(label if rng.random() > 0.2 else LABELS[rng.integers(3)])
    expert = np.zeros(400, dtype=bool)
    expert[:200] = True
    result = train_arrays(texts, labels, None, LABELS, calibrate_on=expert, seed=3)
    assert result.calibration["from_expert"] == 1.0
    assert result.calibration["n_calibration"] == 30.0
    assert result.calibration["nll_after"] <= result.calibration["nll_before"]
    assert result.student.temperature_ == result.temperature
    assert result.temperature > 1.0  # 20 % label noise: the fitted student is over-confident
    assert set(result.calibration) == {
        "n_calibration",
        "from_expert",
        "ece_before",
        "ece_after",
        "nll_before",
        "nll_after",
    }

    few = train_arrays(texts, labels, None, LABELS, calibrate_on=expert[::-1] & (np.arange(400) > 390))
    assert few.calibration["from_expert"] == 0.0
    assert few.calibration["n_calibration"] == 60.0
    same = train_arrays(texts, labels, None, LABELS, calibrate_on=expert, seed=3)
    assert same.temperature == result.temperature
    off = train_arrays(texts[:50], labels[:50], None, LABELS, calibrate=False)
    assert (off.temperature, off.calibration["n_calibration"]) == (1.0, 0.0)


# ----------------------------------------------------------------------------- predict_file


@pytest.fixture
def model(tmp_path: Path) -> Path:
    texts = ["profit rose", "sales grew", "loss widened", "sales fell", "meeting held", "office opened"]
    labels = ["positive", "positive", "negative", "negative", "neutral", "neutral"]
    result = train_arrays(texts, labels, None, LABELS, calibrate=False)
    return result.student.save(tmp_path / "model")


def _write_input(tmp_path: Path) -> Path:
    path = tmp_path / "in.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "sentence"])
        for i in range(5000):
            writer.writerow([i, ["profit rose again", "loss widened, sales fell", "a meeting, held"][i % 3]])
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_file_round_trip(model: Path, tmp_path: Path, suffix: str) -> None:
    source = _write_input(tmp_path)
    out = tmp_path / f"out{suffix}"
    assert predict_file(model, source, out, text_column="sentence") == 5000
    columns = ["id", "sentence", "predicted_label", "confidence", "p_negative", "p_neutral", "p_positive"]
    if suffix == ".csv":
        with out.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert list(rows[0]) == columns
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert list(rows[0]) == columns
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        assert table.column_names == columns
        rows = table.to_pylist()
    assert len(rows) == 5000
    assert [r["predicted_label"] for r in rows[:3]] == ["positive", "negative", "neutral"]
    assert rows[4999]["id"] in ("4999", 4999)
    first = rows[0]
    probs = [float(first[c]) for c in columns[4:]]
    assert sum(probs) == pytest.approx(1.0)
    assert float(first["confidence"]) == pytest.approx(max(probs))
    assert not list(tmp_path.glob(".out*"))  # no temporary file left behind


def test_predict_file_names_the_missing_column(model: Path, tmp_path: Path) -> None:
    source = _write_input(tmp_path)
    out = tmp_path / "out.csv"
    with pytest.raises(DataError) as err:
        predict_file(model, source, out)
    assert (
        str(err.value) == "column 'text' not found in in.csv; columns are: id, sentence — pass --text-column sentence"
    )
    assert not out.exists()
    with pytest.raises(DataError, match=r"cannot tell which format to write out.xlsx in; name it .csv, .tsv"):
        predict_file(model, source, tmp_path / "out.xlsx", text_column="sentence")


def test_predict_file_keeps_clear_of_input_columns(model: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"text": "profit rose", "predicted_label": "x", "meta": {"a": 1}}) + "\n", encoding="utf-8"
    )
    out = tmp_path / "out.jsonl"
    assert predict_file(model, source, out) == 1
    row = json.loads(out.read_text(encoding="utf-8"))
    assert row["predicted_label"] == "x"
    assert row["student_predicted_label"] == "positive"
    assert row["meta"] == {"a": 1}


@pytest.mark.slow
def test_train_an_embed_student(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    b = _project(db, n_pool=30, n_test=6)
    report = train(db, b.project_id, make_settings(tmp_path), kind="embed")
    assert report.kind == "embed.v1" and report.run_id.endswith("-embed")
    student = load(report.path)
    assert student.get_params()["cache_dir"] is None  # the project's cache stays with the project
    assert student.encoder_ == "minilm+multilingual+words"  # an English project: both encoders, one vector each
    for encoder in ("minilm", "multilingual"):
        assert len(list((tmp_path / "cache" / "embeddings" / encoder).rglob("*.npy"))) == 36
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Suggestion).where(Suggestion.agent == report.run_id)) == 36
    db.close()


def test_teacher_scale_is_chosen_on_expert_answers() -> None:
    """A teacher whose labels are the opposite of the experts' is weighed 0; a faithful one keeps weight."""
    from terakoya.training import TEACHER_SCALES, TrainingSet, choose_teacher_scale

    rng = np.random.default_rng(0)
    good = ["profit rose strongly", "record sales growth", "dividend raised again", "orders up sharply"]
    bad = ["loss widened badly", "sales fell sharply", "plant closed with layoffs", "rating cut to junk"]
    texts, targets, sources = [], [], []
    for i in range(60):  # expert items
        pos = i % 2 == 0
        texts.append(f"{rng.choice(good if pos else bad)} {i}")
        targets.append([0.0, 0.0, 1.0] if pos else [1.0, 0.0, 0.0])
        sources.append("expert")
    for i in range(300):  # teacher items: the opposite label
        pos = i % 2 == 0
        texts.append(f"{rng.choice(good if pos else bad)} t{i}")
        targets.append([1.0, 0.0, 0.0] if pos else [0.0, 0.0, 1.0])
        sources.append("teacher")
    data = TrainingSet(
        texts=texts,
        targets=np.asarray(targets),
        weights=np.where(np.asarray(sources) == "expert", 3.0, 1.0),
        sources=sources,
        item_ids=list(range(len(texts))),
        classes=LABELS,
    )
    scale, scores = choose_teacher_scale(data, kind="linear")
    assert scale == 0.0
    assert scores["scale=0"] > scores["scale=1"]
    flipped = TrainingSet(
        texts=texts,
        targets=np.asarray([t if s == "expert" else t[::-1] for t, s in zip(targets, sources, strict=True)]),
        weights=data.weights,
        sources=sources,
        item_ids=data.item_ids,
        classes=LABELS,
    )
    # a faithful teacher is no worse than the experts alone within noise: it gets the largest weight tried
    assert choose_teacher_scale(flipped, kind="linear")[0] == max(TEACHER_SCALES)


def test_failed_retry_does_not_hide_an_earlier_teacher_answer(tmp_path: Path) -> None:
    """Training reads the current teacher suggestion as routing and evaluation do: the newest without an error."""
    db = open_database(f"sqlite:///{tmp_path / 'e.db'}")
    b = Builder(db, db.project_id("t"))
    item = b.item("answered, then a retry failed")
    b.teacher(item, {"negative": 0.1, "neutral": 0.1, "positive": 0.8})
    with db.session() as s:
        s.add(
            Suggestion(
                item_id=item, agent_kind="teacher", agent="big", prompt_version="p2", label=None,
                probabilities={}, confidence=None, error="timeout",
            )
        )  # fmt: skip
    data = build_training_set(db, b.project_id, make_settings(tmp_path, soft_weight=1.0))
    assert data.item_ids == [item]
    np.testing.assert_allclose(data.targets[0], [0.1, 0.1, 0.8])


def _collapse_case(corrected_collapses: bool) -> Any:
    """Too few expert items to see every word of each label, enough teacher items to: one version of the teacher's
    labels says `neutral` for everything (a re-calibration shrunk to the majority), the other is right."""
    from terakoya.training import TrainingSet

    rng = np.random.default_rng(1)
    vocab = {c: [f"z{rng.integers(10**6)}q" for _ in range(40)] for c in LABELS}  # no word tells its label
    texts, right, sources = [], [], []
    for n, source in ((30, "expert"), (450, "teacher")):
        for i in range(n):
            label = LABELS[i % 3]
            texts.append(" ".join(rng.choice(vocab[label], size=2)))
            right.append(np.eye(3)[i % 3])
            sources.append(source)
    truth = np.asarray(right)
    collapsed = np.where((np.asarray(sources) == "teacher")[:, None], np.eye(3)[1], truth)
    corrected, uncorrected = (collapsed, truth) if corrected_collapses else (truth, collapsed)
    n = len(texts)
    return TrainingSet(
        texts=texts, targets=corrected, weights=np.where(np.asarray(sources) == "expert", 3.0, 1.0), sources=sources,
        item_ids=list(range(n)), classes=LABELS, suggestion_ids=[None if s == "expert" else 1000 + i
        for i, s in enumerate(sources)], other_targets=uncorrected,
        other_ids=[None if s == "expert" else 5000 + i for i, s in enumerate(sources)],
    )  # fmt: skip


@pytest.mark.parametrize("corrected_collapses", [True, False])
def test_recipe_chooses_the_teacher_label_version_the_student_learns_best_from(
    tmp_path: Path, corrected_collapses: bool
) -> None:
    from terakoya.training import CORRECTED, UNCORRECTED, fit_recipe

    data = _collapse_case(corrected_collapses)
    recipe = fit_recipe(data, kind="linear", settings=make_settings(tmp_path, self_training=False))
    assert recipe.teacher_version == (UNCORRECTED if corrected_collapses else CORRECTED)
    assert recipe.teacher_scale > 0 and recipe.cv_accuracy is not None and recipe.cv_accuracy > 0.9
    assert f"{UNCORRECTED} scale=1" in recipe.scores
    if corrected_collapses:
        assert recipe.scores[f"{UNCORRECTED} scale=1"] > recipe.scores["scale=1"]
        assert any("before re-calibration" in note for note in recipe.notes)
    swapped = data.with_version(UNCORRECTED)
    assert swapped.suggestion_ids[-1] == 5000 + len(data) - 1 and swapped.with_version(CORRECTED) is not data
    assert np.array_equal(swapped.with_version(CORRECTED).targets, data.targets)
