"""The benchmark's teachers and arms: a taught base project per (dataset, teacher), then one arm per run.

Every project arm starts from a copy of the base project's database (SQLite's backup API, so nothing in
the write-ahead log is lost) and shares one embedding cache folder (``<arm>/cache`` is a symlink), then
routes, answers from the recorded labels (``simulate``), trains, and is scored by ``evaluate``:

- ``experts_alone``: random routing, no audit or gold items, ``student.use_teacher = false``,
  ``student.self_training = false`` (and, belt and braces, no auto-accepts and no teacher item confident
  enough to be used): a student on the randomly chosen expert labels and nothing else;
- ``experts_semi``: the same with ``student.self_training = true``;
- ``random_routing``: ``route --strategy random`` with the default training, in rounds;
- ``terakoya``: all defaults, in rounds (the student's disagreement with the teacher feeds later rounds);
- ``recipe``: the thirty-line reference (not Terakoya, bench/recipe.py): frozen MiniLM embeddings +
  logistic regression on the teacher's labels for every pool item, overridden by random expert labels.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import simteacher
from bench.datasets import Dataset

ARMS = ("experts_alone", "experts_semi", "random_routing", "terakoya", "recipe")
ARM_NAMES = {
    "teacher": "teacher alone",
    "experts_alone": "experts alone",
    "experts_semi": "experts alone + semi-supervised",
    "random_routing": "Terakoya, random routing",
    "terakoya": "Terakoya, its routing",
    "recipe": "thirty-line recipe (MiniLM + LR; reference)",
}
_EXPERTS_ONLY: dict[str, Any] = {
    "routing": {"strategy": "random", "audit_share": 0.0, "gold_share": 0.0, "auto_accept_threshold": 1.0},
    "student": {"use_teacher": False, "self_training": False, "teacher_min_confidence": 1.0},
}
ARM_OVERRIDES: dict[str, dict[str, Any]] = {
    "experts_alone": _EXPERTS_ONLY,
    "experts_semi": {**_EXPERTS_ONLY, "student": {**_EXPERTS_ONLY["student"], "self_training": True}},
    "random_routing": {},
    "terakoya": {},
}


@dataclass(frozen=True)
class TeacherSpec:
    key: str
    name: str
    #: None: the real local teacher as the project defaults configure it
    accuracy: float | None = None

    @property
    def simulated(self) -> bool:
        return self.accuracy is not None


TEACHERS = {
    "real": TeacherSpec("real", "real local teacher (project defaults)"),
    **{f"sim{p}": TeacherSpec(f"sim{p}", f"simulated {p} %", p / 100) for p in (40, 60, 75, 85)},
}
SIM_TEACHER_TOML = f'[teacher]\nkind = "python"\nfunction = "{simteacher.FUNCTION}"\nbatch_size = 256\n\n'


@dataclass
class Base:
    """A taught base project and what the arms need from it."""

    dataset: Dataset
    teacher: TeacherSpec
    folder: Path
    toml: str
    classes: list[str]
    #: (text, gold, teacher's current label or None, its confidence or None) per pool / test item
    pool: list[tuple[str, str, str | None, float | None]]
    test: list[tuple[str, str, str | None, float | None]]
    teach: dict[str, Any]
    evaluation: dict[str, Any]
    #: the embedding cache folder every project shares
    cache: Path
    measured: dict[str, Any] = field(default_factory=dict)

    @property
    def teacher_name(self) -> str:
        if self.teacher.simulated:
            return self.teacher.name
        return f"real: {self.teach.get('model')}"


def _fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def prepare_base(ds: Dataset, spec: TeacherSpec, work: Path, *, log: Callable[[str], None] = print) -> Base:
    """Import and teach the base project (reused when its project file is unchanged: the teacher cache)."""
    from terakoya.evaluation.metrics import classification_metrics
    from terakoya.project import Project

    rows_hash = _fingerprint([(r.id, r.text, r.label, r.split) for r in ds.rows])
    sim = None
    if spec.simulated:
        assert spec.accuracy is not None
        sim = simteacher.simulate(
            [r.label for r in ds.rows],
            [r.difficulty for r in ds.rows],
            list(ds.labels),
            accuracy=spec.accuracy,
            seed=simteacher.seed_for(spec.key, ds.key),
        )
        table = sim.table([r.text for r in ds.rows])
        simteacher.use(table)
        teacher_toml, fingerprint = SIM_TEACHER_TOML, f"data {rows_hash}, {spec.name} table {_fingerprint(table)}"
    else:
        teacher_toml, fingerprint = "", f"data {rows_hash}, real teacher: the project defaults"
    toml = ds.toml(name=f"bench-{ds.key}-{spec.key}", teacher=teacher_toml, kind=None, fingerprint=fingerprint)
    folder = work / spec.key / "base"
    project_file = folder / "terakoya.toml"
    imported = folder / "imported.ok"  # written once the import finished, so a killed import starts over
    fresh = not imported.exists() or not project_file.exists() or project_file.read_text() != toml
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        project_file.write_text(toml, encoding="utf-8")
    cache = work.parent / "cache"
    link_cache(folder, cache)
    project = Project.open(folder, env={})
    try:
        if fresh:
            for imp in ds.write_imports(work / "data"):
                project.import_file(
                    Path(str(imp["path"])), text_column="sentence", id_column="id", label_column="label",
                    split="pool" if imp["split"] == "pool" else "test", fraction=float(str(imp["fraction"])),
                )  # fmt: skip
            imported.write_text(fingerprint, encoding="utf-8")
        started = time.perf_counter()
        # refresh: items answered under an older prompt version are asked again (the cache keeps reruns free)
        refresh = {"refresh": True} if "refresh" in inspect.signature(project.teach).parameters else {}
        taught = project.teach(progress=_ticker(f"{ds.key}/{spec.key}: teacher", log), **refresh)
        seconds = time.perf_counter() - started
        report = project.evaluate(out_dir=folder / "reports" / "teacher", learning_curve=False).data
        pool, test = _items(project)
    finally:
        project.close()
    classes = list(ds.labels)
    base = Base(
        ds, spec, folder, toml, classes, pool, test,
        teach={"model": taught.model, "prompt_version": taught.prompt_version, "labeled": taught.labeled,
               "calls": taught.calls, "cached": taught.cached, "errors": taught.errors, "seconds": seconds},
        evaluation=report.get("teacher", {}), cache=cache,
    )  # fmt: skip
    # measured on the test split, from the teacher's current suggestions as Terakoya stores them
    labelled = [(gold, lab, conf) for _, gold, lab, conf in test if lab is not None]
    correct = [lab == gold for gold, lab, _ in labelled]
    m = classification_metrics([g for g, _, _ in labelled], None, [lab or "" for _, lab, _ in labelled], classes)
    base.measured = {
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "auroc": simteacher.auroc([c if c is not None else 0.0 for _, _, c in labelled], correct),
        "test_items_labelled": len(labelled),
    }
    if sim is not None:
        index = {simteacher.key(r.text): i for i, r in enumerate(ds.rows)}
        rows = [index[simteacher.key(text)] for text, *_ in test]
        base.measured.update(
            target_accuracy=spec.accuracy,
            drawn_accuracy_all=sim.accuracy(),
            drawn_accuracy_test=float(sim.correct[rows].mean()),
            drawn_auroc_test=simteacher.auroc(sim.confidence[rows], sim.correct[rows]),
            drawn_accuracy_by_difficulty={
                str(level): float(sim.correct[[r.difficulty == level for r in ds.rows]].mean())
                for level in sorted({r.difficulty for r in ds.rows})
            },
        )
    return base


def _items(project: Any) -> tuple[list[Any], list[Any]]:
    from sqlalchemy import select

    from terakoya.storage.models import Item, Suggestion
    from terakoya.storage.queries import current_suggestion_ids

    with project.db.session() as s:
        current = current_suggestion_ids(project.project_id, "teacher")
        said = {
            item_id: (probs or {})
            for item_id, probs in s.execute(
                select(Suggestion.item_id, Suggestion.probabilities).where(Suggestion.id.in_(current))
            )
        }
        rows = s.execute(
            select(Item.id, Item.text, Item.gold_label, Item.split)
            .where(Item.project_id == project.project_id)
            .order_by(Item.id)
        ).all()
    out: dict[str, list[Any]] = {"pool": [], "test": []}
    for item_id, text, gold, split in rows:
        probs = said.get(item_id)
        top = max(probs, key=lambda k: probs[k]) if probs else None
        out[split].append((text, gold, top, probs[top] if probs and top else None))
    return out["pool"], out["test"]


def _ticker(label: str, log: Callable[[str], None]) -> Callable[[int, int], None]:
    last = [0.0]

    def tick(done: int, total: int) -> None:
        now = time.perf_counter()
        if total and (now - last[0] > 15 or done == total):
            last[0] = now
            log(f"  {label}: {done}/{total}")

    return tick


def link_cache(folder: Path, shared: Path) -> None:
    """``folder/cache`` -> ``shared``: every project's embed student reads one embedding cache."""
    shared.mkdir(parents=True, exist_ok=True)
    link = folder / "cache"
    if not link.is_symlink():
        shutil.rmtree(link, ignore_errors=True)
        link.symlink_to(shared.resolve(), target_is_directory=True)


def _copy_database(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)
    source.close()
    target.close()


def split_rounds(n: int, rounds: int) -> list[int]:
    return [n // rounds + (1 if r < n % rounds else 0) for r in range(max(1, rounds))]


#: texts the evaluation times the student on in arms that are not the speed measurement (it costs minutes)
QUICK_TIMING_ITEMS = 5


def run_project_arm(
    base: Base, arm: str, *, n: int, seed: int, rounds: int, kind: str | None, arms_dir: Path, timing: bool = True
) -> dict[str, Any]:
    """One Terakoya project arm at ``n`` expert items; returns its scores (raises on failure).

    ``timing``: the evaluation times the student as the project configures it (``evaluation.timing_items``);
    otherwise on a few texts only, and the arm reports no speed.
    """
    from terakoya.project import Project

    folder = arms_dir / f"{arm}-n{n}-s{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "terakoya.toml").write_text(base.toml, encoding="utf-8")
    _copy_database(base.folder / "terakoya.db", folder / "terakoya.db")
    link_cache(folder, base.cache)
    overrides = _merge(ARM_OVERRIDES[arm], {"routing": {"seed": seed}, "student": {"seed": seed}})
    if kind:
        overrides = _merge(overrides, {"student": {"kind": kind}})
    if not timing:
        overrides = _merge(overrides, {"evaluation": {"timing_items": QUICK_TIMING_ITEMS}})
    project = Project.open(folder, env={}, overrides=overrides)
    experts_only = arm.startswith("experts")
    parts = [n] if experts_only else split_rounds(n, rounds)
    strategy = "random" if experts_only or arm == "random_routing" else None
    rounds_out = []
    steps = {"route_s": 0.0, "simulate_s": 0.0, "train_s": 0.0, "evaluate_s": 0.0}
    clock = time.perf_counter
    try:
        for r, part in enumerate(parts):
            if not part:
                continue
            t0 = clock()
            routed = project.route(budget_items=part, strategy=strategy, seed=seed * 1000 + r)
            t1 = clock()
            answered = project.simulate("label")
            t2 = clock()
            trained = project.train()
            t3 = clock()
            steps["route_s"] += t1 - t0
            steps["simulate_s"] += t2 - t1
            steps["train_s"] += t3 - t2
            rounds_out.append(
                {"budget": part, "routed": routed.routed, "gold": routed.gold, "audit": getattr(routed, "audit", None),
                 "auto_accepted": routed.auto_accepted, "answered": getattr(answered, "recorded", None),
                 "run_id": trained.run_id, "trained_expert_items": getattr(trained, "expert_items", None),
                 "trained_teacher_items": getattr(trained, "teacher_items", None),
                 "recipe": getattr(trained, "recipe", None)}
            )  # fmt: skip
        t0 = clock()
        data = project.evaluate(out_dir=folder / "report", learning_curve=False).data
        steps["evaluate_s"] = clock() - t0
        last = rounds_out[-1] if rounds_out else {}
        if last.get("trained_expert_items") is not None:
            recipe = last.get("recipe") or {}
            composition = {
                "trained_expert_items": last["trained_expert_items"],
                "trained_teacher_items": last["trained_teacher_items"],
                "teacher_scale": recipe.get("teacher_scale"),
                "teacher_version": recipe.get("teacher_version"),
                "pseudo_labels": recipe.get("pseudo_labels"),
            }
        else:
            composition = _composition(project)
    finally:
        project.close()
    student, teacher = data.get("student") or {}, data.get("teacher") or {}
    if not student.get("available", True) or student.get("accuracy") is None:
        raise RuntimeError(f"evaluate reported no student: {student.get('reason', 'no accuracy')}")
    out = {
        "accuracy": student.get("accuracy"),
        "macro_f1": student.get("macro_f1"),
        "items_per_second": student.get("items_per_second") if timing else None,
        "p50_latency_ms": student.get("p50_latency_ms") if timing else None,
        "teacher_accuracy": teacher.get("accuracy"),
        "teacher_macro_f1": teacher.get("macro_f1"),
        "teacher_items_per_second": teacher.get("items_per_second"),
        "expert_items_answered": data.get("expert_items"),
        "student_kind": getattr(trained, "kind", None),
        "rounds": rounds_out,
        **steps,
        **composition,
    }
    if experts_only and (composition.get("trained_teacher_items") or 0) * (composition.get("teacher_scale") or 1) > 0:
        out["warning"] = (
            f"student.use_teacher = false was not honoured: {composition['trained_teacher_items']} teacher items "
            "in the training set"
        )
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _composition(project: Any) -> dict[str, Any]:
    try:
        from terakoya.training import build_training_set

        training = build_training_set(project.db, project.project_id, project.settings)
        return {
            "trained_expert_items": int(sum(s == "expert" for s in training.sources)),
            "trained_teacher_items": int(sum(s == "teacher" for s in training.sources)),
        }
    except Exception as exc:  # the training internals are changing; the composition is a side note
        return {"composition_error": f"{type(exc).__name__}: {exc}"}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
