"""The library's front door: one object per project, wrapping settings, storage and every stage.

The CLI and the web app call these methods and nothing deeper::

    project = Project.init(Path("fin-sentiment"), "fin-sentiment")
    project.import_file(Path("news.csv"), text_column="sentence", label_column="label", split="test", fraction=0.2)
    project.teach()
    project.route(budget_items=200)
    project.record_answers(Path("answers.csv"))
    project.train()
    project.evaluate()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from sqlalchemy import distinct, func, select

from terakoya.people.glossary import edited_settings
from terakoya.project_file import append_labels, write_new_project
from terakoya.settings import Settings, db_url_as_recorded, load_settings
from terakoya.storage import Database, open_database
from terakoya.storage.models import Answer, AutoAccept, Item, StudentRun, Suggestion, Task
from terakoya.storage.queries import items_by_split, labelled_items

if TYPE_CHECKING:
    from terakoya.evaluation.report import EvaluationReport
    from terakoya.generation.evaluate import GenerationReport
    from terakoya.generation.teachers import Writer
    from terakoya.importers import ImportReport
    from terakoya.quality.provenance import Provenance
    from terakoya.quality.summary import QualitySummary
    from terakoya.routing import RouteReport
    from terakoya.routing.trust import TeacherTrust
    from terakoya.teachers.base import Teacher
    from terakoya.teachers.calibrating import CalibrationReport
    from terakoya.teachers.teaching import TeachPlan, TeachReport
    from terakoya.training import TrainReport
    from terakoya.workqueue.answers import AnswerReport

__all__ = ["Progress", "Project", "ProjectLike"]

#: progress callback: (done, total)
Progress = Callable[[int, int], None]


class ProjectLike(Protocol):
    """What the web app and its background jobs hold of an open project.

    :class:`Project` is the real one (``terakoya serve`` opens it); the web tests pass a lighter object with
    the same members whose stages are tiny fakes. A stage is called with keywords only, and whatever it
    returns is stored as the job's JSON result.
    """

    @property
    def db(self) -> Database: ...

    @property
    def project_id(self) -> int: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def dir(self) -> Path: ...

    def reload_settings(self) -> None: ...

    def teach(self, *, progress: Progress | None = None) -> object: ...

    def route(self, *, budget_items: int | None = None) -> object: ...

    def train(self, *, progress: Progress | None = None) -> object: ...

    def evaluate(self, *, progress: Progress | None = None) -> object: ...


class Project:
    """An open project: ``settings``, ``db`` and ``project_id``, and one method per stage."""

    def __init__(self, settings: Settings, db: Database, *, overrides: Mapping[str, Any] | None = None) -> None:
        self.db = db
        self.project_id = db.project_id(settings.name)
        self.settings = edited_settings(db, self.project_id, settings)
        self._overrides = dict(overrides or {})

    # ------------------------------------------------------------------ opening

    @classmethod
    def init(
        cls, folder: Path, name: str | None = None, *, db: str | None = None, kind: str = "classify.v1"
    ) -> Project:
        """Create ``folder/terakoya.toml`` (and the database) and open the new project.

        ``db`` (a URL) is recorded in the file, without its password, so that every later command in the folder
        reaches the same database.
        """
        folder = folder.resolve()
        from terakoya.kinds import get_kind

        get_kind(kind)  # an unknown kind: the error lists the available ones, and nothing is written
        write_new_project(folder, name or folder.name, db=db_url_as_recorded(db, Path.cwd()) if db else None, kind=kind)
        overrides = {"db": db} if db else None
        return cls.open(folder, overrides=overrides)

    @classmethod
    def open(
        cls,
        folder: Path | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Project:
        settings = load_settings(folder, env=env, overrides=overrides)
        return cls(settings, open_database(settings.db_url), overrides=overrides)

    @property
    def dir(self) -> Path:
        return self.settings.project_dir

    def reload_settings(self) -> None:
        """Re-read terakoya.toml (after labels were appended, or the owner edited the guidelines in the web app),
        with the same environment and flags."""
        loaded = load_settings(self.dir, overrides=self._overrides)
        self.settings = edited_settings(self.db, self.project_id, loaded)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ stages

    def import_file(
        self,
        path: Path,
        *,
        text_column: str = "text",
        id_column: str | None = None,
        label_column: str | None = None,
        meta_columns: Sequence[str] | None = None,
        split: Literal["pool", "test"] = "pool",
        fraction: float = 1.0,
        fmt: str | None = None,
        encoding: str = "utf-8",
        delimiter: str | None = None,
        header_names: Sequence[str] | None = None,
        skip_empty: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        from terakoya.importers import import_file
        from terakoya.kinds import get_kind
        from terakoya.kinds.generate import prompt_text

        kind, settings = get_kind(self.settings.task.kind), self.settings
        report = import_file(
            self.db,
            self.project_id,
            path,
            text_column=text_column,
            id_column=id_column,
            label_column=label_column,
            meta_columns=meta_columns,
            split=split,
            fraction=fraction,
            seed=self.settings.seed,
            allowed_labels=self.settings.label_names or None,
            fmt=fmt,
            encoding=encoding,
            delimiter=delimiter,
            header_names=header_names,
            skip_empty=skip_empty,
            max_text_chars=self.settings.import_.max_text_chars,
            progress=progress,
            read_gold=lambda raw: kind.read_gold(raw, settings),
            read_text=prompt_text if kind.generative else None,
        )
        if kind.generative and report.labels_seen:
            # a reference answer's "label" is its check role (kinds.generate.check_role), not a label to declare
            roles = ", ".join(f"{n} would expect {role}" for role, n in sorted(report.label_counts.items()))
            report.notes.append(
                f"{sum(report.label_counts.values())} reference answers read; on test prompts they are check items "
                f"({roles})"
            )
            report.labels_seen, report.label_counts = [], {}
        elif not self.settings.labels and report.labels_seen:
            append_labels(self.dir, report.labels_seen)
            self.reload_settings()
        return report

    def plan_teach(self, *, limit: int | None = None, refresh: bool = False, below: float | None = None) -> TeachPlan:
        from terakoya.teachers.teaching import plan_teach

        return plan_teach(self.db, self.project_id, self.settings, limit=limit, refresh=refresh, below=below)

    def teach(
        self,
        *,
        teacher: Teacher | Writer | None = None,
        limit: int | None = None,
        progress: Progress | None = None,
        refresh: bool = False,
        below: float | None = None,
    ) -> TeachReport:
        """The teacher answers every item: label probabilities, or for a generation project written answers
        (``teacher``: a :class:`~terakoya.generation.teachers.Writer` there, a label teacher otherwise)."""
        if self.generative:
            from terakoya.errors import ConfigError
            from terakoya.generation.teach import teach_generate

            if teacher is not None and not hasattr(teacher, "write"):
                raise ConfigError("a generation project's teacher writes answers: pass a Writer (terakoya.generation)")
            writer = cast("Writer | None", teacher)
            return teach_generate(
                self.db, self.project_id, self.settings, writer=writer, limit=limit, progress=progress
            )
        from terakoya.teachers.teaching import teach

        self._require_labels()
        return teach(
            self.db, self.project_id, self.settings, teacher=cast("Teacher | None", teacher), limit=limit,
            progress=progress, refresh=refresh, below=below,
        )  # fmt: skip

    def calibrate_teacher(self) -> CalibrationReport:
        """Calibrate the teacher's stored answers again (on the project's items and the experts' answers)."""
        from terakoya.teachers.calibrating import calibrate_teacher

        return calibrate_teacher(self.db, self.project_id, self.settings)

    def teacher_trust(self) -> TeacherTrust:
        """How far the teacher can be trusted, from the experts' blind answers."""
        from terakoya.routing.trust import measure_trust

        return measure_trust(self.db, self.project_id, self.settings)

    def route(
        self,
        *,
        budget_items: int | None = None,
        budget_minutes: float | None = None,
        strategy: str | None = None,
        seed: int | None = None,
    ) -> RouteReport:
        from terakoya.generation.routing import route_generate
        from terakoya.routing import route

        return (route_generate if self.generative else route)(
            self.db,
            self.project_id,
            self.settings,
            budget_items=budget_items,
            budget_minutes=budget_minutes,
            strategy=strategy,
            seed=seed,
        )

    def record_answers(self, path: Path, **columns: Any) -> AnswerReport:
        from terakoya.workqueue.answers import record_answers

        self._require_labels()
        return record_answers(self.db, self.project_id, self.settings, path, **columns)

    def simulate(self, oracle_column: str, *, limit: int | None = None) -> AnswerReport:
        from terakoya.workqueue.answers import simulate

        return simulate(self.db, self.project_id, self.settings, oracle_column=oracle_column, limit=limit)

    def train(
        self, *, kind: str | None = None, out_dir: Path | None = None, progress: Progress | None = None
    ) -> TrainReport:
        if self.generative:
            from terakoya.generation.training import train_generate

            return train_generate(self.db, self.project_id, self.settings, out_dir=out_dir, progress=progress)
        from terakoya.training import train

        self._require_labels()
        return train(self.db, self.project_id, self.settings, kind=kind, out_dir=out_dir, progress=progress)

    def evaluate(
        self,
        *,
        model_path: Path | None = None,
        out_dir: Path | None = None,
        learning_curve: bool = True,
        progress: Progress | None = None,
    ) -> EvaluationReport | GenerationReport:
        """The scrutiny report (for a generation project: :mod:`terakoya.generation.evaluate`)."""
        if self.generative:
            from terakoya.generation.evaluate import evaluate_generate

            return evaluate_generate(
                self.db, self.project_id, self.settings, model_path=model_path, out_dir=out_dir, progress=progress
            )
        from terakoya.evaluation.report import evaluate

        return evaluate(
            self.db,
            self.project_id,
            self.settings,
            model_path=model_path,
            out_dir=out_dir,
            learning_curve=learning_curve,
            progress=progress,
        )

    def export(
        self, path: Path, *, fmt: str | None = None, split: str | None = None, queued: bool = False, force: bool = False
    ) -> int:
        from terakoya.importers.exporters import export_items

        db_file = self.db.file()
        protected = {self.settings.project_file: "the project's settings file"}
        if db_file is not None:
            protected[db_file] = "the project's database"
        return export_items(
            self.db,
            self.project_id,
            path,
            fmt=fmt,
            split=split,
            queued=queued,
            classes=self.settings.label_names or None,
            force=force,
            protected=protected,
        )

    def export_datasets(self, folder: Path, *, force: bool = False) -> dict[str, Any]:
        """A generation project's training data in the formats TRL reads: SFT ``messages`` and preference pairs
        (``prompt``, ``chosen``, ``rejected``), as JSONL and as Hugging Face ``datasets`` folders."""
        from terakoya.errors import StateError
        from terakoya.generation.training import export_datasets

        if not self.generative:
            raise StateError("datasets of answers come from generation projects (task.kind = 'generate.v1')")
        return export_datasets(self.db, self.project_id, self.settings, folder, force=force)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """Counts of every stage, and what the teacher cost so far."""
        pid = self.project_id
        with self.db.session() as s:
            by_split = items_by_split(s, pid)
            # an item counts as teacher-labelled when its current teacher suggestion has a label (as on the dashboard)
            labeled = labelled_items(s, pid, "teacher")
            teacher_q = (
                select(
                    func.coalesce(func.sum(Suggestion.cost_usd), 0.0),
                    func.coalesce(func.sum(Suggestion.prompt_tokens + Suggestion.completion_tokens), 0),
                    func.count(),
                )
                .join(Item, Item.id == Suggestion.item_id)
                .where(Item.project_id == pid, Suggestion.agent_kind == "teacher")
            )
            cost, tokens, suggestions = s.execute(teacher_q).one()
            calls = s.scalar(
                select(func.count())
                .select_from(Suggestion)
                .join(Item, Item.id == Suggestion.item_id)
                .where(Item.project_id == pid, Suggestion.agent_kind == "teacher", Suggestion.cached.is_(False))
            )
            tasks = dict(
                s.execute(select(Task.status, func.count()).where(Task.project_id == pid).group_by(Task.status)).all()
            )
            auto = s.scalar(select(func.count()).select_from(AutoAccept).join(Item).where(Item.project_id == pid))
            live = (Answer.superseded.is_(False), Item.project_id == pid)
            answers_q = select(
                func.count(),
                func.count(distinct(Answer.item_id)),
                func.count(distinct(Answer.person_id)),
                func.coalesce(func.sum(Answer.active_seconds), 0.0),
            ).join(Item, Item.id == Answer.item_id)
            n_answers, answered_items, people, seconds = s.execute(answers_q.where(*live)).one()
            simulated = s.scalar(
                select(func.count()).select_from(Answer).join(Item).where(*live, Answer.simulated.is_(True))
            )
            students = s.scalar(select(func.count()).select_from(StudentRun).where(StudentRun.project_id == pid))
        return {
            "project": self.settings.name,
            "database": self.db.safe_url,
            "labels": self.settings.label_names,
            "items": sum(by_split.values()),
            "pool": by_split.get("pool", 0),
            "test": by_split.get("test", 0),
            "teacher_labeled": labeled,
            "teacher_suggestions": suggestions,
            "teacher_calls": calls or 0,
            "teacher_tokens": int(tokens or 0),
            "teacher_cost_usd": float(cost or 0.0),
            "routed": sum(tasks.values()),
            "queued": tasks.get("queued", 0) + tasks.get("leased", 0),
            "auto_accepted": auto or 0,
            "answers": n_answers,
            "answered_items": answered_items,
            "simulated_answers": simulated or 0,
            "experts": people,
            "expert_minutes": float(seconds or 0.0) / 60.0,
            "students": students or 0,
            **self._trust_status(),
            **self._quality_status(),
        }

    def quality(self) -> QualitySummary:
        """Agreement among the people, each one's reliability, the answers spent per item, who is paused."""
        from terakoya.quality.summary import quality_summary

        return quality_summary(self.db, self.project_id, self.settings)

    def provenance(self, item: str) -> Provenance:
        """Where the training labels of the item with external id ``item`` came from, in every run."""
        from terakoya.quality.provenance import provenance

        return provenance(self.db, self.project_id, item)

    def lift_pause(self, name: str, *, by: int | None = None) -> None:
        """Lift the pause of the person called ``name`` (``by``: the owner's person id, when known)."""
        from terakoya.errors import StateError
        from terakoya.people.accounts import NotFound
        from terakoya.quality.gold import lift_pause
        from terakoya.storage.models import Person

        with self.db.session() as s:
            person_id = s.scalar(select(Person.id).where(Person.name == name))
        if person_id is None:
            raise NotFound(f"nobody is called {name!r}; `terakoya quality show` lists the people")
        if not lift_pause(self.db, self.project_id, person_id, by=by):
            raise StateError(f"{name} is not paused on this project; `terakoya quality show` lists who is")

    def _quality_status(self) -> dict[str, Any]:
        from terakoya.quality.review import waiting_for_review

        if len(self.settings.label_names) < 2:
            return {}
        q = self.quality()
        a = q.agreement
        return {
            "answers_per_item": round(q.answers_per_item, 2) if q.answers_per_item is not None else None,
            "agreement_items": a.items,
            "fleiss_kappa": round(a.fleiss, 3) if a.fleiss is not None else a.note,
            "krippendorff_alpha": round(a.alpha, 3) if a.alpha is not None else a.note,
            "paused": [f"{p.person}: {p.reason}" for p in q.pauses] or "nobody",
            "aggregator": q.aggregator,
            "waiting_for_review": waiting_for_review(self.db, self.project_id),
        }

    def _trust_status(self) -> dict[str, Any]:
        if len(self.settings.label_names) < 2:
            return {}
        trust = self.teacher_trust()
        ci = trust.accuracy_ci
        return {
            "teacher_blind_checks": trust.n,
            "teacher_accuracy_blind": trust.accuracy,
            "teacher_accuracy_blind_ci": list(ci) if ci else None,
            "teacher_kappa": trust.kappa,
            "teacher_trusted": trust.trusted,
            "teacher_trust": trust.sentence,
        }

    # ------------------------------------------------------------------ helpers

    @property
    def generative(self) -> bool:
        """Whether the project's kind answers in writing (generate.v1): its stages are :mod:`terakoya.generation`."""
        from terakoya.kinds import get_kind

        kind = get_kind(self.settings.task.kind)
        if kind.generative:
            kind.check(self.settings)  # a generation stage starts from settings that suit it
        return kind.generative

    def _require_labels(self) -> None:
        from terakoya.errors import ConfigError

        if self.generative:
            return
        if not self.settings.labels:
            raise ConfigError(
                f"{self.settings.project_file} declares no labels; add [[labels]] entries, or import a file with "
                "--label-column so they are taken from the data"
            )
