"""The demo data set and the demo project file that ship inside the package."""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

import terakoya
from terakoya.settings import load_settings

DATA = Path(terakoya.__file__).parent / "demo" / "data"
LABELS = ("positive", "negative", "neutral")
LANGS = ("en", "ja")
# about 30 % positive, 20 % negative, 50 % neutral in each language
SHARES = {"positive": (0.25, 0.35), "negative": (0.15, 0.25), "neutral": (0.45, 0.55)}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with (DATA / "fin_news.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["id", "text", "label", "lang", "split"]
        out = list(reader)
    broken = [row for row in out if None in row or None in row.values()]
    assert broken == [], "rows with extra or missing fields"
    return out


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def test_sizes_are_plausible(rows: list[dict[str, str]]) -> None:
    per_lang = Counter(r["lang"] for r in rows)
    assert 560 <= len(rows) <= 640
    assert 330 <= per_lang["en"] <= 390
    assert 210 <= per_lang["ja"] <= 270


def test_values_are_valid(rows: list[dict[str, str]]) -> None:
    assert {r["label"] for r in rows} == set(LABELS)
    assert {r["lang"] for r in rows} == set(LANGS)
    assert {r["split"] for r in rows} == {"pool", "test"}
    for r in rows:
        assert re.fullmatch(rf"{r['lang']}-\d{{4}}", r["id"]), r["id"]
        assert r["text"] == r["text"].strip() and r["text"], r["id"]


def test_ids_and_texts_are_unique(rows: list[dict[str, str]]) -> None:
    ids = Counter(r["id"] for r in rows)
    texts = Counter(_normal(r["text"]) for r in rows)
    assert [i for i, n in ids.items() if n > 1] == []
    assert [t for t, n in texts.items() if n > 1] == []


def test_sentences_look_like_their_language(rows: list[dict[str, str]]) -> None:
    japanese = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    for r in rows:
        if r["lang"] == "en":
            assert 8 <= len(r["text"].split()) <= 30, r["id"]
            assert not japanese.search(r["text"]), r["id"]
        else:
            assert japanese.search(r["text"]), r["id"]
            assert r["text"].endswith("。") and r["text"].count("。") == 1, r["id"]


@pytest.mark.parametrize("lang", LANGS)
def test_label_imbalance_is_realistic(rows: list[dict[str, str]], lang: str) -> None:
    mine = [r for r in rows if r["lang"] == lang]
    counts = Counter(r["label"] for r in mine)
    for label, (low, high) in SHARES.items():
        assert low <= counts[label] / len(mine) <= high, (lang, label, counts)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("label", LABELS)
def test_test_split_is_stratified(rows: list[dict[str, str]], lang: str, label: str) -> None:
    group = [r for r in rows if r["lang"] == lang and r["label"] == label]
    test = sum(r["split"] == "test" for r in group)
    assert abs(test - 0.25 * len(group)) <= 1, (lang, label, test, len(group))


def test_readme_counts_match_the_file(rows: list[dict[str, str]]) -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    c = Counter((r["lang"], r["label"], r["split"]) for r in rows)
    for lang in LANGS:
        for label in LABELS:
            pool, test = c[(lang, label, "pool")], c[(lang, label, "test")]
            assert f"| {lang} | {label} | {pool} | {test} | {pool + test} |" in readme
    pool = sum(r["split"] == "pool" for r in rows)
    assert f"| all | all | {pool} | {len(rows) - pool} | {len(rows)} |" in readme
    assert "Apache-2.0" in readme


def test_project_file_validates(tmp_path: Path, rows: list[dict[str, str]]) -> None:
    shutil.copy(DATA / "terakoya.toml", tmp_path / "terakoya.toml")
    s = load_settings(tmp_path, env={})
    assert s.name == "demo-fin-news"
    assert s.label_names == list(LABELS)
    assert all(label.description for label in s.labels)
    assert s.guidelines.strip().startswith("#")
    assert {"EBITDA", "下方修正"} <= set(s.glossary) and len(s.glossary) >= 10
    assert (s.teacher.kind, s.teacher.model, s.teacher.few_shot) == ("local", "gemma3-270m", 4)
    assert (s.teacher.prompt_style, s.teacher.examples_from) == ("plain", "file")
    assert (s.routing.strategy, s.routing.auto_accept_threshold, s.routing.gold_share) == ("terakoya", 0.9, 0.1)
    assert s.routing.seconds_per_item == 20 and s.student.kind == "embed"


def test_examples_come_from_the_pool_and_cover_every_label(tmp_path: Path, rows: list[dict[str, str]]) -> None:
    shutil.copy(DATA / "terakoya.toml", tmp_path / "terakoya.toml")
    s = load_settings(tmp_path, env={})
    assert len(s.examples) == s.teacher.few_shot == 4
    assert {e.label for e in s.examples} == set(LABELS)
    assert any(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", e.text) for e in s.examples)
    # chosen among pool items with their recorded labels; never a test item, which would measure the teacher
    # on its own example
    split_of = {_normal(r["text"]): (r["split"], r["label"]) for r in rows}
    assert [split_of.get(_normal(e.text)) for e in s.examples] == [("pool", e.label) for e in s.examples]
