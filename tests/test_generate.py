"""generate.v1 through the library: import -> teacher answers -> rate/compare/correct -> datasets -> a tiny student
-> blind comparisons -> the report. Real SQLite, real HTTP to a local OpenAI-compatible server for the writer."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.fakes.openai_server import FakeOpenAI

from terakoya import workqueue
from terakoya.errors import ConfigError, DataError
from terakoya.generation.routing import route_generate
from terakoya.generation.teach import teach_generate
from terakoya.generation.teachers import OpenAIWriter
from terakoya.generation.training import build_datasets, verdicts
from terakoya.kinds import get_kind
from terakoya.kinds.generate import check_role, messages_of, prompt_text, read_messages
from terakoya.project import Project
from terakoya.settings import Settings
from terakoya.storage.models import Item, Person, StudentRun, Suggestion, Task, TrainingLabel
from terakoya.storage.web_models import Membership

TOML = """
[project]
name = "gen"
[task]
kind = "generate.v1"
[teacher]
kind = "recorded"
[routing]
gold_share = 0.0
audit_share = 0.0
[generate]
compare_share = 0.5
student_layers = 1
student_width = 32
student_vocab = 300
max_length = 64
sft_epochs = 2
dpo_epochs = 1
student_max_new_tokens = 12
student_answers = 6
"""


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    rows = []
    for i in range(start, start + n):
        prompt: Any = f"What is {i} plus one?"
        if i % 5 == 0:  # a conversation in chat format
            prompt = [
                {"role": "user", "content": f"I have {i} apples."},
                {"role": "assistant", "content": "Fine."},
                {"role": "user", "content": f"How many after one more? ({i})"},
            ]
        # two recorded samples for even rows (they differ), one for odd rows
        response: Any = [f"It is {i + 1}.", f"Maybe {i + 2}?"] if i % 2 == 0 else f"It is {i + 1}."
        rows.append({"id": f"q{i}", "prompt": prompt, "reference": f"{i + 1}.", "response": response})
    return rows


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _trainer(project: Project, name: str) -> int:
    with project.db.session() as s:
        person = Person(name=name, role="trainer")
        s.add(person)
        s.flush()
        s.add(Membership(project_id=project.project_id, person_id=person.id, role="trainer"))
        return person.id


def test_prompts_in_chat_format_are_read_and_checked() -> None:
    turns = [{"role": "user", "content": "hi"}]
    assert messages_of(prompt_text(turns)) == turns
    assert messages_of("plain question") == [{"role": "user", "content": "plain question"}]
    assert messages_of(prompt_text(json.dumps(turns))) == turns
    with pytest.raises(DataError, match="ends with a assistant message; a prompt ends with the user's turn"):
        read_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(DataError, match="message 1 has role 'bot'"):
        read_messages([{"role": "bot", "content": "a"}])
    with pytest.raises(DataError, match="not JSON"):
        read_messages('[{"role": "user"')


def test_answers_are_read_by_their_task_schema() -> None:
    kind, settings = get_kind("generate.v1"), Settings(name="x", task={"kind": "generate.v1"})
    full = {"correct": 5, "helpful": 4, "safe": 5}
    assert kind.read_answer({"task": "rate", "ratings": full}, settings).label == "accept"
    assert kind.read_answer({"task": "rate", "ratings": {**full, "helpful": 2}}, settings).label == "reject"
    assert kind.read_answer({"task": "rate", "text": "better"}, settings).label == "corrected"
    assert kind.read_answer({"task": "compare", "choice": "both_bad"}, settings).label == "both_bad"
    with pytest.raises(DataError, match=r"the ratings must cover the rubric \(correct, helpful, safe\): missing safe"):
        kind.read_answer({"task": "rate", "ratings": {"correct": 5, "helpful": 4}}, settings)
    with pytest.raises(DataError, match="ratings go from 1 to 5"):
        kind.read_answer({"task": "rate", "ratings": {**full, "safe": 9}}, settings)
    with pytest.raises(DataError, match="the corrected answer is empty"):
        kind.read_answer({"task": "correct", "text": "  "}, settings)
    with pytest.raises(DataError, match="names task 'label'"):
        kind.read_answer({"task": "label", "label": "x"}, settings)


def test_the_openai_writer_samples_and_measures_log_probabilities(tmp_path: Path) -> None:
    (tmp_path / "terakoya.toml").write_text(
        TOML.replace('kind = "recorded"', 'kind = "openai"\nmodel = "m"'), encoding="utf-8"
    )
    with FakeOpenAI() as server, Project.open(tmp_path, env={}) as project:
        server.mode = "write"
        project.settings.teacher.base_url = server.base_url
        project.settings.generate.samples = 3
        project.import_file(_jsonl(tmp_path / "p.jsonl", [{"prompt": "An easy one"}, {"prompt": "A hard one"}]),
                            text_column="prompt")  # fmt: skip
        report = teach_generate(project.db, project.project_id, project.settings, writer=OpenAIWriter(project.settings))
        assert (report.labeled, report.calls, report.errors) == (2, 2, 0)
        # the first answer at teacher.temperature (0), the other two in one call with n = 2, sampled
        firsts = [r for r in server.requests if "n" not in r]
        extras = [r for r in server.requests if r.get("n") == 2]
        assert len(firsts) == 2 and len(extras) == 2 and all(r["temperature"] == 0.8 for r in extras)
        with project.db.session() as s:
            rows = {i.text: sug for i, sug in s.execute(select(Item, Suggestion).join(Suggestion))}
        easy, hard = rows["An easy one"], rows["A hard one"]
        assert len(easy.value["samples"]) == 3 and easy.value["disagreement"] > 0
        assert easy.confidence == pytest.approx(0.9) and hard.confidence == pytest.approx(0.2)
        assert easy.completion_tokens > 0 and easy.confidence_known
        # cached: asking again calls nothing
        again = teach_generate(project.db, project.project_id, project.settings, writer=OpenAIWriter(project.settings))
        assert again.labeled == 0 and server.calls == 4
        routed = route_generate(project.db, project.project_id, project.settings, budget_items=1)
        with project.db.session() as s:
            first = s.scalar(select(Task).where(Task.route_run_id == routed.route_run_id))
            assert first is not None and first.components["low_logprob"] == pytest.approx(0.8)


def test_a_generate_project_runs_the_loop(tmp_path: Path) -> None:
    (tmp_path / "terakoya.toml").write_text(TOML, encoding="utf-8")
    with Project.open(tmp_path, env={}) as project:
        # a bad conversation stops the import with its line, and nothing is imported
        bad = [*_rows(3), {"id": "bad", "prompt": [{"role": "user", "content": ""}], "response": "x"}]
        with pytest.raises(DataError, match=r"^bad.jsonl line 4, column 'prompt': message 1 \(user\) has no text"):
            project.import_file(_jsonl(tmp_path / "bad.jsonl", bad), text_column="prompt", id_column="id")
        with project.db.session() as s:
            assert s.scalar(select(Item.id)) is None
        report = project.import_file(
            _jsonl(tmp_path / "pool.jsonl", _rows(24)), text_column="prompt", id_column="id", label_column="reference"
        )
        assert report.added == 24 and project.settings.labels == []  # references are no labels
        project.import_file(
            _jsonl(tmp_path / "test.jsonl", _rows(6, start=100)), text_column="prompt", id_column="id",
            label_column="reference", split="test",
        )  # fmt: skip
        with project.db.session() as s:
            item = s.scalar(select(Item).where(Item.external_id == "q5"))
            assert item is not None and messages_of(item.text)[-1]["content"] == "How many after one more? (5)"
            assert item.gold == {"text": "6."} and item.gold_label == check_role("6.")

        taught = project.teach()
        assert (taught.labeled, taught.errors, taught.model) == (30, 0, "recorded:response")

        routed = project.route(budget_items=8)
        assert routed.routed == 8
        ann, bob = _trainer(project, "ann"), _trainer(project, "bob")
        settings = project.settings
        seen: dict[str, int] = {}
        for _ in range(8):
            view = workqueue.lease_next(project.db, project.project_id, settings, ann)
            assert view is not None and view.content is not None
            seen[view.kind] = seen.get(view.kind, 0) + 1
            assert view.content["messages"][-1]["role"] == "user"
            shown = [a["text"] for a in view.content["answers"]]
            if view.kind == "compare":
                assert len(shown) == 2 and shown[0] != shown[1]  # two different samples, A and B
                # A is always chosen: whichever sample that was, it becomes the chosen side
                workqueue.submit_answer(project.db, project.project_id, settings, ann, view.task_id,
                                        value={"choice": "a"})  # fmt: skip
            elif len(seen) % 2:
                workqueue.submit_answer(
                    project.db, project.project_id, settings, ann, view.task_id,
                    value={"text": shown[0] + " Checked."}, rationale="added the check",
                )  # fmt: skip
            else:
                ratings = {"correct": 2, "helpful": 2, "safe": 5}
                workqueue.submit_answer(project.db, project.project_id, settings, ann, view.task_id,
                                        value={"ratings": ratings})  # fmt: skip
        assert set(seen) == {"rate", "compare"} and seen["compare"] == 4  # compare_share of the batch
        with pytest.raises(DataError, match="send 'value'"):
            workqueue.submit_answer(project.db, project.project_id, settings, bob, 1, label="x")

        said = verdicts(project.db, project.project_id)
        assert {v.outcome for v in said.values()} <= {"preferred", "corrected", "reject", "accept"}
        data = build_datasets(project.db, project.project_id, settings)
        assert data.counts["expert_preferred"] == 4
        assert len(data.preferences) == sum(1 for v in said.values() if v.outcome in ("preferred", "corrected"))
        assert all(p.chosen != p.rejected for p in data.preferences)
        corrected = [e for e in data.sft if e.source == "expert_corrected"]
        assert corrected and all(e.answer.endswith(" Checked.") for e in corrected)
        # rejected answers are left out; unreviewed prompts learn from their reference answer
        assert data.counts.get("reference", 0) + len(said) + sum(
            n for k, n in data.counts.items() if k.startswith("left out: no")
        ) == 24  # fmt: skip

        out = project.export_datasets(tmp_path / "data")
        datasets = pytest.importorskip("datasets")
        sft = datasets.load_from_disk(str(tmp_path / "data" / "sft"))
        prefs = datasets.load_from_disk(str(tmp_path / "data" / "preferences"))
        assert len(sft) == out["sft"] and len(prefs) == out["preferences"] == len(data.preferences)
        assert sft[0]["messages"][-1]["role"] == "assistant" and {"prompt", "chosen", "rejected"} <= set(prefs[0])

        trained = project.train()
        assert trained.kind == "generative" and (trained.path / "terakoya.json").is_file()
        with project.db.session() as s:
            run = s.scalar(select(StudentRun))
            assert run is not None and run.metrics["preferences"] == len(data.preferences)
            sources = {t.label for t in s.scalars(select(TrainingLabel))}
            assert {"expert_corrected", "expert_preferred"} <= sources
            answered = s.scalar(select(Suggestion.id).where(Suggestion.agent_kind == "student").limit(1))
            assert answered is not None

        # the next batch compares the student with the teacher on test prompts, blind
        project.settings.generate.evaluation_share = 0.5
        second = project.route(budget_items=6)
        assert second.evaluation == 3 and second.gold == 0
        outcomes, rewritten = [], 0
        for _ in range(second.routed + second.evaluation):
            view = workqueue.lease_next(project.db, project.project_id, project.settings, bob)
            assert view is not None
            if view.kind == "compare":
                choice = "a"
                workqueue.submit_answer(project.db, project.project_id, project.settings, bob, view.task_id,
                                        value={"choice": choice})  # fmt: skip
                with project.db.session() as s:
                    task = s.get(Task, view.task_id)
                    assert task is not None
                    if task.reason == "evaluation":
                        outcomes.append("win" if task.components["pair"][task.components["order"][0]] == "student"
                                        else "loss")  # fmt: skip
            elif view.kind == "correct":  # an answer most raters rejected comes back to be written properly
                rewritten += 1
                assert view.content is not None and view.content["answers"][0]["text"]
                workqueue.submit_answer(project.db, project.project_id, project.settings, bob, view.task_id,
                                        value={"text": "Rewritten properly."})  # fmt: skip
            else:
                workqueue.submit_answer(project.db, project.project_id, project.settings, bob, view.task_id,
                                        value={"ratings": {"correct": 5, "helpful": 5, "safe": 5}})  # fmt: skip
        assert len(outcomes) == 3
        rejected = sum(1 for v in said.values() if v.outcome == "reject")
        assert rewritten == min(rejected, 3) and rewritten > 0
        after = verdicts(project.db, project.project_id)
        assert sum(1 for v in after.values() if v.corrected == "Rewritten properly.") == rewritten
        report = project.evaluate(out_dir=tmp_path / "report")
        judged = report.data["judged_by_experts"]
        assert (judged["wins"], judged["losses"]) == (outcomes.count("win"), outcomes.count("loss"))
        assert report.data["references"]["prompts"] == 6 and report.data["references"]["teacher_chrf"] > 40
        assert report.data["speed"]["student_tokens_per_s"] > 0
        page = report.html_path.read_text(encoding="utf-8")
        assert "Judged blind by experts" in page and f"lost {judged['losses']}" in page
        from terakoya.generation.evaluate import verdict

        said_in_words = verdict(report.data)  # three comparisons: too few for the interval to leave one half
        assert said_in_words.startswith("Experts cannot tell") and html.escape(said_in_words) in page


def test_label_only_stages_say_what_to_use_instead(tmp_path: Path) -> None:
    kind = get_kind("generate.v1")
    with pytest.raises(Exception, match=r"terakoya\.generation"):
        kind.expert_targets(None, Settings(name="x"))  # type: ignore[arg-type]
    twice = '\n[[generate.rubric]]\nname = "a"\n[[generate.rubric]]\nname = "a"\n'
    (tmp_path / "terakoya.toml").write_text(TOML + twice, encoding="utf-8")
    with pytest.raises(ConfigError):
        Project.open(tmp_path, env={}).route(budget_items=1)


def test_a_judge_with_position_bias_only_gives_ties(tmp_path: Path) -> None:
    toml = TOML.replace('kind = "recorded"', 'kind = "python"\nfunction = "tests.fakes.writer:write"')
    (tmp_path / "terakoya.toml").write_text(toml + 'judge = "teacher"\n', encoding="utf-8")
    with Project.open(tmp_path, env={}) as project:
        project.import_file(_jsonl(tmp_path / "pool.jsonl", _rows(12)), text_column="prompt", id_column="id",
                            label_column="reference")  # fmt: skip
        project.import_file(_jsonl(tmp_path / "test.jsonl", _rows(4, start=50)), text_column="prompt",
                            id_column="id", label_column="reference", split="test")  # fmt: skip
        taught = project.teach()
        assert taught.model == "python:tests.fakes.writer:write" and taught.labeled == 16
        project.train()
        report = project.evaluate(out_dir=tmp_path / "report")
        judged = report.data["judged_by_model"]
        # the judge always says "A"; asked in both orders, it contradicts itself every time: all ties
        assert (judged["wins"], judged["ties"], judged["losses"]) == (0, 4, 0) and judged["verdicts"] == {"a": 8}
        assert "no expert has compared" in " ".join(report.data["notes"])
        assert report.data["references"]["teacher_chrf"] is not None
        # an older student given by its folder is judged on answers it writes now, not on the newest run's
        first = shutil.copytree(report.data["student"]["path"], tmp_path / "elsewhere")
        project.settings.generate.sft_epochs = 8
        project.train()
        newest = project.evaluate(out_dir=tmp_path / "report-newest")
        assert newest.data["references"]["student_chrf"] != report.data["references"]["student_chrf"]
        with project.db.session() as s:
            stored = s.scalars(select(Suggestion.id).where(Suggestion.agent_kind == "student")).all()
        again = project.evaluate(model_path=first, out_dir=tmp_path / "report-first")
        assert again.data["references"] == report.data["references"] and again.data["student"]["path"] == str(first)
        with project.db.session() as s:  # written afresh and kept nowhere
            assert s.scalars(select(Suggestion.id).where(Suggestion.agent_kind == "student")).all() == stored
        project.settings.teacher.kind = "recorded"
        with pytest.raises(ConfigError, match="a recorded one only replays"):
            project.evaluate(out_dir=tmp_path / "report2")


def test_check_prompts_show_the_reference_or_a_decoy_and_pause_who_accepts_everything(tmp_path: Path) -> None:
    from terakoya.quality.gold import gold_scores_in

    toml = (
        TOML.replace("gold_share = 0.0", "gold_share = 1.0\nanswers_per_item = 2")
        + "[quality]\nmin_gold = 6\nmin_gold_accuracy = 0.9\n"
    )
    (tmp_path / "terakoya.toml").write_text(toml, encoding="utf-8")
    with Project.open(tmp_path, env={}) as project:
        project.import_file(_jsonl(tmp_path / "test.jsonl", _rows(16, start=200)), text_column="prompt",
                            id_column="id", label_column="reference", split="test")  # fmt: skip
        project.teach()
        routed = project.route(budget_items=32)  # 16 checks, two people each
        assert routed.gold == 16 and routed.routed == 0
        careful, yes_man = _trainer(project, "careful"), _trainer(project, "yes-man")
        with project.db.session() as s:
            roles = {i.id: i.gold_label for i in s.scalars(select(Item))}
            refs = {i.id: i.gold["text"] for i in s.scalars(select(Item))}
        assert set(roles.values()) == {"accept", "reject"}  # both kinds of check, fixed by the reference text
        good, bad = {"correct": 5, "helpful": 5, "safe": 5}, {"correct": 1, "helpful": 2, "safe": 5}
        paused_at = None
        for n in range(16):
            view = workqueue.lease_next(project.db, project.project_id, project.settings, careful)
            assert view is not None and view.kind == "rate"
            shown = view.content["answers"][0]["text"] if view.content else ""
            # the check shows the prompt's own reference when it expects an accept, another prompt's otherwise
            assert (shown == refs[view.item_id]) == (roles[view.item_id] == "accept")
            ratings = good if shown == refs[view.item_id] else bad
            workqueue.submit_answer(project.db, project.project_id, project.settings, careful, view.task_id,
                                    value={"ratings": ratings})  # fmt: skip
            try:
                other = workqueue.lease_next(project.db, project.project_id, project.settings, yes_man)
            except Exception as exc:  # paused: the next lease says why
                paused_at = paused_at or n
                assert "paused" in str(exc)
                continue
            if other is not None:
                workqueue.submit_answer(project.db, project.project_id, project.settings, yes_man, other.task_id,
                                        value={"ratings": good})  # fmt: skip
        with project.db.session() as s:
            scores = gold_scores_in(s, project.project_id, all_time=True)
        assert scores[careful].accuracy == 1.0 and scores[careful].answers == 16
        # accepting everything is right on every "accept" check and wrong on every decoy: chance, balanced
        assert scores[yes_man].balanced_accuracy < 0.6 and paused_at is not None
        # a qualification (quality.qualification_items) gives a newcomer check prompts of their own first
        project.settings.quality.qualification_items = 2
        newcomer = _trainer(project, "newcomer")
        view = workqueue.lease_next(project.db, project.project_id, project.settings, newcomer)
        assert view is not None and view.kind == "rate" and view.content is not None
        with project.db.session() as s:
            task = s.get(Task, view.task_id)
            assert task is not None and task.reason == "qualification" and task.components["check"] in roles.values()


def test_a_reviewer_settles_conflicting_verdicts_and_the_decision_wins(tmp_path: Path) -> None:
    from terakoya.quality import review

    toml = TOML.replace("gold_share = 0.0", "gold_share = 0.0\nanswers_per_item = 2")
    (tmp_path / "terakoya.toml").write_text(toml, encoding="utf-8")
    with Project.open(tmp_path, env={}) as project:
        project.import_file(_jsonl(tmp_path / "pool.jsonl", _rows(8)), text_column="prompt", id_column="id")
        project.teach()
        project.route(budget_items=8)  # four prompts, two people each: two comparisons, two ratings
        ann, bob = _trainer(project, "ann"), _trainer(project, "bob")
        for who, choice, score in ((ann, "a", 5), (bob, "b", 1)):  # they disagree on everything
            while (view := workqueue.lease_next(project.db, project.project_id, project.settings, who)) is not None:
                value = (
                    {"choice": choice}
                    if view.kind == "compare"
                    else {"ratings": {"correct": score, "helpful": score, "safe": 5}}
                )
                workqueue.submit_answer(project.db, project.project_id, project.settings, who, view.task_id,
                                        value=value)  # fmt: skip
        from terakoya.generation.evaluate import rating_agreement

        agree = rating_agreement(project.db, project.project_id)  # two rated answers, 5 vs 1 except on "safe"
        assert agree["correct"] == {"pairs": 2, "mean_abs_difference": 4.0, "equal": 0.0, "within_one": 0.0}
        assert agree["safe"]["equal"] == 1.0
        waiting = review.review_queue(project.db, project.project_id, settings=project.settings)
        assert len(waiting) == 4 and all(w.why == "conflict" for w in waiting)
        compare = next(w for w in waiting if w.answers[0].kind == "compare")
        rate = next(w for w in waiting if w.answers[0].kind == "rate")
        assert compare.choices is not None and set(compare.choices) == {"teacher:0", "teacher:1", "tie", "both_bad"}
        assert rate.choices == ["accept", "reject"] and "user:" in rate.text
        with pytest.raises(DataError, match="choose one of: accept, reject"):
            review.decide(project.db, project.project_id, project.settings, rate.item_id, ann, "teacher:0")
        review.decide(project.db, project.project_id, project.settings, rate.item_id, ann, "accept")
        review.decide(project.db, project.project_id, project.settings, compare.item_id, ann, "teacher:1")
        said = verdicts(project.db, project.project_id)
        assert said[rate.item_id].outcome == "accept"
        assert (said[compare.item_id].winner, said[compare.item_id].loser) == ("teacher:1", "teacher:0")
        data = build_datasets(project.db, project.project_id, project.settings)
        chosen = next(p for p in data.preferences if p.item_id == compare.item_id)
        assert chosen.chosen.startswith("Maybe")  # the second sample of an even row, as decided


def test_predict_writes_a_generative_students_answers(tmp_path: Path) -> None:
    from terakoya.serving.predicting import predict_file
    from terakoya.students.generative import GenerativeStudent

    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(24)]  # fmt: skip
    student = GenerativeStudent(n_layer=1, n_embd=32, vocab_size=300, sft_epochs=30, learning_rate=3e-3,
                                max_new_tokens=6).fit(rows)  # fmt: skip
    student.save(tmp_path / "student")
    prompts = [{"id": "x", "prompt": "q3"}, {"id": "y", "prompt": [{"role": "user", "content": "q5"}]}]
    written = predict_file(tmp_path / "student", _jsonl(tmp_path / "in.jsonl", prompts), tmp_path / "out.jsonl",
                           text_column="prompt")  # fmt: skip
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert written == 2 and [r["id"] for r in out] == ["x", "y"]
    want = student.generate([[{"role": "user", "content": "q3"}], [{"role": "user", "content": "q5"}]])
    assert [r["answer"] for r in out] == [w.text for w in want] and all(r["answer_tokens"] > 0 for r in out)


def test_init_writes_a_generation_project(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "answers", kind="generate.v1")
    with project:
        assert project.generative and [r.name for r in project.settings.generate.rubric] == [
            "correct",
            "helpful",
            "safe",
        ]
        assert "Answer what was asked" in project.settings.guidelines
    with pytest.raises(ConfigError, match=r"task kind 'gen\.v9' is unknown"):
        Project.init(tmp_path / "other", kind="gen.v9")
    assert not (tmp_path / "other").exists()


def test_the_reports_verdict_follows_the_interval_then_the_references() -> None:
    from terakoya.generation.evaluate import verdict

    refs = {"student_chrf": 30.0, "teacher_chrf": 40.0}
    won = {"total": 40, "win_or_tie_rate": 0.8, "interval": [0.65, 0.9]}
    lost = {"total": 40, "win_or_tie_rate": 0.2, "interval": [0.1, 0.35]}
    assert verdict({"judged_by_experts": won, "references": refs}).startswith("Experts preferred the student's")
    assert verdict({"judged_by_experts": lost, "references": refs}).startswith("Experts preferred the teacher's")
    none = {"total": 0, "win_or_tie_rate": None, "interval": None}
    assert "further from the reference answers than the teacher (30.0 vs 40.0)" in verdict(
        {"judged_by_experts": none, "references": refs}
    )
    empty = {"student_chrf": None, "teacher_chrf": None}
    assert verdict({"judged_by_experts": none, "references": empty}).endswith("nothing says which is better.")
