"""The command line: a thin shell over :class:`terakoya.project.Project`.

Arguments in, errors out: a :class:`~terakoya.errors.TerakoyaError` is printed as one message
(``--debug`` shows the traceback); nothing here holds SQL or ML.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from terakoya.errors import ConfigError, TerakoyaError
from terakoya.settings import parse_overrides

if TYPE_CHECKING:
    from terakoya.project import Project

__all__ = ["app", "main"]

app = typer.Typer(
    name="terakoya",
    help="Turn a big model plus a few hours of experts' time into a small model you own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
user_app = typer.Typer(help="Manage people who sign in to the web workbench.", no_args_is_help=True)
app.add_typer(user_app, name="user")
teacher_app = typer.Typer(help="Measure and compare teachers.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")

quality_app = typer.Typer(
    help="Agreement, each person's reliability, pauses, and where a training label came from.", no_args_is_help=True
)
app.add_typer(quality_app, name="quality")

console = Console()
err_console = Console(stderr=True)


class _State:
    project: Path | None = None
    db: str | None = None
    sets: list[str]
    debug: bool = False

    def __init__(self) -> None:
        self.sets = []


STATE = _State()


@app.callback()
def _global(
    project: Annotated[
        Path | None, typer.Option("--project", "-p", help="project folder (default: nearest with terakoya.toml)")
    ] = None,
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy database URL (env: TERAKOYA_DB)")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a setting: section.key=value (repeatable)")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
) -> None:
    STATE.project = project
    STATE.db = db
    STATE.sets = list(set_ or [])
    STATE.debug = debug or os.environ.get("TERAKOYA_DEBUG", "") not in {"", "0"}


def _overrides() -> dict[str, Any]:
    overrides = parse_overrides(STATE.sets)
    if STATE.db:
        overrides["db"] = STATE.db
    return overrides


def _open() -> Project:
    from terakoya.project import Project

    return Project.open(STATE.project, overrides=_overrides())


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _kv_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        if isinstance(value, float):
            value = f"{value:,.4f}" if abs(value) < 10 else f"{value:,.1f}"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        table.add_row(escape(key.replace("_", " ")), escape(str(value)))
    return table


def _report(title: str, report: Any) -> None:
    data = asdict(report) if is_dataclass(report) and not isinstance(report, type) else dict(report)
    if data.get("kind") == "generative":  # a language model has no label temperature or calibration
        data.pop("temperature", None)
        data.pop("calibration", None)
    trust = data.pop("teacher_trust", None)
    if isinstance(trust, dict):
        data["teacher trust"] = trust.get("sentence", "")
    calibration = data.pop("calibration", None)
    if isinstance(calibration, list):
        data["calibration"] = (
            "; ".join(
                f"{c.get('model')}: {str(c.get('calibration', '')).split(':')[0]} over {c.get('items')} items"
                + (f", {c['expert_items']} with expert answers" if c.get("expert_items") else "")
                for c in calibration
            )
            or "none (too few items, or teacher.calibrate is off)"
        )
    elif calibration is not None:
        data["calibration"] = calibration
    console.print(_kv_table(title, {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}))


# ---------------------------------------------------------------------------- commands


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="folder to create (its name is the project name)")],
    name: Annotated[str | None, typer.Option(help="project name (default: the folder's name)")] = None,
    db: Annotated[
        str | None, typer.Option("--db", help="SQLAlchemy database URL, recorded in terakoya.toml (env: TERAKOYA_DB)")
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="task kind: classify.v1 (labels) or generate.v1 (written answers)")
    ] = "classify.v1",
) -> None:
    """Create FOLDER/terakoya.toml: task, labels, guidelines, glossary, teacher, routing."""
    from terakoya.project import Project

    url = db or STATE.db or os.environ.get("TERAKOYA_DB") or None
    project = Project.init(folder, name, db=url, kind=kind)
    console.print(f"created {project.settings.project_file}", markup=False)
    if url:
        console.print(f"the database {project.db.safe_url} is recorded in it", markup=False)
        if "***" in project.db.safe_url:
            console.print(
                "its password is not written there: later commands take it from TERAKOYA_DB, PGPASSWORD or ~/.pgpass",
                markup=False,
            )
    columns = (
        "--text-column PROMPT --label-column REFERENCE"
        if kind == "generate.v1"
        else "--text-column COL --label-column COL"
    )
    console.print(f"next: cd {folder} && terakoya import FILE {columns}", markup=False)
    project.close()


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet file")],
    text_column: Annotated[str, typer.Option(help="column with the text")] = "text",
    id_column: Annotated[str | None, typer.Option(help="column with a unique id (default: line number)")] = None,
    label_column: Annotated[str | None, typer.Option(help="column with a recorded (gold) label")] = None,
    meta_column: Annotated[
        list[str] | None, typer.Option("--meta-column", help="column kept as metadata (default: all others)")
    ] = None,
    split: Annotated[str, typer.Option(help="split that --fraction of the rows go to: pool or test")] = "pool",
    fraction: Annotated[float, typer.Option(help="share of rows for --split; the rest go to the other split")] = 1.0,
    fmt: Annotated[str | None, typer.Option("--format", help="csv, tsv, jsonl or parquet (default: suffix)")] = None,
    encoding: Annotated[str, typer.Option(help="text encoding of CSV/JSONL files")] = "utf-8",
    delimiter: Annotated[str | None, typer.Option(help="field delimiter for CSV-like files")] = None,
    columns: Annotated[
        str | None, typer.Option(help="comma-separated column names for a file without a header row")
    ] = None,
    skip_empty: Annotated[bool, typer.Option(help="skip rows whose text is empty")] = False,
) -> None:
    """Import items; split them into pool and test (seeded, stratified); skip duplicates."""
    if split not in {"pool", "test"}:
        raise ConfigError(f"--split {split!r} is not a split; use --split pool or --split test")
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"--fraction {fraction} is outside 0..1; e.g. --split test --fraction 0.2")
    project = _open()
    header = [c.strip() for c in columns.split(",")] if columns else None
    with Progress(TextColumn("[bold]importing"), TextColumn("{task.completed:,} rows"), console=err_console) as bar:
        task = bar.add_task("import", total=None)
        report = project.import_file(
            path,
            text_column=text_column,
            id_column=id_column,
            label_column=label_column,
            meta_columns=meta_column,
            split="test" if split == "test" else "pool",
            fraction=fraction,
            fmt=fmt,
            encoding=encoding,
            delimiter=delimiter,
            header_names=header,
            skip_empty=skip_empty,
            progress=lambda n: bar.update(task, completed=n),
        )
    _report(f"imported {path}", report)
    project.close()


@app.command()
def teach(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count calls, tokens and cost; spend nothing")] = False,
    limit: Annotated[int | None, typer.Option(help="label at most this many items")] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="ask again for items answered under an older prompt version")
    ] = False,
    below: Annotated[
        float | None, typer.Option(help="with --refresh: only items whose teacher confidence is below this")
    ] = None,
) -> None:
    """The teacher labels every item not labelled yet, with a probability for each label (cached; resumable)."""
    project = _open()
    if dry_run:
        _report("teach --dry-run (nothing was spent)", project.plan_teach(limit=limit, refresh=refresh, below=below))
    else:
        with _progress(f"teaching with {project.settings.teacher.model}") as update:
            report = project.teach(limit=limit, progress=update, refresh=refresh, below=below)
        _report("teach", report)
    project.close()


#: `teacher check` and `teacher examples`: leave the test split out of the choice
PoolOnly = Annotated[
    bool, typer.Option(help="score on expert-answered pool items only, leaving the test split out of the choice")
]


@teacher_app.command("check")
def teacher_check(
    limit: Annotated[int, typer.Option(help="score at most this many labelled items per variant")] = 200,
    model: Annotated[
        list[str] | None, typer.Option(help="only this local model (repeat for several; default: all installed)")
    ] = None,
    style: Annotated[list[str] | None, typer.Option(help="only this prompt style: chat or plain (repeatable)")] = None,
    pool_only: PoolOnly = False,
) -> None:
    """Score every teacher variant (model x prompt style x calibration) on items with known labels; say which to use."""
    from terakoya.teachers.check import check_teachers

    project = _open()
    with _progress("checking teachers") as update:
        result = check_teachers(
            project.db, project.project_id, project.settings, models=model, styles=style, limit=limit,
            include_test=not pool_only, progress=lambda _name, done, total: update(done, total),
        )  # fmt: skip
    table = Table(title=escape(f"teacher check on {result.source}"), title_justify="left")
    for col in ("model", "style", "calibration", "accuracy (95% CI)", "macro-F1", "s / item", "cost / item"):
        table.add_column(col, justify="left" if col in {"model", "style", "calibration"} else "right")
    for v in result.scores:
        if v.error:
            table.add_row(escape(v.model), v.style, "—", escape(f"error: {v.error}"), "", "", "")
            continue
        ci = f" ({100 * v.accuracy_ci[0]:.0f}–{100 * v.accuracy_ci[1]:.0f})" if v.accuracy_ci else ""
        table.add_row(
            v.model, v.style, v.calibration, f"{100 * (v.accuracy or 0):.1f}%{ci}", f"{v.macro_f1:.3f}",
            f"{v.seconds_per_item:.3f}" if v.seconds_per_item is not None else "—",
            f"${v.cost_per_item_usd:.6f}" if v.cost_per_item_usd is not None else "—",
        )  # fmt: skip
    console.print(table)
    if result.advice:
        console.print(result.advice, markup=False, highlight=False)
    project.close()


@teacher_app.command("examples")
def teacher_examples(
    sets: Annotated[int, typer.Option(help="how many example sets to try (the current one among them)")] = 5,
    limit: Annotated[int, typer.Option(help="score each set on at most this many labelled items")] = 150,
    pool_only: PoolOnly = False,
) -> None:
    """Try several sets of few-shot examples on items with known labels; say which the teacher should see."""
    from terakoya.teachers.check import check_examples

    project = _open()
    with _progress("trying example sets") as update:
        result = check_examples(
            project.db, project.project_id, project.settings, sets=sets, limit=limit, include_test=not pool_only,
            progress=lambda _name, done, total: update(done, total),
        )  # fmt: skip
    title = (
        f"{len(result.sets)} example sets from {result.candidates} candidates, scored on the same {result.items} "
        f"labelled items outside every set (from {result.source})"
    )
    table = Table(title=escape(title), title_justify="left")
    for col in ("set", "examples", "accuracy (95% CI)", "macro-F1"):
        table.add_column(col, justify="right" if col in {"accuracy (95% CI)", "macro-F1"} else "left")
    for n, entry in enumerate(result.sets, 1):
        shown = "; ".join(f"{label}: {text[:40]}" for text, label in entry.examples)
        v = entry.score
        name = f"{n}" + (" (current)" if entry.current else "")
        if v is None or v.error or v.accuracy is None:
            table.add_row(name, escape(shown), escape(f"error: {v.error if v else '?'}"), "")
            continue
        ci = f" ({100 * v.accuracy_ci[0]:.0f}–{100 * v.accuracy_ci[1]:.0f})" if v.accuracy_ci else ""
        table.add_row(name, escape(shown), f"{100 * v.accuracy:.1f}%{ci}", f"{v.macro_f1:.3f}")
    console.print(table)
    if result.advice:
        console.print(result.advice, markup=False, highlight=False)
    project.close()


@app.command()
def route(
    budget: Annotated[int | None, typer.Option(help="expert budget in answers (k per item)")] = None,
    minutes: Annotated[float | None, typer.Option(help="expert budget in minutes (routing.seconds_per_item)")] = None,
    strategy: Annotated[str | None, typer.Option(help="terakoya (default) or random")] = None,
) -> None:
    """Queue the items where an expert's answer is worth most; auto-accept confident ones."""
    project = _open()
    _report("route", project.route(budget_items=budget, budget_minutes=minutes, strategy=strategy))
    project.close()


@app.command()
def answer(
    path: Annotated[Path, typer.Argument(help="file with columns id, label, person, [rationale], [seconds]")],
    id_column: Annotated[str, typer.Option(help="column with the item id")] = "id",
    label_column: Annotated[str, typer.Option(help="column with the expert's label")] = "label",
    person_column: Annotated[str, typer.Option(help="column with who answered")] = "person",
    person: Annotated[str | None, typer.Option(help="who answered, when the file has no person column")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv, tsv, jsonl or parquet")] = None,
    encoding: Annotated[str, typer.Option(help="text encoding")] = "utf-8",
) -> None:
    """Record expert answers from a file."""
    project = _open()
    report = project.record_answers(
        path,
        id_column=id_column,
        label_column=label_column,
        person_column=person_column,
        default_person=person,
        fmt=fmt,
        encoding=encoding,
    )
    _report(f"answers from {path}", report)
    project.close()


@app.command()
def simulate(
    oracle_column: Annotated[str, typer.Option(help="column of recorded expert labels (e.g. the label column)")],
    limit: Annotated[int | None, typer.Option(help="answer at most this many routed items")] = None,
) -> None:
    """Answer the routed items from recorded labels (for benchmarks); marked simulated everywhere."""
    project = _open()
    report = project.simulate(oracle_column, limit=limit)
    _report("simulated expert answers (recorded labels, not a person)", report)
    project.close()


@app.command()
def status() -> None:
    """How many items, teacher-labeled, routed, answered; teacher cost so far."""
    project = _open()
    console.print(_kv_table(f"project {project.settings.name}", project.status()))
    project.close()


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="output .jsonl, .csv or .parquet")],
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl, csv or parquet (default: suffix)")] = None,
    split: Annotated[str | None, typer.Option(help="only this split: pool or test")] = None,
    queued: Annotated[
        bool, typer.Option("--queued", help="only items routed to experts and not yet answered (hand these out)")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="replace the output file if it exists")] = False,
) -> None:
    """Write items with teacher suggestions and human answers."""
    project = _open()
    rows = project.export(path, fmt=fmt, split=split, queued=queued, force=force)
    console.print(f"wrote {rows:,} items to {path}", markup=False)
    project.close()


@app.command()
def datasets(
    folder: Annotated[Path, typer.Argument(help="output folder (sft.jsonl, preferences.jsonl, sft/, preferences/)")],
    force: Annotated[bool, typer.Option("--force", help="replace the files if they exist")] = False,
) -> None:
    """A generation project's training data for TRL: SFT messages and preference pairs (JSONL and datasets)."""
    project = _open()
    result = project.export_datasets(folder, force=force)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result["counts"].items()))
    console.print(
        f"wrote {result['sft']:,} SFT examples and {result['preferences']:,} preference pairs to {folder} ({counts})",
        markup=False,
    )
    project.close()


def _generation_summary(data: dict[str, Any]) -> None:
    """A generation report in the terminal: the comparisons, the references, the speed."""
    j, ref, sp = data["judged_by_experts"], data["references"], data["speed"]
    from terakoya.generation.evaluate import verdict

    rows: dict[str, Any] = {
        "verdict": verdict(data),
        "test prompts": data["test_prompts"],
        "expert comparisons": f"{j['total']} (student won {j['wins']}, tied {j['ties']}, lost {j['losses']}, "
        f"both bad {j['both_bad']})",
        "win-or-tie rate": "—"
        if j["win_or_tie_rate"] is None
        else f"{100 * j['win_or_tie_rate']:.1f} % "
        f"(95 % interval {100 * j['interval'][0]:.1f}–{100 * j['interval'][1]:.1f} %)",
        "chrF vs reference": f"student {_num(ref['student_chrf'])}, teacher {_num(ref['teacher_chrf'])} "
        f"({ref['prompts']} prompts)",
        "student speed": f"{_num(sp['student_tokens_per_s'])} tokens/s, {_num(sp['student_seconds_per_answer'], 3)} s "
        "per answer",
        "student size": f"{data['student']['params']} parameters, {data['student']['size_mb']} MB",
    }
    if data.get("judged_by_model"):
        m = data["judged_by_model"]
        rows["model judge"] = f"{m['judge']}: won {m['wins']}, tied {m['ties']}, lost {m['losses']}"
    for n, note in enumerate(data.get("notes", []), start=1):
        rows[f"note {n}"] = note
    console.print(_kv_table("generation report", rows))


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


@app.command()
def train(
    kind: Annotated[str | None, typer.Option(help="student kind: linear or embed (default: student.kind)")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the saved student (default: runs/<id>)")] = None,
) -> None:
    """Distil teacher probabilities and expert answers into a student."""
    project = _open()
    with _progress("training") as update:
        report = project.train(kind=kind, out_dir=out, progress=update)
    _report("train", report)
    project.close()


@app.command()
def evaluate(
    model: Annotated[Path | None, typer.Option(help="saved student folder (default: the newest)")] = None,
    out: Annotated[Path | None, typer.Option(help="report folder (default: reports/<time>)")] = None,
    curve: Annotated[bool, typer.Option(help="compute the learning curve (retrains students)")] = True,
) -> None:
    """The scrutiny report: student vs teacher vs experts on the expert-checked test split."""
    from terakoya.evaluation.render import render_terminal
    from terakoya.generation.evaluate import GenerationReport

    project = _open()
    with _progress("evaluating") as update:
        report = project.evaluate(model_path=model, out_dir=out, learning_curve=curve, progress=update)
    if isinstance(report, GenerationReport):
        _generation_summary(report.data)
    else:
        render_terminal(report.report, console)
    console.print(f"report: {report.html_path}\n        {report.json_path}", markup=False)
    project.close()


@app.command()
def predict(
    in_path: Annotated[Path, typer.Argument(help="input CSV, JSONL or Parquet")],
    out_path: Annotated[Path, typer.Argument(help="output file (same formats)")],
    model: Annotated[Path, typer.Option(help="saved student folder, e.g. runs/<id>")],
    text_column: Annotated[str, typer.Option(help="column with the text")] = "text",
    fmt: Annotated[str | None, typer.Option("--format", help="input format (default: suffix)")] = None,
    encoding: Annotated[str, typer.Option(help="text encoding")] = "utf-8",
) -> None:
    """Label a file with a saved student, or answer its prompts with a generative one (no project needed)."""
    from terakoya.serving.predicting import predict_file

    rows = predict_file(model, in_path, out_path, text_column=text_column, fmt=fmt, encoding=encoding)
    console.print(f"wrote {rows:,} predictions to {out_path}", markup=False)


@app.command("serve-model")
def serve_model_cmd(
    model: Annotated[Path, typer.Argument(help="saved student folder, e.g. runs/<id>")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8001,
) -> None:
    """Serve a saved student over HTTP: OpenAI-compatible /v1/chat/completions, /v1/classify, /v1/models."""
    from terakoya.serving.server import load_served, serve_model

    load_served(model)  # a folder that is not a student (of either kind) fails here, with the message that says why
    console.print(f"serving {model} on http://{host}:{port}/v1 (OpenAI-compatible)", markup=False)
    serve_model(model, host=host, port=port)


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="where to create the demo project")] = Path("terakoya-demo"),
    budget: Annotated[int, typer.Option(help="expert items to route (simulated from the dataset's labels)")] = 60,
    fresh: Annotated[bool, typer.Option(help="delete an earlier demo project in FOLDER first")] = False,
) -> None:
    """The whole loop on a bundled dataset, on this computer, in minutes (no network)."""
    from terakoya.demo import run_demo

    run_demo(folder, budget=budget, fresh=fresh, console=console)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    secure_cookies: Annotated[
        bool | None,
        typer.Option(
            "--secure-cookies/--no-secure-cookies",
            help="mark cookies Secure always / never (default: on requests that came over HTTPS)",
        ),
    ] = None,
    trust_proxy: Annotated[
        str | None,
        typer.Option(
            help="comma-separated addresses of your TLS proxy, whose X-Forwarded-For/-Proto headers are believed"
        ),
    ] = None,
    public_url: Annotated[
        str | None, typer.Option(help="the address people reach the server at, behind a proxy (invite links)")
    ] = None,
    workers: Annotated[int, typer.Option(help="web processes sharing the queue (PostgreSQL recommended)")] = 1,
    jobs: Annotated[
        bool, typer.Option("--jobs/--no-jobs", help="run background jobs here (--no-jobs: `terakoya worker` runs them)")
    ] = True,
) -> None:
    """Start the web workbench for experts and the owner's dashboard."""
    from terakoya.web import serve as run_server

    project = _open()
    folder = project.dir
    project.close()
    run_server(
        folder,
        host=host,
        port=port,
        overrides=_overrides(),
        secure_cookies=secure_cookies,
        trusted_proxies=trust_proxy,
        workers=workers,
        run_jobs=jobs,
        public_url=public_url,
    )


@app.command("worker")
def worker(
    once: Annotated[bool, typer.Option("--once", help="run the queued jobs, then stop")] = False,
    poll: Annotated[float, typer.Option(help="seconds between looks at the jobs table")] = 2.0,
) -> None:
    """Run background jobs (teach, route, train, evaluate) that the web app queued; as many as you like."""
    import signal

    from terakoya.jobs import JobRunner

    if poll <= 0:
        raise ConfigError(f"--poll {poll} must be more than 0 seconds, e.g. --poll 2")
    project = _open()
    runner = JobRunner(project.db, project.project_id, project=project, after_each=project.reload_settings, poll_s=poll)
    err_console.print(f"worker {runner.name} serving the jobs of project {project.settings.name}", markup=False)
    try:
        if once:
            ran = runner.run_available()
            console.print(f"ran {ran} job(s)", markup=False)
            return
        signal.signal(signal.SIGTERM, lambda *_: runner.shutdown())
        runner.serve()
    finally:
        project.close()


@app.command("settings")
def settings_cmd() -> None:
    """List every setting with its default and meaning."""
    from terakoya.settings import settings_reference

    table = Table("setting", "default", "meaning", title="settings (terakoya.toml; env TERAKOYA_*; --set)")
    for name, default, desc in settings_reference():
        table.add_row(name, escape(default), escape(desc))
    console.print(table)


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="login name")],
    email: Annotated[str, typer.Option(help="e-mail address")],
    role: Annotated[str, typer.Option(help="owner or reviewer")] = "owner",
    password: Annotated[
        str | None,
        typer.Option(help="password (default: asked for; env TERAKOYA_PASSWORD)", envvar="TERAKOYA_PASSWORD"),
    ] = None,
) -> None:
    """Add an owner or reviewer who can sign in to `terakoya serve` (trainers join by invite link)."""
    from terakoya.people.accounts import create_user

    project = _open()
    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    create_user(project.db, project.project_id, name=name, email=email, password=password, role=role)
    console.print(f"added {role} {name}", markup=False)
    project.close()


@quality_app.command("show")
def quality_show() -> None:
    """Agreement among the people (Fleiss, Krippendorff, per label), each person's reliability, who is paused."""
    from rich.table import Table

    from terakoya.evaluation.render import quality_lines
    from terakoya.evaluation.sections import QualitySection

    project = _open()
    q = QualitySection.from_summary(project.quality())
    for line in quality_lines(q):
        console.print(line, markup=False, highlight=False)
    if q.people:
        table = Table(title="people (for the owner only)", title_justify="left")
        for name in ("person", "answers", "items", "check items", "accuracy on checks", "estimated accuracy", "paused"):
            table.add_column(name, justify="left" if name == "person" else "right")
        for row in q.people:
            gold = f"{row.gold_accuracy:.0%}" if row.gold_accuracy is not None else "—"
            est = f"{row.estimated_accuracy:.0%}" if row.estimated_accuracy is not None else "—"
            table.add_row(escape(row.person), str(row.answers), str(row.items), str(row.gold_answers), gold, est,
                          "yes" if row.paused else "no")  # fmt: skip
        console.print(table)
    if q.estimate_note:
        console.print(f"estimated accuracy: {q.estimate_note}", markup=False)
    project.close()


@quality_app.command("unpause")
def quality_unpause(name: Annotated[str, typer.Argument(help="the paused person's name")]) -> None:
    """Lift a trainer's pause on this project (their earlier check answers stop counting)."""
    project = _open()
    project.lift_pause(name)
    console.print(f"{name} is no longer paused", markup=False)
    project.close()


@quality_app.command("provenance")
def quality_provenance(
    item: Annotated[str, typer.Argument(help="the item's id, as in the imported file")],
    runs: Annotated[int, typer.Option(help="how many student runs to show, newest first")] = 3,
) -> None:
    """Where an item's training label came from: the answers, people, teacher suggestion, aggregation, guidelines."""
    project = _open()
    p = project.provenance(item)
    console.print(f"item {p.external_id} ({p.split}): {p.text[:200]}", markup=False, highlight=False)
    if p.gold_label:
        console.print(f"known answer: {p.gold_label}", markup=False)
    if not p.runs:
        console.print("no student run has trained on this item yet (test items never are)", markup=False)
    for run in p.runs[:runs]:
        console.print(
            f"run {run.run_id}: learned {run.label!r} from {run.source}, weight {run.weight:.3g}"
            + (f", aggregated by {run.aggregator}" if run.aggregator else ""),
            markup=False, highlight=False,
        )  # fmt: skip
        for a in run.answers:
            state = " (undone)" if a.superseded else (" (simulated)" if a.simulated else "")
            console.print(
                f"   answer {a.answer_id}: {a.person} said {a.label!r} ({a.kind}) on {a.created_at:%Y-%m-%d %H:%M}, "
                f"guidelines {a.guideline_version or 'unrecorded'}{state}"
                + (f" — {a.rationale}" if a.rationale else ""),
                markup=False, highlight=False,
            )  # fmt: skip
        if run.suggestion is not None:
            sg = run.suggestion
            conf = f", confidence {sg.confidence:.2f}" if sg.confidence is not None else ""
            console.print(
                f"   teacher suggestion {sg.suggestion_id}: {sg.agent} said {sg.label!r}{conf}, prompt "
                f"{sg.prompt_version or '—'}" + (f", calibrated ({sg.calibration})" if sg.calibration else ""),
                markup=False, highlight=False,
            )  # fmt: skip
    project.close()


def main() -> None:
    try:
        app(standalone_mode=False, prog_name="terakoya")
    except TerakoyaError as exc:
        if STATE.debug:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted; finished work was saved")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors and genuine bugs
        import click

        if isinstance(exc, click.ClickException | typer.TyperException):  # typer carries its own copy of click
            show, code = getattr(exc, "show", None), getattr(exc, "exit_code", 2)
            if callable(show):
                show()
                sys.exit(code if isinstance(code, int) else 2)
        if STATE.debug:
            traceback.print_exc()
        err_console.print(
            f"[bold red]unexpected error:[/] {type(exc).__name__}: {escape(str(exc))} "
            "(run again with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
