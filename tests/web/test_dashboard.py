"""Trainer stats, the owner's dashboard, glossary terms and background jobs, on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from terakoya import dashboard, jobs, workqueue
from terakoya.errors import DataError, TeacherError
from terakoya.people import accounts, glossary, payouts
from terakoya.project import Project
from terakoya.storage.models import Job, StudentRun, utcnow

from .conftest import WebProject, build_project, exact, make_trainer


@pytest.fixture
def project(db_url: str, tmp_path: Path) -> Iterator[WebProject]:
    """Here the project runs on SQLite and on PostgreSQL: the dashboard's queries must work on both."""
    p = build_project(db_url, tmp_path, pool=8, gold=2, verify=2)
    yield p
    p.close()


def work(p: WebProject, person: int, labels: list[str], *, start: datetime, gap_s: float = 10.0) -> datetime:
    """Answer len(labels) tasks, one every gap_s seconds; returns the time of the last answer."""
    now = start
    for label in labels:
        task = workqueue.lease_next(p.db, p.project_id, p.settings, person, now=now)
        assert task is not None
        now = now + timedelta(seconds=gap_s)
        workqueue.submit_answer(
            p.db, p.project_id, p.settings, person, task.task_id, label=label, active_seconds=gap_s, now=now
        )
    return now


def test_trainer_stats_count_items_time_and_earnings_per_period(project: WebProject) -> None:
    tom = make_trainer(project, "tom")
    monday = datetime(2026, 11, 16, 9, 0)  # a Monday
    work(project, tom.id, ["positive"] * 2, start=monday - timedelta(days=3))  # last week
    work(project, tom.id, ["negative"] * 3, start=monday + timedelta(days=1))  # this week
    last = work(project, tom.id, ["neutral"] * 2, start=monday + timedelta(days=4))  # today (Friday)
    workqueue.undo_last(project.db, project.project_id, project.settings, tom.id, now=last + timedelta(seconds=5))
    stats = dashboard.trainer_stats(
        project.db, project.project_id, project.settings, tom.id, now=last + timedelta(seconds=9)
    )
    assert (stats.today.items, stats.week.items, stats.total.items) == (1, 4, 6)
    # undone answers keep their time: the work was done
    assert (stats.today.active_seconds, stats.week.active_seconds, stats.total.active_seconds) == (20.0, 50.0, 70.0)
    assert (stats.today.earnings, stats.total.earnings) == (0.1, 0.6)
    assert stats.remaining == 12 - 6
    accounts.set_pay(project.db, project.project_id, project.settings, mode="per_hour", per_item=0, per_hour=36)
    hourly = dashboard.trainer_stats(project.db, project.project_id, project.settings, tom.id, now=last)
    assert (hourly.total.earnings, hourly.pay.mode) == (0.7, "per_hour")
    # in Tokyo (UTC+9) the Friday 09:00 UTC answers still fall on Friday, but the day starts 9 hours earlier
    tokyo = dashboard.trainer_stats(
        project.db, project.project_id, project.settings, tom.id, now=last, utc_offset_minutes=540
    )
    assert tokyo.today.items == 1


def test_dashboard_funnel_confusion_gold_and_flags(project: WebProject) -> None:
    tom, una = make_trainer(project, "tom"), make_trainer(project, "una")
    start = datetime(2026, 11, 16, 9, 0)
    # 12 tasks: 8 pool (label), 2 gold (test split, gold labels neutral/positive), 2 verify; teacher says positive
    work(project, tom.id, ["positive", "negative", "negative", "positive"], start=start)
    work(project, una.id, ["neutral"] * 4, start=start)
    gold_labels = []
    for person in (tom.id, una.id):
        task = workqueue.lease_next(project.db, project.project_id, project.settings, person)
        assert task is not None
        gold_labels.append(task.item_id)
        workqueue.submit_answer(project.db, project.project_id, project.settings, person, task.task_id, label="neutral")
    task = workqueue.lease_next(project.db, project.project_id, project.settings, tom.id)
    assert task is not None
    workqueue.flag_task(
        project.db, project.project_id, project.settings, tom.id, task.task_id, reason="broken", comment="cut off"
    )
    with project.db.session() as s:
        s.add(
            StudentRun(project_id=project.project_id, run_id="r1", kind="linear", path="x", metrics={"train_items": 9})
        )
    d = dashboard.dashboard_data(project.db, project.project_id, project.settings)
    assert d.funnel == dashboard.Funnel(
        imported=12, test_items=2, teacher_labeled=12, auto_accepted=0, routed=12, answered=10, used_in_student=9
    )
    assert d.confusion.labels == ["positive", "negative", "neutral"]
    assert d.confusion.matrix == [[2, 2, 6], [0, 0, 0], [0, 0, 0]]
    assert d.confusion.agreement == pytest.approx(0.2)
    assert {x.expert_label for x in d.disagreements} == {"negative", "neutral"} and len(d.disagreements) == 8
    assert [(f.reason, f.comment, f.person_name) for f in d.flags] == [("broken", "cut off", "tom")]
    rows = {t.name: t for t in d.trainers}
    # a flag is not an answer; it is paid as an item because the pay rule says so (payouts.FLAGS_PAID_AS_ITEMS)
    assert [(rows[n].answers, rows[n].flags) for n in ("tom", "una")] == [(5, 1), (5, 0)]
    assert sum(r.gold_answered for r in d.trainers) == 2
    assert d.queue == workqueue.QueueCounts(queued=1, leased=0, answered=10, flagged=1)
    # the counters agree: tasks answered, expert answers (the Answers column) and items answered by experts
    assert (d.expert_answers, d.expert_flags) == (d.queue.answered, d.queue.flagged) == (10, 1)
    assert d.funnel.answered == d.expert_answers
    assert payouts.FLAGS_PAID_AS_ITEMS and d.total_cost == pytest.approx(1.1)
    assert d.rule.startswith("0.10 USD per paid item: each expert answer that stands and each flag")


def test_gold_accuracy_is_measured_on_test_items_with_a_gold_label(project: WebProject) -> None:
    tom = make_trainer(project, "tom")
    from sqlalchemy import select

    from terakoya.storage.models import Item, Task

    with project.db.session() as s:
        gold = s.execute(
            select(Task.id, Item.gold_label).join(Item, Item.id == Task.item_id).where(Item.split == "test")
        ).all()
        s.execute(Task.__table__.update().where(Task.id.in_([g.id for g in gold])).values(priority=-1))
    answers = {
        gold[0].id: gold[0].gold_label,
        gold[1].id: "positive" if gold[1].gold_label != "positive" else "negative",
    }
    for _ in range(2):
        task = workqueue.lease_next(project.db, project.project_id, project.settings, tom.id)
        assert task is not None
        workqueue.submit_answer(
            project.db, project.project_id, project.settings, tom.id, task.task_id, label=answers[task.task_id]
        )
    (row,) = [
        t
        for t in dashboard.dashboard_data(project.db, project.project_id, project.settings).trainers
        if t.name == "tom"
    ]
    assert (row.gold_answered, row.gold_correct, row.gold_accuracy) == (2, 1, 0.5)


def test_glossary_terms_are_proposed_approved_and_reach_the_prompt(project: WebProject) -> None:
    tom, una = make_trainer(project, "tom"), make_trainer(project, "una")
    term = glossary.propose_term(
        project.db,
        project.project_id,
        tom.id,
        term=" guidance  cut ",
        definition="a lowered forecast",
        example="cut FY guidance",
    )
    assert (term.term, term.status, term.proposed_by_name) == ("guidance cut", "proposed", "tom")
    with pytest.raises(DataError) as dup:
        glossary.propose_term(project.db, project.project_id, una.id, term="Guidance Cut", definition="x")
    assert dup.value.message == "'Guidance Cut' is already proposed in the glossary; propose another term"
    with pytest.raises(DataError) as in_file:
        glossary.propose_term(
            project.db, project.project_id, una.id, term="ebitda", definition="x", settings=project.settings
        )
    assert (
        in_file.value.message == "'ebitda' is already in the project's glossary (terakoya.toml); propose another term"
    )
    with pytest.raises(DataError, match=exact("the definition of 'x' is empty; explain what it means in this project")):
        glossary.propose_term(project.db, project.project_id, una.id, term="x", definition=" ")
    before = glossary.guideline_version(project.db, project.project_id, project.settings)
    assert "guidance cut" not in glossary.glossary_for_prompt(project.db, project.project_id, project.settings)
    glossary.decide_term(project.db, project.project_id, term.id or 0, decided_by=una.id, approve=True)
    prompt = glossary.glossary_for_prompt(project.db, project.project_id, project.settings)
    assert prompt["guidance cut"] == "a lowered forecast (e.g. cut FY guidance)" and "EBITDA" in prompt
    panel = glossary.panel_terms(project.db, project.project_id, project.settings)
    assert [(t.term, t.source) for t in panel] == [("EBITDA", "project file"), ("guidance cut", "expert")]
    assert glossary.guideline_version(project.db, project.project_id, project.settings) != before
    glossary.decide_term(project.db, project.project_id, term.id or 0, decided_by=una.id, approve=False)
    assert glossary.approved_terms(project.db, project.project_id) == []
    with pytest.raises(accounts.NotFound, match=exact("glossary term 999 does not exist in this project")):
        glossary.decide_term(project.db, project.project_id, 999, decided_by=una.id, approve=True)
    assert "<script>" not in glossary.guidelines_html(
        project.settings.model_copy(update={"guidelines": "<script>x</script>"})
    )
    # headings sit under the page's own h1 and h2
    shifted = glossary.guidelines_html(project.settings.model_copy(update={"guidelines": "# Tone\n\n## Sub\n"}))
    assert shifted == "<h3>Tone</h3>\n<h4>Sub</h4>\n"


def test_jobs_record_progress_results_and_failures(project: WebProject) -> None:
    runner = jobs.JobRunner(project.db, project.project_id)

    def fine(progress: jobs.ProgressFn) -> dict[str, object]:
        for i in range(1, 4):
            progress(i, 3, f"step {i}")
        return {"report": project.dir, "score": float("nan")}

    def broken(progress: jobs.ProgressFn) -> None:
        raise TeacherError("the teacher at http://127.0.0.1:9/v1 did not answer; check teacher.base_url")

    def crash(progress: jobs.ProgressFn) -> None:
        raise ZeroDivisionError("division by zero")

    ok = runner.wait(runner.start("teach", fine).id, timeout=30)
    assert (ok.status, ok.done, ok.total, ok.fraction) == ("done", 3, 3, 1.0)
    assert ok.result == {"report": str(project.dir), "score": None} and ok.finished_at is not None
    bad = runner.wait(runner.start("teach", broken).id, timeout=30)
    assert (bad.status, bad.message) == (
        "failed",
        "the teacher at http://127.0.0.1:9/v1 did not answer; check teacher.base_url",
    )
    assert bad.result["error"]["code"] == "teacher"
    boom = runner.wait(runner.start("train", crash).id, timeout=30)
    assert (boom.status, boom.message) == ("failed", "ZeroDivisionError: division by zero")
    assert [j.kind for j in jobs.list_jobs(project.db, project.project_id)] == ["train", "teach", "teach"]
    runner.shutdown(wait=True, timeout=5)


def test_jobs_whose_process_stopped_are_marked_failed_and_queued_ones_wait(project: WebProject) -> None:
    queued = jobs.create_job(project.db, project.project_id, "train")
    dead, alive = (jobs.create_job(project.db, project.project_id, "teach") for _ in range(2))
    old = utcnow() - timedelta(seconds=jobs.STALE_AFTER_S + 5)
    with project.db.session() as s:
        s.execute(update(Job).where(Job.id == dead).values(status="running", heartbeat_at=old))
        s.execute(update(Job).where(Job.id == alive).values(status="running", heartbeat_at=utcnow()))
    assert jobs.fail_interrupted(project.db, project.project_id) == 1
    views = {i: jobs.get_job(project.db, project.project_id, i) for i in (queued, dead, alive)}
    assert (views[dead].status, views[dead].message) == (
        "failed",
        "the process running this job stopped before it finished; start it again",
    )
    assert (views[queued].status, views[alive].status) == ("queued", "running")


def test_each_job_kind_calls_its_stage_through_the_typed_path(project: WebProject) -> None:
    expected = {
        "teach": ([(1, 3), (2, 3), (3, 3)], {"labeled": 3, "path": project.dir}, ("teach", None)),
        "route": ([], {"routed": 7}, ("route", 7)),
        "train": ([(1, 1)], {"kind": "fake", "macro_f1": 0.5}, ("train", None)),
        "evaluate": ([(2, 2)], {"report": project.dir / "reports" / "latest"}, ("evaluate", None)),
    }
    assert tuple(expected) == jobs.JOB_KINDS
    seen: list[tuple[int, int]] = []

    def record(done: int, total: int, message: str = "") -> None:
        seen.append((done, total))

    for kind, (progress, result, call) in expected.items():
        seen.clear()
        assert jobs.action_for(project, kind, budget_items=7)(record) == result, kind
        assert (seen, project.calls[-1]) == (progress, call), kind
    assert len(project.calls) == 4
    with pytest.raises(
        DataError, match=exact("job kind 'sing' is unknown; choose one of: teach, route, train, evaluate")
    ):
        jobs.action_for(project, "sing")
    for budget in (None, 0):
        with pytest.raises(
            DataError, match=exact("routing needs a budget: how many items to send to experts (1 or more)")
        ):
            jobs.action_for(project, "route", budget_items=budget)
    assert len(project.calls) == 4  # refused before anything ran


def test_the_runner_runs_every_kind_and_reloads_the_settings_after_each(project: WebProject) -> None:
    runner = jobs.JobRunner(project.db, project.project_id, after_each=project.reload_settings)
    views = [
        runner.wait(runner.start(kind, jobs.action_for(project, kind, budget_items=3)).id, timeout=30)
        for kind in jobs.JOB_KINDS
    ]
    runner.shutdown(wait=True, timeout=5)
    assert [(v.kind, v.status, v.done, v.total, v.message) for v in views] == [
        ("teach", "done", 3, 3, "finished"),
        ("route", "done", 1, 1, "finished"),  # routing reports no progress: a finished job counts as 1 of 1
        ("train", "done", 1, 1, "finished"),
        ("evaluate", "done", 2, 2, "finished"),
    ]
    assert [v.result for v in views] == [
        {"labeled": 3, "path": str(project.dir)},
        {"routed": 3},
        {"kind": "fake", "macro_f1": 0.5},
        {"report": str(project.dir / "reports" / "latest")},
    ]
    assert [name for name, _ in project.calls] == [
        "teach", "reload_settings", "route", "reload_settings", "train", "reload_settings", "evaluate",
        "reload_settings",
    ]  # fmt: skip


def test_each_job_kind_reaches_the_real_project_stage(tmp_path: Path) -> None:
    """The typed calls match :class:`Project`'s own methods: on an empty project every stage refuses with its
    own message (a wrong keyword would fail as an internal TypeError instead)."""
    with Project.init(tmp_path / "empty") as real:
        views = {
            kind: jobs.run_job(
                real.db,
                real.project_id,
                jobs.create_job(real.db, real.project_id, kind),
                jobs.action_for(real, kind, budget_items=5),
            )
            for kind in jobs.JOB_KINDS
        }
    errors = {kind: (v.status, v.result["error"]["code"], v.message) for kind, v in views.items()}
    no_labels = f"{real.settings.project_file} declares no labels; add [[labels]] entries, or import a file with "
    no_labels += "--label-column so they are taken from the data"
    assert errors == {
        "teach": ("failed", "config", no_labels),
        "route": ("failed", "state", "no teacher labels yet; run `terakoya teach` first"),
        "train": ("failed", "config", no_labels),
        "evaluate": (
            "failed",
            "state",
            "no test items with gold labels: import a test split with --label-column, e.g. "
            "`terakoya import data.csv --label-column label --split test --fraction 0.2`",
        ),
    }


def test_being_worked_counts_only_leases_that_have_not_run_out(project: WebProject) -> None:
    tom, una = make_trainer(project, "tom"), make_trainer(project, "una")
    start = datetime(2026, 11, 16, 9, 0)
    lease = timedelta(minutes=project.settings.routing.lease_minutes)
    assert workqueue.lease_next(project.db, project.project_id, project.settings, tom.id, now=start)
    assert workqueue.lease_next(project.db, project.project_id, project.settings, una.id, now=start + lease / 2)

    def board(at: datetime) -> dashboard.Dashboard:
        return dashboard.dashboard_data(project.db, project.project_id, project.settings, now=at)

    soon = board(start + timedelta(minutes=1))
    assert (soon.working.tasks, soon.working.people) == (2, 2) and soon.queue.queued == 10
    # the page counts each task down to the moment its lease runs out
    assert soon.working.ends_in_s == [
        (lease - timedelta(minutes=1)).total_seconds(),
        (lease * 1.5).total_seconds() - 60,
    ]
    # tom's lease ran out: his assignment still says leased (until someone takes the slot), but nobody works it
    later = board(start + lease + timedelta(seconds=1))
    assert (later.working.tasks, later.working.people, later.queue.queued) == (1, 1, 11)
    assert board(start + lease * 2).working == dashboard.Working(0, 0, [])


def test_charts_show_accuracy_per_training_run_and_expert_hours_and_cost_per_day(project: WebProject) -> None:
    from sqlalchemy import func, select

    from terakoya.storage.models import Item, Suggestion

    with project.db.session() as s:
        gold = dict(s.execute(select(Item.id, Item.gold_label).where(Item.split == "test")).all())
        taught = s.scalar(select(func.max(Suggestion.created_at)))
    assert sorted(gold.values()) == ["neutral", "positive"]  # the teacher says positive for every item: 1 of 2
    neutral = next(i for i, label in gold.items() if label == "neutral")
    first, second = taught + timedelta(hours=1), taught + timedelta(hours=3)

    def student(run: str, at: datetime, labels: dict[int, str]) -> None:
        with project.db.session() as s:
            s.add(StudentRun(project_id=project.project_id, run_id=run, kind="linear", path="x", created_at=at))
            for item_id, label in labels.items():
                s.add(
                    Suggestion(
                        item_id=item_id, agent_kind="student", agent=run, prompt_version="", label=label,
                        probabilities={label: 1.0}, confidence=1.0, created_at=at,
                    )
                )  # fmt: skip

    student("r1", first, {i: "neutral" for i in gold})
    with project.db.session() as s:  # the teacher, taught again between the runs, gets the neutral item right
        s.add(
            Suggestion(
                item_id=neutral, agent_kind="teacher", agent="tiny", prompt_version="v2", label="neutral",
                probabilities={"neutral": 0.9}, confidence=0.9, created_at=first + timedelta(hours=1),
            )
        )  # fmt: skip
    student("r2", second, dict(gold))
    tom = make_trainer(project, "tom")
    day = datetime(2026, 11, 16, 9, 0)
    work(project, tom.id, ["positive"] * 2, start=day, gap_s=90)
    after = work(project, tom.id, ["negative"], start=day + timedelta(days=1), gap_s=90)
    task = workqueue.lease_next(project.db, project.project_id, project.settings, tom.id, now=after)
    assert task is not None
    workqueue.flag_task(
        project.db, project.project_id, project.settings, tom.id, task.task_id, reason="broken",
        active_seconds=60, now=after + timedelta(seconds=60),
    )  # fmt: skip

    d = dashboard.dashboard_data(project.db, project.project_id, project.settings, now=day + timedelta(days=2))
    assert [(r.run_id, r.items, r.student_accuracy, r.teacher_accuracy) for r in d.runs] == [
        ("r1", 2, 0.5, 0.5),  # the teacher as it stood when r1 was trained
        ("r2", 2, 1.0, 1.0),
    ]
    assert len(d.days) == dashboard.CHART_DAYS and d.days[-1].day == (day + timedelta(days=2)).date()
    by_day = {x.day: x for x in d.days if x.answers or x.flags}
    assert by_day == {
        day.date(): dashboard.DayWork(day.date(), 2, 0, 0.05, 0.2),  # 2 x 90 s
        (day + timedelta(days=1)).date(): dashboard.DayWork((day + timedelta(days=1)).date(), 1, 1, 0.04, 0.2),
    }
    # the days add up to the trainers table, and a flag is paid as an item because the pay rule says so
    assert sum(x.cost for x in d.days) == d.total_cost == 0.4
    stats = dashboard.trainer_stats(project.db, project.project_id, project.settings, tom.id, now=day)
    assert (stats.total.items, stats.total.flags) == (4, 1)


def test_the_dashboard_page_explains_every_counter_and_puts_the_budget_beside_route(project: WebProject) -> None:
    import html
    import json
    import re

    from fastapi.testclient import TestClient

    from terakoya.web import create_app

    from .conftest import PASSWORD, sign_in

    accounts.create_owner(project.db, project.project_id, "olga", "olga@example.org", PASSWORD)
    with TestClient(create_app(project)) as client:
        sign_in(client, "olga")
        page = client.get("/dashboard").text
    for key, text in dashboard.COUNTER_HELP.items():
        assert html.escape(text) in page, key
    for field, _, text in dashboard.FUNNEL_STEPS:
        assert html.escape(text) in page and f'id="funnel-{field}"' in page, field
    # the budget box sits in the route job's own form, right beside its button
    route = re.search(r'<form[^>]*id="job-route">(.*?)</form>', page, re.S)
    assert route is not None
    assert re.search(
        r'id="run-route">Run route</button>\s*<label class="budget"[^>]*>budget\s*<input[^>]*name="budget_items"',
        route.group(1),
    )
    assert all("budget_items" not in f for f in re.findall(r'<form[^>]*id="job-(?!route)\w+">.*?</form>', page, re.S))
    data = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S)
    assert data is not None
    charts = json.loads(data.group(1))
    assert set(charts) == {"runs", "days", "currency"} and len(charts["days"]) == dashboard.CHART_DAYS


def test_every_counter_and_funnel_step_is_explained_in_the_docs() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "web.md").read_text()
    for key, text in dashboard.COUNTER_HELP.items():
        assert f"| {text} |" in docs, f"counter {key} is not explained in docs/web.md"
    for field, label, text in dashboard.FUNNEL_STEPS:
        assert f"| {label} | {text} |" in docs, f"funnel step {field} is not explained in docs/web.md"


def test_trainer_feedback_lists_answers_that_differ_from_gold_or_from_the_other_experts(project: WebProject) -> None:
    from terakoya.storage.models import Answer, Item

    tom, ann, bo = (make_trainer(project, n) for n in ("tom", "ann", "bo"))
    with project.db.session() as s:
        items = s.scalars(select(Item).where(Item.project_id == project.project_id).order_by(Item.id)).all()
        items[0].gold_label = "positive"
        items[1].gold_label = "negative"
        rows = [
            (items[0], tom, "negative"),  # differs from gold
            (items[1], tom, "negative"),  # matches gold
            (items[2], tom, "neutral"),  # outvoted by ann and bo
            (items[2], ann, "positive"),
            (items[2], bo, "positive"),
            (items[3], tom, "neutral"),  # alone on its item: nothing to compare with
            (items[4], tom, "positive"),  # undone: not live
        ]
        for item, person, label in rows:
            s.add(Answer(item_id=item.id, person_id=person.id, kind="label", label=label, source="web"))
        s.flush()
        s.execute(update(Answer).where(Answer.item_id == items[4].id).values(superseded=True))
        ids = [i.id for i in items]
    feedback = dashboard.trainer_feedback(project.db, project.project_id, tom.id)
    assert [(f.item_id, f.your_label, f.expected_label, f.against) for f in feedback] == [
        (ids[2], "neutral", "positive", "experts"),
        (ids[0], "negative", "positive", "gold"),
    ]
    assert dashboard.trainer_feedback(project.db, project.project_id, ann.id) == []
