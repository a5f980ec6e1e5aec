"""The report in plain words: accuracy by slice, verify vs blind, the first screen, on real SQLite projects."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from terakoya.evaluation import gather
from terakoya.evaluation.findings import findings, summary
from terakoya.evaluation.metrics import holm, proportions_p, wilson_interval
from terakoya.evaluation.render import render_html, render_terminal
from terakoya.evaluation.report import evaluate
from terakoya.evaluation.sections import Economics, Report
from terakoya.evaluation.slices import slice_report
from terakoya.settings import LabelSpec, Settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, Item, Person, Suggestion, Task

LABELS = ["negative", "neutral", "positive"]


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    base: dict[str, Any] = {
        "name": "slices",
        "labels": [LabelSpec(name=n) for n in LABELS],
        "project_dir": tmp_path,
        "teacher": {"kind": "python", "function": "tests:fake"},
        "evaluation": {"timing_items": 20},
        "student": {"kind": "linear"},
    }
    return Settings(**(base | extra))


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _ci(right: int, n: int) -> str:
    ci = wilson_interval(right, n)
    assert ci is not None
    return f"95% CI {_pct(ci[0])}–{_pct(ci[1])}"


def _item(s: Any, pid: int, split: str, i: int, gold: str, meta: dict[str, Any]) -> Item:
    # every text is as long as the others, so that the text length cannot be sliced and the tests stay on meta
    item = Item(project_id=pid, external_id=f"{split}-{i}", text=f"{split} item {i:05d}", text_hash=f"{split}{i}",
                split=split, gold_label=gold, meta=meta)  # fmt: skip
    s.add(item)
    s.flush()
    return item


def _teacher_says(s: Any, item: Item, label: str) -> None:
    probs = {lab: (0.8 if lab == label else 0.1) for lab in LABELS}
    s.add(Suggestion(item_id=item.id, agent_kind="teacher", agent="fake-llm", prompt_version="v1", label=label,
                     probabilities=probs, confidence=0.8, latency_ms=100.0))  # fmt: skip


def _wrong(gold: str) -> str:
    return LABELS[(LABELS.index(gold) + 1) % 3]


def build_bilingual(
    tmp_path: Path, url: str, n_en: int, n_ja: int, right: Callable[[str, int], bool]
) -> tuple[Database, int]:
    """Test items in English and Japanese (meta ``lang``, and a ``source`` that means nothing); the teacher is
    right where ``right(lang, i)`` says."""
    db = open_database(url)
    pid = db.project_id("slices")
    with db.session() as s:
        for i in range(n_en + n_ja):
            lang = "en" if i < n_en else "ja"
            gold = LABELS[i % 3]
            item = _item(s, pid, "test", i, gold, {"lang": lang, "source": f"wire-{i % 3}"})
            _teacher_says(s, item, gold if right(lang, i) else _wrong(gold))
    return db, pid


def test_a_slice_clearly_worse_for_the_teacher_is_named_in_plain_words(tmp_path: Path, db_url: str) -> None:
    # the teacher: 57 of 60 English items right, 24 of 60 Japanese
    db, pid = build_bilingual(tmp_path, db_url, 60, 60, lambda lang, i: i % 20 != 0 if lang == "en" else i % 5 < 2)
    result = evaluate(db, pid, _settings(tmp_path), learning_curve=False, out_dir=tmp_path / "r")
    report = result.report
    slices = report.slices
    assert slices is not None
    lang = next(c for c in slices.columns if c.name == "lang")
    ja = next(r for r in lang.rows if r.value == "ja")
    assert ja.teacher is not None and (ja.teacher.correct, ja.teacher.items, ja.teacher.verdict) == (24, 60, "worse")
    assert ja.student is None  # no student yet
    # lang (one comparison: its two slices are each other's rest) and source (three)
    assert slices.comparisons == 4
    assert "text length: the test texts are too alike in length to cut" in slices.skipped
    p = proportions_p(24, 60, 57, 60)
    assert p is not None and ja.teacher.p_value == pytest.approx(min(1.0, 4 * p))
    claim = (
        f"The teacher is measurably worse on lang = ja: 40% ({_ci(24, 60)}) on 60 items vs 95% on the other 60 — "
        f"55 points lower (Fisher's exact test, p = {ja.teacher.p_value:.2g} after correcting for 4 comparisons)."
    )
    assert slices.sentences[0] == claim
    # the source slices mix both languages: nothing measurable there, and the sentences do not claim any
    assert all(r.teacher is not None and r.teacher.verdict == "no measurable difference"
               for c in slices.columns if c.name == "source" for r in c.rows)  # fmt: skip
    assert sum(" is measurably worse on " in line for line in slices.sentences) == 1
    assert claim in report.findings
    # the first screen says it, and points to the section
    first = {line.topic: line for line in report.summary}
    biased = first["Is it worse on some part of the data?"]
    assert biased.text == "Measurably worse on a slice of the data: the teacher on lang = ja (40% vs 95% on the rest)."
    assert biased.see == "slices"
    # report.json carries it, and the page and the terminal show it
    saved = json.loads(result.json_path.read_text(encoding="utf-8"))
    assert saved["slices"]["sentences"][0] == claim
    assert Report.from_json(saved).slices == slices
    page = result.html_path.read_text(encoding="utf-8")
    assert '<h2 id="slices">Where the AI is biased: accuracy by slice</h2>' in page
    assert '<a href="#slices">→ Where the AI is biased: accuracy by slice</a>' in page
    assert re.search(r'<td class="n worse">40\.0% \(28\.\d%–52\.\d%\)<br><span class="muted">24 of 60 · worse', page)
    console = Console(record=True, width=200)
    render_terminal(saved, console)
    screen = console.export_text()
    assert "Is it worse on some part of the data?" in screen and "▼ worse" in screen
    assert screen.index("in plain words") < screen.index("gold test items")  # the answers come first


def test_slices_too_small_to_tell_say_so_and_claim_nothing(tmp_path: Path) -> None:
    # four Japanese items, all wrong: striking, and far too few to claim anything
    db, pid = build_bilingual(tmp_path, f"sqlite:///{tmp_path / 'terakoya.db'}", 26, 4, lambda lang, i: lang == "en")
    report = evaluate(db, pid, _settings(tmp_path), learning_curve=False, out_dir=tmp_path / "r").report
    slices = report.slices
    assert slices is not None
    lang = next(c for c in slices.columns if c.name == "lang")
    assert [r.teacher.verdict for r in lang.rows if r.teacher] == ["too few items", "too few items"]
    assert all(r.teacher is not None and r.teacher.p_value is None for r in lang.rows)
    assert not any("measurably worse on" in line for line in slices.sentences)
    assert (
        "Too few items to tell (under 10 in the slice), so not claimed: lang = ja looks 100 points worse for the "
        "teacher (0 of 4 right)."
    ) in slices.sentences
    # the source slices (10 items each) were tested, and nothing there is measurable
    assert slices.sentences[0].startswith(
        "No slice is measurably worse than the rest for the teacher (3 comparisons by metadata column and text "
        "length, Fisher's exact test, Holm-corrected)"
    )


def test_slices_too_small_everywhere(tmp_path: Path) -> None:
    db, pid = build_bilingual(tmp_path, f"sqlite:///{tmp_path / 'terakoya.db'}", 8, 4, lambda lang, i: lang == "en")
    report = evaluate(db, pid, _settings(tmp_path), learning_curve=False, out_dir=tmp_path / "r").report
    assert report.slices is not None and report.slices.comparisons == 0
    assert report.slices.sentences[0] == (
        "Too few items to tell for the teacher: 12 scored test items, and no slice and its rest both reach 10."
    )
    first = {line.topic: line.text for line in report.summary}
    assert first["Is it worse on some part of the data?"] == report.slices.sentences[0]


def _items(values: list[dict[str, Any]], lengths: list[int] | None = None) -> list[gather.TestItem]:
    lengths = lengths or [10] * len(values)
    return [
        gather.TestItem(i, str(i), "x" * n, "a", meta) for i, (meta, n) in enumerate(zip(values, lengths, strict=True))
    ]


def test_slice_report_cuts_numbers_and_text_length_and_skips_what_it_cannot_slice() -> None:
    n = 60
    items = _items(
        [{"score": str(i), "id2": f"row-{i}", "tags": ["a"], "same": "x", "tier": i % 4 or None} for i in range(n)],
        [20 + i for i in range(n)],
    )
    right = {"teacher": {i: True for i in range(n)}}
    out = slice_report(items, right)
    by_name = {c.name: c for c in out.columns}
    assert set(by_name) == {"score", "tier", "text length (characters)"}
    score = by_name["score"]
    assert score.kind == "buckets" and [r.value for r in score.rows] == ["≤ 19", "> 19, ≤ 39", "> 39"]
    assert [r.items for r in score.rows] == [20, 20, 20]
    assert score.note == "numeric column 'score' cut at 19, 39, into buckets of about equal size"
    # a few numbers are sliced by value, in their order, a missing value last
    assert [r.value for r in by_name["tier"].rows] == ["1", "2", "3", "(missing)"]
    assert [r.value for r in by_name["text length (characters)"].rows] == ["≤ 39", "> 39, ≤ 59", "> 59"]
    assert out.skipped == [
        "column 'id2' has 60 distinct values on the test items — too many to slice by (at most 12, or numbers)",
        "column 'tags' holds lists or objects, not values to slice by",
        "column 'same' has one value on every test item",
    ]
    # everyone right everywhere: tested, nothing measurable, no gap to mention
    assert out.sentences == [
        f"No slice is measurably worse than the rest for the teacher ({out.comparisons} comparisons by metadata "
        "column and text length, Fisher's exact test, Holm-corrected)."
    ]


def test_holm_keeps_order_and_is_monotone() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []
    assert proportions_p(1, 0, 1, 2) is None


# ----------------------------------------------------------------------------- verify vs blind


def build_tasks(tmp_path: Path, n_verify: int, n_blind: int) -> tuple[Database, int]:
    """Pool items with recorded labels, the teacher wrong on every other one; one person anchored on verify
    tasks (always takes the teacher's label) and right on blind ones (audits and random picks)."""
    db = open_database(f"sqlite:///{tmp_path / 'terakoya.db'}")
    pid = db.project_id("slices")
    with db.session() as s:
        ann, sim = Person(name="ann"), Person(name="oracle", simulated=True)
        s.add_all([ann, sim])
        s.flush()
        for i in range(12):
            _teacher_says(s, _item(s, pid, "test", i, LABELS[i % 3], {}), LABELS[i % 3])
        for i in range(n_verify + n_blind):
            gold = LABELS[i % 3]
            item = _item(s, pid, "pool", i, gold, {})
            said = gold if i % 2 else _wrong(gold)
            _teacher_says(s, item, said)
            verify = i < n_verify
            task = Task(project_id=pid, item_id=item.id, kind="verify" if verify else "label",
                        reason="routed" if verify else ("audit" if i % 3 else "random"), status="answered")  # fmt: skip
            s.add(task)
            s.flush()
            label = said if verify else gold
            value = {"label": label, "teacher_label": said, "accepted": label == said} if verify else {"label": label}
            s.add(Answer(item_id=item.id, person_id=ann.id, task_id=task.id, kind=task.kind, label=label, value=value,
                         active_seconds=4.0 if verify else 12.0, source="web"))  # fmt: skip
        # a simulated answer shows nothing about people: left out
        s.add(Answer(item_id=1, person_id=sim.id, kind="label", label=LABELS[0], simulated=True, source="simulate"))
    return db, pid


def test_verify_vs_blind_shows_anchoring(tmp_path: Path) -> None:
    db, pid = build_tasks(tmp_path, 30, 30)
    result = evaluate(db, pid, _settings(tmp_path), learning_curve=False, out_dir=tmp_path / "r")
    v = result.report.verify_vs_blind
    assert v is not None
    assert (v.verify.answers, v.verify.agree, v.verify.correct, v.verify.teacher_wrong, v.verify.followed_wrong) == (
        30,
        30,
        15,
        15,
        15,
    )
    assert (v.blind.answers, v.blind.agree, v.blind.correct, v.blind.teacher_wrong, v.blind.followed_wrong) == (
        30,
        15,
        30,
        15,
        0,
    )
    assert (v.simulated_left_out, v.other_left_out) == (1, 0)
    # checking a suggestion takes less time than labelling blind
    assert (v.verify.median_seconds, v.verify.timed, v.blind.median_seconds, v.blind.timed) == (4.0, 30, 12.0, 30)
    agreement_p, accuracy_p = proportions_p(30, 30, 15, 30), proportions_p(15, 30, 30, 30)
    assert agreement_p is not None and accuracy_p is not None
    assert v.sentences == [
        f"Experts gave the teacher's label on 100% ({_ci(30, 30)}) of 30 verify answers (its label shown) and on 50% "
        f"({_ci(15, 30)}) of 30 blind ones — measurably more often when shown it (Fisher's exact test, "
        f"p = {agreement_p:.2g}): its suggestion may be anchoring them.",
        f"Against the recorded labels the experts are right on 50% ({_ci(15, 30)}) of 30 verify answers and 100% "
        f"({_ci(30, 30)}) of 30 blind ones — measurably lower on verify (Fisher's exact test, p = {accuracy_p:.2g}).",
        "Where the teacher's label was wrong, the experts repeated it on 15 of 15 verify answers and 0 of 15 blind "
        "ones.",
    ]
    first = {line.topic: line for line in result.report.summary}
    assert first["Do the experts follow the teacher when they see its label?"].text == v.sentences[0]
    page = result.html_path.read_text(encoding="utf-8")
    assert '<h2 id="verify-blind">' in page and "verify (teacher&#x27;s label shown)" in page
    assert "Left out: 1 simulated answers (they copy recorded labels)." in page
    assert "median time per decision" in page and "4.0 s (30 timed)" in page and "12.0 s (30 timed)" in page


def test_verify_vs_blind_says_when_there_are_too_few(tmp_path: Path) -> None:
    db, pid = build_tasks(tmp_path, 3, 4)
    v = evaluate(db, pid, _settings(tmp_path), learning_curve=False, out_dir=tmp_path / "r").report.verify_vs_blind
    assert v is not None and v.agreement_p is None and v.accuracy_p is None
    assert v.sentences[:2] == [
        "Too few answers to tell whether seeing the teacher's label sways the experts: 3 verify and 4 blind answers "
        "on items the teacher labelled (at least 10 of each needed).",
        "Too few answers on items with a recorded label to compare the experts' accuracy: 3 verify and 4 blind "
        "(at least 10 of each needed).",
    ]


# ----------------------------------------------------------------------------- the first screen


def test_first_screen_answers_cost_and_time_where_most_answers_recorded_no_time(tmp_path: Path) -> None:
    """24 answers, three of them timed at 6 s: the time is told apart, and the per-hour cost counts the rest."""
    db, pid = build_tasks(tmp_path, 12, 12)
    with db.session() as s:
        for n, answer in enumerate(s.query(Answer).filter(Answer.simulated.is_(False)).order_by(Answer.id)):
            answer.active_seconds = 6.0 if n < 3 else None
    settings = _settings(tmp_path, pay={"mode": "per_hour", "per_hour": 20.0})
    result = evaluate(db, pid, settings, learning_curve=False, out_dir=tmp_path / "r")
    report = result.report
    t = report.expert_time
    assert t is not None and (t.answers, t.timed, t.untimed, t.simulated) == (25, 3, 21, 1)
    assert t.recorded_minutes == pytest.approx(0.3) and t.estimated_minutes == pytest.approx(2.1)
    assert report.expert_cost.amount == pytest.approx(20.0 * 2.4 / 60)
    assert report.expert_cost.rule == "20 per hour (21 answers without recorded time counted at the median)"
    first = {line.topic: line for line in report.summary}
    cost = first["What did the experts cost?"]
    assert cost.text == (
        "0.80 USD at 20 per hour (21 answers without recorded time counted at the median) and about 2.4 minutes of "
        "expert time for 25 answers — 18 s of active time recorded on 3 answers by people (6 s each); 21 answers by "
        "people recorded no time (about 2.1 minutes at the median recorded time); no time for 1 simulated answers."
    )
    assert cost.see == "experts"
    # no student: the first answer says so, and how to get one
    assert first["Is the student better than the teacher?"].text.startswith(
        "Not known: no student yet: run `terakoya train`; the teacher scores 100.0% on 12 gold test items"
    )
    page = result.html_path.read_text(encoding="utf-8")
    assert "expert minutes" not in page and "about 2.4 minutes of expert time (18 s of active time" in page
    assert any(line.startswith("Expert cost: 0.80 USD at 20 per hour") for line in report.findings)


def test_too_short_recorded_time_is_called_out(tmp_path: Path) -> None:
    db, pid = build_tasks(tmp_path, 12, 12)
    with db.session() as s:
        for answer in s.query(Answer).filter(Answer.simulated.is_(False)):
            answer.active_seconds = 0.75
    report = evaluate(db, pid, _settings(tmp_path), learning_curve=False, out_dir=tmp_path / "r").report
    first = {line.topic: line.text for line in report.summary}
    assert (
        "18 s of active time recorded on 24 answers by people (1 s each) — under 3 s an answer is quicker than "
        "anyone reads an item, so the recorded time looks incomplete"
    ) in first["What did the experts cost?"]


def test_first_screen_student_vs_teacher_and_speed_agree_with_the_table(tmp_path: Path) -> None:
    from terakoya.evaluation.findings import rate
    from terakoya.training import train

    db, pid = build_bilingual(tmp_path, f"sqlite:///{tmp_path / 'terakoya.db'}", 30, 30, lambda lang, i: i % 4 != 0)
    with db.session() as s:  # a pool the student can learn from
        for i in range(60):
            gold = LABELS[i % 3]
            item = Item(project_id=pid, external_id=f"pool-{i}", text=f"{gold} words {i}", text_hash=f"p{i}",
                        split="pool", gold_label=gold, meta={})  # fmt: skip
            s.add(item)
            s.flush()
            _teacher_says(s, item, gold)
    settings = _settings(tmp_path)
    train(db, pid, settings)
    report = evaluate(db, pid, settings, learning_curve=False, out_dir=tmp_path / "r").report
    paired = report.paired
    assert paired is not None and paired.student_accuracy is not None and paired.teacher_accuracy is not None
    first = {line.topic: line for line in report.summary}
    verdict = first["Is the student better than the teacher?"]
    diff = 100 * (paired.student_accuracy - paired.teacher_accuracy)
    assert f"{abs(diff):.1f} points {'more' if diff > 0 else 'less'} accurate than the teacher" in verdict.text
    assert f"on the same {paired.items} gold test items" in verdict.text and "McNemar" in verdict.text
    assert verdict.see == "comparison"
    # a student half as fast as its teacher reads "2.0x slower", in every place that shows the speed
    teacher_ips = report.teacher.speed.items_per_second
    assert teacher_ips is not None and report.student.timing is not None
    slow = replace(report, summary=[], economics=Economics(0.5, None, report.economics.note))
    slow.student = replace(report.student, timing=replace(report.student.timing, items_per_second=teacher_ips / 2))
    slow.findings = findings(slow)
    rates = f"({rate(teacher_ips / 2)} vs {rate(teacher_ips)} items per second)"
    sentence = f"The student is 2.0x slower than the teacher {rates}."
    assert {line.topic: line.text for line in summary(slow)}["How fast is the student?"] == sentence
    page = render_html(slow, {})
    assert sentence in page and "Speed-up" not in page and "0x" not in page.replace("2.0x", "")
    console = Console(record=True, width=200)
    render_terminal(slow, console)
    assert console.export_text().count(sentence) == 2  # the first screen and the findings: the same words


def test_page_is_readable_on_a_phone_and_explains_its_charts(tmp_path: Path) -> None:
    db, pid = build_bilingual(tmp_path, f"sqlite:///{tmp_path / 'terakoya.db'}", 20, 20, lambda lang, i: i % 3 != 0)
    result = evaluate(db, pid, _settings(tmp_path), learning_curve=False, out_dir=tmp_path / "r")
    page = result.html_path.read_text(encoding="utf-8")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "Green cells (the diagonal) are right answers, red cells errors" in page
    assert re.search(r"<details><summary>Show the reliability diagrams</summary><p><img alt=\"reliability", page)
    assert page.index('id="summary"') < page.index('id="comparison"')


def test_a_report_json_from_before_the_new_sections_still_renders(tmp_path: Path) -> None:
    db, pid = build_bilingual(tmp_path, f"sqlite:///{tmp_path / 'terakoya.db'}", 20, 20, lambda lang, i: True)
    data = evaluate(db, pid, _settings(tmp_path), learning_curve=False, out_dir=tmp_path / "r").data
    old = {k: v for k, v in data.items() if k not in ("summary", "slices", "verify_vs_blind", "expert_time")}
    typed = Report.from_json(old)
    assert typed.slices is None and typed.summary == [] and typed.expert_time is None
    page = render_html(old, {})
    assert "This report was written before accuracy by slice was part of it." in page
    assert "Is the student better than the teacher?" in page  # the first screen, worked out from the rest
    assert f"{old['expert_minutes']:.1f} expert minutes" in page
