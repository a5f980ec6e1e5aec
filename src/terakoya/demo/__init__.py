"""`terakoya demo`: the whole loop on the bundled dataset, on this computer, with no network.

Bundled data: ``data/fin_news.csv`` — short financial-news sentences in English and Japanese, written
for this project, with positive/negative/neutral labels and a held-out test split. The experts are
*simulated* from the dataset's recorded labels, on the routed items only, and the screen says so.
"""

from __future__ import annotations

import csv
import math
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from terakoya.errors import ConfigError
from terakoya.settings import PROJECT_FILE

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["bundled_data", "prepare_demo_project", "run_demo"]


def bundled_data() -> Path:
    """The folder with the bundled dataset and its project file."""
    return Path(str(resources.files("terakoya.demo") / "data"))


def prepare_demo_project(folder: Path, *, fresh: bool = False) -> bool:
    """Create the demo project in ``folder``; False when an earlier one is reused (its caches too)."""
    folder = folder.resolve()
    if (folder / PROJECT_FILE).exists():
        if not fresh:
            return False
        if not (folder / "terakoya.db").exists() and any(p.name != PROJECT_FILE for p in folder.iterdir()):
            raise ConfigError(f"{folder} holds files that are not a demo project; choose another folder")
        shutil.rmtree(folder)
    elif folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} exists and is not empty; pass another folder: terakoya demo FOLDER")
    data = bundled_data()
    (folder / "data").mkdir(parents=True)
    shutil.copyfile(data / "terakoya.toml", folder / PROJECT_FILE)
    # the dataset carries its own split column: write the two splits as files to import
    with (data / "fin_news.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for split in ("pool", "test"):
        with (folder / "data" / f"{split}.csv").open("w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=["id", "text", "label", "lang"])
            writer.writeheader()
            for row in rows:
                if row["split"] == split:
                    writer.writerow({k: row[k] for k in ("id", "text", "label", "lang")})
    return True


def run_demo(
    folder: Path, *, budget: int = 60, fresh: bool = False, console: Console | None = None
) -> dict[str, float]:
    """Run import -> teach -> route -> simulated experts -> train (twice) -> evaluate, printing as it goes."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from terakoya.evaluation.render import render_terminal
    from terakoya.evaluation.report import EvaluationReport
    from terakoya.project import Project

    console = console or Console()
    started = time.perf_counter()
    created = prepare_demo_project(folder, fresh=fresh)
    project = Project.open(folder)
    say = console.print
    say(f"[bold]Terakoya demo[/] in {project.dir} ({'new project' if created else 'reusing the earlier run'})")

    @contextmanager
    def bar(label: str) -> Iterator[Callable[[int, int], None]]:
        columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(label, total=None)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            yield update

    if created:
        split: Literal["pool", "test"]
        for split in ("pool", "test"):
            imported = project.import_file(
                project.dir / "data" / f"{split}.csv", id_column="id", label_column="label", split=split
            )
            say(f"imported {imported.added} {split} items from data/{split}.csv")
    plan = project.plan_teach()
    say(
        f"teacher: {project.settings.teacher.model} (local, on this CPU) — {plan.to_call} items to label, "
        f"{plan.cached} already cached"
    )
    with bar("teacher labels every item") as update:
        teach = project.teach(progress=update)
    say(f"teacher labelled {teach.labeled} items in {teach.seconds:.0f} s ({teach.calls} calls, {teach.cached} cached)")

    say("[bold yellow]Experts are SIMULATED here:[/] routed items are answered from the dataset's recorded labels.")
    rounds = [budget // 2, budget - budget // 2]
    if project.status()["answers"]:
        # a second `terakoya demo` shows the same loop again instead of routing ever more items
        say("reusing the earlier run's routed items and simulated answers (pass --fresh to start over)")
        rounds = []
        with bar("training the student") as update:
            project.train(progress=update)
    for number, share in enumerate(rounds, start=1):
        routed = project.route(budget_items=share)
        answered = project.simulate("label")
        with bar(f"round {number}: training the student") as update:
            trained = project.train(progress=update)
        say(
            f"round {number}: routed {routed.routed} items (+{routed.gold} gold), auto-accepted "
            f"{routed.auto_accepted}; simulated experts answered {answered.recorded}; student {trained.run_id} "
            f"learned from {trained.expert_items} expert + {trained.teacher_items} teacher labels"
        )
    with bar("scrutiny report") as update:
        report = project.evaluate(progress=update)
    assert isinstance(report, EvaluationReport)  # the demo project classifies
    render_terminal(report.report, console)
    elapsed = time.perf_counter() - started
    say(f"\nreport: {report.html_path}\n        {report.json_path}")
    say(f"demo finished in {elapsed / 60:.1f} minutes")
    project.close()
    teacher, student = report.report.teacher.accuracy, report.report.student.accuracy
    return {
        "teacher_accuracy": math.nan if teacher is None else teacher,
        "student_accuracy": math.nan if student is None else student,
        "seconds": elapsed,
    }
