"""The quality-control benchmark: crowd aggregation, the pause rule and the student, with simulated trainers.

    python -m bench.crowd [--quick] [--seeds 3] [--out bench/results/crowd]

Data: Financial PhraseBank, every sentence of the 50 %-agreement file with its agreement level as difficulty
(bench/datasets.py; read from ../shared/data, never copied into the project: without it the benchmark says so
and exits 0). Each seed splits it 80/20 into pool and test (stratified by label), draws a simulated teacher of
78 % accuracy whose mistakes fall mostly on hard sentences (bench/simteacher.py) and a team of simulated
trainers (bench/crowd_sim.py): careful (95 % right on easy sentences, 70 % on hard ones), average (80 / 60 %),
a spammer (uniform at random) and an adversary (always one label, ``--adversary-label``, default ``positive``:
wrong on about 72 % of FPB). Items go to trainers at random: the benchmark is about aggregation, not routing.

1. **Aggregated-label accuracy** against FPB's labels on ``--answered`` pool items (default 2,000), with k = 1,
   2, 3 answers per item from distinct trainers, or *adaptive* (two, then one more while they disagree, at most
   four), for majority vote, Dawid–Skene, Dawid–Skene with the teacher as a worker, Dawid–Skene with the teacher
   and a student as workers, and MACE with the teacher (terakoya.quality.crowd.aggregate); for the team with
   the spammer and the adversary (2 careful, 2 average, 1 spammer, 1 adversary) and without them (2 careful,
   2 average). The student worker is the project's ``linear`` student trained on the majority-vote labels of
   the answered items plus the teacher's labels of the pool items nobody answered, cross-fitted (two folds:
   each answered item is labelled by a student that did not train on it, so it does not just echo the vote).
2. **Pausing**: ``--trainers`` simulated trainers per profile (default 200, per seed) each answer check items
   (test items with known labels) mixed into their queue at ``routing.gold_share`` (10 %), up to 60 check
   answers; after every check answer the project's pause rule (terakoya.quality.gold.pause_reason with the
   default QualitySettings: at least 10 check answers and the top of the 95 % Wilson interval below 60 %)
   decides. Reported per profile: the share paused, and among the paused the median and the largest number of
   check answers (and of all answers) before the pause. Adversaries are simulated for every label, since what
   an always-the-same-label trainer scores on check items depends on how common the label is.
3. **The student at equal answer budgets**: ``--budget`` answers (default 600) buy k = 1 (600 items), k = 2
   (300), k = 3 (200) or adaptive answers (as many items as the budget covers); the ``linear`` student is
   trained on each aggregate's labels (Dawid–Skene and MACE labels weighted by their posterior confidence) and
   scored on the test split, beside the teacher alone, the same budget spent on a team of 4 careful trainers,
   and a student trained on the budget's worth of true labels (every answer right; a ceiling).

Every table is mean ± std over seeds (pausing: pooled over seeds). The target lines:

- "DS with teacher ≥ majority + 3 points with a spammer present", one line per overlap setting;
- "spammer paused within 15 check items": met when every simulated spammer was (the median and max follow);
- the same for each adversary label;
- "careful trainers paused: 0 of N".

Output: the tables and target lines on stdout (markdown), and ``crowd.json`` (every number, every seed),
``crowd.md`` and ``crowd.png`` in ``--out`` (default bench/results/crowd; ``--quick``: bench/results/crowd_quick,
so a quick run never overwrites a full one). ``--quick`` (a harness check: a 1,500-sentence sample, 600 answered
items, a 300-answer budget, 100 trainers per profile, 2 seeds) takes about 1.5 minutes on two busy cores, the full
run (3 seeds) about 5; most of it is crowd-kit's EM (about a second per Dawid–Skene or MACE fit, whatever the size).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import crowd_sim, datasets, simteacher
from bench.crowd_sim import Trainer
from bench.datasets import Row

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

#: how many answers each item gets
SETTINGS = ("k=1", "k=2", "k=3", "adaptive")
#: the aggregations compared (key -> name in the tables)
METHODS = {
    "majority": "majority vote",
    "ds": "Dawid–Skene",
    "ds_teacher": "DS + teacher",
    "ds_teacher_student": "DS + teacher + student",
    "mace_teacher": "MACE + teacher",
}
#: the aggregations whose labels train the student at equal budgets
BUDGET_METHODS = ("majority", "ds", "ds_teacher", "mace_teacher")
#: team key -> its members
TEAMS = {
    "mixed": "2 careful, 2 average, 1 spammer, 1 adversary",
    "honest": "2 careful, 2 average",
    "careful": "4 careful",
}
#: the pause target: paused within this many check answers
PAUSE_WITHIN = 15
#: the aggregation target: DS with the teacher beats majority vote by this much with a spammer present
DS_MARGIN = 0.03
ADAPTIVE_START, ADAPTIVE_CAP = 2, 4


@dataclass(frozen=True)
class Config:
    """One benchmark run's parameters (the CLI's flags)."""

    seeds: int = 3
    #: a seeded sample of at most this many sentences (None: all of them)
    limit: int | None = None
    test_share: float = 0.2
    #: pool items the team answers for the aggregation table (at most the pool)
    answered: int = 2000
    #: answers bought for each student at equal budgets
    budget: int = 600
    #: simulated trainers per profile and seed in the pausing table
    trainers: int = 200
    #: check answers each of them gives at most
    horizon: int = 60
    teacher_accuracy: float = 0.78
    adversary_label: str = "positive"
    student: str = "linear"
    student_folds: int = 2
    #: the overlap settings measured (a subset for a faster check)
    settings: tuple[str, ...] = SETTINGS

    def __post_init__(self) -> None:
        unknown = [s for s in self.settings if s not in SETTINGS]
        if unknown or not self.settings:
            raise ValueError(f"unknown overlap settings {unknown or '(none)'}; choose from {', '.join(SETTINGS)}")


QUICK = Config(seeds=2, limit=1500, answered=600, budget=300, trainers=100)


@dataclass(frozen=True)
class World:
    """One seed's data: rows by index (the crowd item ids), the pool/test split and the teacher's labels."""

    rows: Sequence[Row]
    classes: list[str]
    pool: list[int]
    test: list[int]
    truth: dict[int, str]
    difficulty: dict[int, float]
    teacher: dict[int, str]


def log(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- the simulated world


def make_world(rows: Sequence[Row], classes: Sequence[str], config: Config, seed: int) -> World:
    """The seed's stratified pool/test split and its simulated teacher (drawn over every row)."""
    from sklearn.model_selection import train_test_split

    index = list(range(len(rows)))
    pool, test = train_test_split(
        index, test_size=config.test_share, stratify=[r.label for r in rows], random_state=seed
    )
    sim = simteacher.simulate(
        [r.label for r in rows],
        [r.difficulty for r in rows],
        list(classes),
        accuracy=config.teacher_accuracy,
        seed=simteacher.seed_for(f"crowd-sim{round(100 * config.teacher_accuracy)}", "fpb") + seed,
    )
    return World(
        rows=rows,
        classes=list(classes),
        pool=sorted(int(i) for i in pool),
        test=sorted(int(i) for i in test),
        truth={i: r.label for i, r in enumerate(rows)},
        difficulty={i: crowd_sim.fpb_difficulty(r.difficulty) for i, r in enumerate(rows)},
        teacher=dict(enumerate(sim.answers)),
    )


def make_team(key: str, adversary_label: str) -> list[Trainer]:
    if key == "mixed":
        return crowd_sim.team(careful_n=2, average_n=2, spammers=1, adversaries=1, label=adversary_label)
    if key == "honest":
        return crowd_sim.team(careful_n=2, average_n=2)
    if key == "careful":
        return crowd_sim.team(careful_n=4)
    raise ValueError(f"unknown team {key!r}; the teams are: {', '.join(TEAMS)}")


def buy(
    setting: str, items: Sequence[int], world: World, trainers: Sequence[Trainer], rng: np.random.Generator
) -> list[tuple[int, str, str]]:
    """Every item's answers under ``setting`` (k fixed, or adaptive)."""
    if setting == "adaptive":
        answers, _ = crowd_sim.adaptive_answers(
            items, world.truth, world.difficulty, trainers, world.classes, rng, start=ADAPTIVE_START, cap=ADAPTIVE_CAP
        )
        return answers
    k = int(setting.removeprefix("k="))
    return crowd_sim.simulate_answers(items, world.truth, world.difficulty, trainers, k, world.classes, rng)


def buy_budget(
    setting: str,
    order: Sequence[int],
    world: World,
    trainers: Sequence[Trainer],
    budget: int,
    rng: np.random.Generator,
) -> list[tuple[int, str, str]]:
    """``budget`` answers under ``setting``, items taken in ``order``: k fixed covers budget // k items; adaptive
    buys item after item until the budget is spent (the last item may get fewer answers than it asked for)."""
    if setting != "adaptive":
        k = int(setting.removeprefix("k="))
        return buy(setting, order[: budget // k], world, trainers, rng)
    out: list[tuple[int, str, str]] = []
    for item in order:
        if len(out) >= budget:
            break
        out += buy(setting, [item], world, trainers, rng)
    return out[:budget]


def aggregate_with(
    method: str,
    answers: Sequence[tuple[int, str, str]],
    world: World,
    seed: int,
    student: Mapping[int, str] | None = None,
) -> Any:
    """One of :data:`METHODS` through terakoya.quality.crowd.aggregate (the teacher and student as workers)."""
    from terakoya.quality.crowd import aggregate

    models: dict[str, Mapping[int, str]] = {}
    if method in ("ds_teacher", "ds_teacher_student", "mace_teacher"):
        models["teacher"] = world.teacher
    if method == "ds_teacher_student":
        if student is None:
            raise ValueError("aggregate_with('ds_teacher_student') needs the student's labels (student=...)")
        models["student"] = student
    crowd_method = {"majority": "majority", "mace_teacher": "mace"}.get(method, "dawid_skene")
    return aggregate(answers, world.classes, crowd_method, models=models or None, seed=seed)


def fit_student(
    world: World, config: Config, items: Sequence[int], labels: Sequence[str], weights: Sequence[float] | None = None
) -> Any:
    from terakoya.students import make_student

    student = make_student(config.student, classes=world.classes)
    return student.fit([world.rows[i].text for i in items], list(labels), sample_weight=weights)


def student_worker(world: World, config: Config, voted: Mapping[int, str], seed: int) -> dict[int, str]:
    """The student as a worker: trained on the vote of the answered items plus the teacher's labels of the pool
    items nobody answered, cross-fitted, so that each answered item's label comes from a student that did not
    train on it."""
    answered = list(voted)
    taught = [i for i in world.pool if i not in voted]
    rng = np.random.default_rng([seed, 7, len(answered)])
    out: dict[int, str] = {}
    for fold in np.array_split(rng.permutation(answered), config.student_folds):
        held = {int(i) for i in fold}
        train = [i for i in answered if i not in held]
        student = fit_student(
            world, config, train + taught, [voted[i] for i in train] + [world.teacher[i] for i in taught]
        )
        predicted = student.predict([world.rows[int(i)].text for i in fold])
        out.update({int(i): str(label) for i, label in zip(fold, predicted, strict=True)})
    return out


def accuracy(labels: Mapping[int, str], truth: Mapping[int, str], items: Sequence[int] | None = None) -> float:
    keys = list(labels) if items is None else list(items)
    return sum(labels[i] == truth[i] for i in keys) / len(keys) if keys else math.nan


# ----------------------------------------------------------------------------- the three measurements


def measure_aggregation(world: World, config: Config, seed: int) -> dict[str, Any]:
    """Part 1: each aggregation's label accuracy on the answered pool items, per team and overlap setting."""
    rng = np.random.default_rng([seed, 1])
    answered = [int(i) for i in rng.choice(world.pool, size=min(config.answered, len(world.pool)), replace=False)]
    out: dict[str, Any] = {"items": len(answered), "teacher_accuracy": accuracy(world.teacher, world.truth, answered)}
    teams: dict[str, Any] = {}
    for t, team in enumerate(("mixed", "honest")):
        trainers = make_team(team, config.adversary_label)
        teams[team] = {}
        for s, setting in enumerate(config.settings):
            answers = buy(setting, answered, world, trainers, np.random.default_rng([seed, 2, t, s]))
            voted = aggregate_with("majority", answers, world, seed)
            student = student_worker(world, config, voted.labels, seed)
            scores = {"majority": accuracy(voted.labels, world.truth)}
            for method in METHODS:
                if method != "majority":
                    result = aggregate_with(method, answers, world, seed, student)
                    scores[method] = accuracy(result.labels, world.truth)
            teams[team][setting] = {
                "answers": len(answers),
                "answers_per_item": len(answers) / len(answered),
                "accuracy": scores,
                "student_worker_accuracy": accuracy(student, world.truth),
            }
    out["teams"] = teams
    return out


def profiles(classes: Sequence[str]) -> dict[str, Callable[[str], Trainer]]:
    """The pausing table's profiles: name -> a factory of one trainer by name."""
    out: dict[str, Callable[[str], Trainer]] = {
        "careful": crowd_sim.careful,
        "average": crowd_sim.average,
        "spammer": crowd_sim.spammer,
    }
    for label in classes:
        out[f"adversary ({label})"] = lambda name, label=label: crowd_sim.adversary(name, label)
    return out


def measure_pausing(world: World, config: Config, seed: int) -> dict[str, Any]:
    """Part 2: per profile, when (if at all) the pause rule stops each simulated trainer."""
    from terakoya.quality.gold import _score, pause_reason
    from terakoya.settings import QualitySettings, RoutingSettings

    quality, share = QualitySettings(), RoutingSettings().gold_share
    horizon = min(config.horizon, len(world.test))
    out: dict[str, Any] = {}
    for p, (profile, make) in enumerate(profiles(world.classes).items()):
        rng = np.random.default_rng([seed, 3, p])
        paused_at: list[int | None] = []
        answers_at: list[int | None] = []
        for n in range(config.trainers):
            trainer = make(f"{profile}-{n}")
            rows: list[tuple[int, str, str]] = []
            given = 0
            stop: int | None = None
            for item in rng.choice(world.test, size=horizon, replace=False):
                item = int(item)
                given += int(rng.geometric(share))  # this check answer is the given-th answer overall
                label = trainer.answer(world.truth[item], world.difficulty[item], world.classes, rng)
                rows.append((item, label, world.truth[item]))
                if pause_reason(_score(n, rows), quality) is not None:
                    stop = len(rows)
                    break
            paused_at.append(stop)
            answers_at.append(given if stop is not None else None)
        out[profile] = {
            "trainers": config.trainers,
            "horizon": horizon,
            "paused_at": paused_at,
            "answers_at": answers_at,
        }
    return out


def measure_budget(world: World, config: Config, seed: int) -> dict[str, Any]:
    """Part 3: the student's test accuracy when trained on each setting's aggregate of ``budget`` answers."""
    rng = np.random.default_rng([seed, 4])
    order = [int(i) for i in rng.permutation(world.pool)]
    test_texts = [world.rows[i].text for i in world.test]
    test_truth = [world.truth[i] for i in world.test]

    def score(student: Any) -> float:
        return float(student.score(test_texts, test_truth))

    gold_items = order[: config.budget]
    out: dict[str, Any] = {
        "teacher_accuracy": accuracy(world.teacher, world.truth, world.test),
        "gold_student_accuracy": score(fit_student(world, config, gold_items, [world.truth[i] for i in gold_items])),
        "teams": {},
    }
    for t, team in enumerate(TEAMS):
        trainers = make_team(team, config.adversary_label)
        out["teams"][team] = {}
        for s, setting in enumerate(config.settings):
            answers = buy_budget(setting, order, world, trainers, config.budget, np.random.default_rng([seed, 5, t, s]))
            record: dict[str, Any] = {"answers": len(answers), "items": len({i for i, _, _ in answers})}
            students, labels = {}, {}
            for method in BUDGET_METHODS:
                result = aggregate_with(method, answers, world, seed)
                items = list(result.labels)
                weights = None if method == "majority" else [result.confidence[i] for i in items]
                student = fit_student(world, config, items, [result.labels[i] for i in items], weights)
                students[method] = score(student)
                labels[method] = accuracy(result.labels, world.truth)
            record.update(student_accuracy=students, label_accuracy=labels)
            out["teams"][team][setting] = record
    return out


def run(
    rows: Sequence[Row], classes: Sequence[str], config: Config, *, say: Callable[[str], None] = log
) -> dict[str, Any]:
    """The benchmark on ``rows`` (ids, texts, labels and difficulty levels 0-3): every seed's numbers, their
    summary and the target checks."""
    if config.adversary_label not in classes:
        raise ValueError(f"--adversary-label {config.adversary_label!r} is not one of the labels {list(classes)}")
    started = time.perf_counter()
    per_seed = []
    for seed in range(config.seeds):
        t0 = time.perf_counter()
        world = make_world(rows, classes, config, seed)
        record = {
            "seed": seed,
            "pool": len(world.pool),
            "test": len(world.test),
            "aggregation": measure_aggregation(world, config, seed),
        }
        t1 = time.perf_counter()
        record["pausing"] = measure_pausing(world, config, seed)
        t2 = time.perf_counter()
        record["budget"] = measure_budget(world, config, seed)
        t3 = time.perf_counter()
        record["seconds"] = {"aggregation": t1 - t0, "pausing": t2 - t1, "budget": t3 - t2}
        per_seed.append(record)
        say(f"  seed {seed}: aggregation {t1 - t0:.1f} s, pausing {t2 - t1:.1f} s, budget {t3 - t2:.1f} s")
    summary = summarise(per_seed, config.settings)
    return {
        "format": 1,
        "config": asdict(config),
        "classes": list(classes),
        "rows": len(rows),
        "seeds": per_seed,
        "summary": summary,
        "checks": checks(summary, config),
        "elapsed_s": time.perf_counter() - started,
    }


# ----------------------------------------------------------------------------- summaries and targets


def stats(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and (sample) standard deviation over seeds, NaN and None left out."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def _pause_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    stops = [s for r in records for s in r["paused_at"]]
    given = [a for r in records for a in r["answers_at"] if a is not None]
    paused = sorted(s for s in stops if s is not None)
    horizon = min(r["horizon"] for r in records)
    return {
        "trainers": len(stops),
        "horizon": horizon,
        "paused": len(paused),
        "share": stats([sum(s is not None for s in r["paused_at"]) / len(r["paused_at"]) for r in records]),
        "within": sum(s <= PAUSE_WITHIN for s in paused),
        "median_checks": statistics.median(paused) if paused else None,
        "max_checks": max(paused) if paused else None,
        "median_answers": statistics.median(given) if given else None,
        # the share paused after 1 .. horizon check answers (the plot's curve)
        "curve": [sum(s <= n for s in paused) / len(stops) for n in range(1, horizon + 1)],
    }


def summarise(per_seed: Sequence[Mapping[str, Any]], settings: Sequence[str]) -> dict[str, Any]:
    """Every table's cells as mean/std over seeds (the pausing table pooled over seeds)."""
    aggregation: dict[str, Any] = {}
    for team in ("mixed", "honest"):
        aggregation[team] = {}
        for setting in settings:
            cells = [r["aggregation"]["teams"][team][setting] for r in per_seed]
            aggregation[team][setting] = {
                "answers_per_item": stats([c["answers_per_item"] for c in cells]),
                "student_worker": stats([c["student_worker_accuracy"] for c in cells]),
                **{m: stats([c["accuracy"][m] for c in cells]) for m in METHODS},
            }
    budget: dict[str, Any] = {}
    for team in TEAMS:
        budget[team] = {}
        for setting in settings:
            cells = [r["budget"]["teams"][team][setting] for r in per_seed]
            budget[team][setting] = {
                "items": stats([c["items"] for c in cells]),
                **{m: stats([c["student_accuracy"][m] for c in cells]) for m in BUDGET_METHODS},
                "labels": {m: stats([c["label_accuracy"][m] for c in cells]) for m in BUDGET_METHODS},
            }
    return {
        "settings": list(settings),
        "pool": stats([r["pool"] for r in per_seed]),
        "test": stats([r["test"] for r in per_seed]),
        "answered_items": stats([r["aggregation"]["items"] for r in per_seed]),
        "teacher_on_answered": stats([r["aggregation"]["teacher_accuracy"] for r in per_seed]),
        "aggregation": aggregation,
        "pausing": {p: _pause_summary([r["pausing"][p] for r in per_seed]) for p in per_seed[0]["pausing"]},
        "budget": budget,
        "teacher_on_test": stats([r["budget"]["teacher_accuracy"] for r in per_seed]),
        "gold_student": stats([r["budget"]["gold_student_accuracy"] for r in per_seed]),
    }


def _pts(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _n(value: float | None) -> str:
    """A count or a median of counts: whole numbers without a decimal point."""
    if value is None:
        return "—"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def checks(summary: Mapping[str, Any], config: Config) -> list[dict[str, Any]]:
    """The target lines, each MET or MISSED by its numbers alone."""
    out: list[dict[str, Any]] = []

    def add(ok: bool, text: str) -> None:
        status = "MET" if ok else "MISSED"
        out.append({"status": status, "text": text.replace("{status}", status)})

    for setting in summary["settings"]:
        cell = summary["aggregation"]["mixed"][setting]
        ds, vote = cell["ds_teacher"]["mean"], cell["majority"]["mean"]
        add(
            ds is not None and vote is not None and ds >= vote + DS_MARGIN - 1e-9,
            f"DS with teacher ≥ majority + {100 * DS_MARGIN:.0f} points with a spammer present ({setting}): "
            f"{{status}} ({_pts(ds)} vs {_pts(vote)})",
        )
    pausing = summary["pausing"]
    team_adversary = f"adversary ({config.adversary_label})"
    for profile in dict.fromkeys(["spammer", team_adversary, *(p for p in pausing if p.startswith("adversary ("))]):
        p = pausing[profile]
        never = p["trainers"] - p["paused"]
        note = " — the team's adversary" if profile == team_adversary else ""
        add(
            p["within"] == p["trainers"],
            f"{profile} paused within {PAUSE_WITHIN} check items{note}: {{status}} (median {_n(p['median_checks'])}, "
            f"max {_n(p['max_checks'])}; {p['within']} of {p['trainers']} within {PAUSE_WITHIN}"
            + (f"; {never} not paused after {p['horizon']})" if never else ")"),
        )
    careful = pausing["careful"]
    add(careful["paused"] == 0, f"careful trainers paused: {careful['paused']} of {careful['trainers']}: {{status}}")
    return out


# ----------------------------------------------------------------------------- tables, markdown, plot

SHORT_TEAMS = {"mixed": "spammer + adversary", "honest": "without them", "careful": "careful only"}


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str]


def _cell(s: Mapping[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    if s["mean"] is None:
        return "—"
    mean = f"{scale * s['mean']:.{digits}f}"
    return mean if s["n"] < 2 else f"{mean} ± {scale * s['std']:.{digits}f}"


def tables(results: Mapping[str, Any]) -> list[Table]:
    """The three tables, rendered as markdown for the terminal and the file."""
    summary, config = results["summary"], results["config"]
    settings, seeds = summary["settings"], f"{config['seeds']} seed(s)"
    adversary = f" (always {config['adversary_label']!r})"
    teams = [f"team '{SHORT_TEAMS[t]}': {TEAMS[t]}{adversary if t == 'mixed' else ''}" for t in TEAMS]

    rows = [
        [SHORT_TEAMS[team], setting, _cell(c["answers_per_item"], 1, 2), *(_cell(c[m]) for m in METHODS),
         _cell(c["student_worker"])]
        for team in ("mixed", "honest")
        for c, setting in ((summary["aggregation"][team][s], s) for s in settings)
    ]  # fmt: skip
    first = Table(
        f"1. Aggregated-label accuracy (%) against FPB's labels on {_cell(summary['answered_items'], 1, 0)} answered "
        f"pool items ({seeds}, mean ± std)",
        ["team", "overlap", "answers/item", *METHODS.values(), "student worker alone"],
        rows,
        [
            *teams[:2],
            f"teacher alone on these items: {_cell(summary['teacher_on_answered'])} (simulated, "
            f"~{100 * config['teacher_accuracy']:.0f} % overall)",
            f"adaptive: {ADAPTIVE_START} answers, one more while they disagree, at most {ADAPTIVE_CAP}; the student "
            f"worker: '{config['student']}' on the vote of the answered items + the teacher's labels elsewhere, "
            f"{config['student_folds']}-fold cross-fitted",
        ],
    )

    pausing = summary["pausing"]
    horizon = min(p["horizon"] for p in pausing.values())
    second = Table(
        f"2. Pausing: the pause rule after every check answer, up to {horizon} check answers per trainer "
        f"({seeds} pooled; paused % as mean ± std over seeds)",
        [
            "profile",
            "trainers",
            "paused %",
            "median check answers to pause",
            "max",
            f"within {PAUSE_WITHIN}",
            "median answers (all) to pause",
        ],
        [
            [
                profile,
                str(p["trainers"]),
                _cell(p["share"]),
                _n(p["median_checks"]),
                _n(p["max_checks"]),
                f"{p['within']} of {p['trainers']}",
                _n(p["median_answers"]),
            ]
            for profile, p in pausing.items()
        ],
        [
            "check items: test-split items with known labels, 10 % of each trainer's answers (routing.gold_share); "
            "the rule: terakoya.quality.gold.pause_reason with the default QualitySettings",
            "median/max: over the paused trainers only",
        ],
    )

    third = Table(
        f"3. Student ('{config['student']}') test accuracy (%) at an equal budget of {config['budget']} answers "
        f"({seeds}, mean ± std)",
        ["team", "overlap", "items labelled", *(METHODS[m] for m in BUDGET_METHODS)],
        [
            [SHORT_TEAMS[team], setting, _cell(c["items"], 1, 0), *(_cell(c[m]) for m in BUDGET_METHODS)]
            for team in TEAMS
            for c, setting in ((summary["budget"][team][s], s) for s in settings)
        ],
        [
            *teams,
            f"teacher alone on the test split: {_cell(summary['teacher_on_test'])}",
            f"student on {config['budget']} true labels (every answer right, a ceiling): "
            f"{_cell(summary['gold_student'])}",
            "DS and MACE labels weighted by their posterior confidence; majority vote unweighted",
        ],
    )
    return [first, second, third]


def markdown(results: Mapping[str, Any]) -> str:
    parts = []
    for table in tables(results):
        parts += [f"### {table.title}", ""]
        parts.append("| " + " | ".join(table.header) + " |")
        parts.append("|" + "|".join("---" for _ in table.header) + "|")
        parts += ["| " + " | ".join(row) + " |" for row in table.rows]
        parts += ["", *(f"- {note}" for note in table.notes), ""]
    parts += ["### Targets", "", *(f"- {c['text']}" for c in results["checks"])]
    return "\n".join(parts) + "\n"


def plot(results: Mapping[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    settings = summary["settings"]
    xs = np.arange(len(settings))
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.6))

    def lines(ax: Any, part: str, teams: Sequence[str], methods: Sequence[str]) -> None:
        styles = {"mixed": "-", "honest": ":", "careful": "--"}
        for team in teams:
            for i, method in enumerate(methods):
                cells = [summary[part][team][s][method] for s in settings]
                ax.errorbar(xs + 0.03 * (i - len(methods) / 2), [100 * c["mean"] for c in cells],
                            yerr=[100 * c["std"] for c in cells], color=f"C{i}", linestyle=styles[team], marker="o",
                            capsize=2, label=f"{METHODS[method]} ({SHORT_TEAMS[team]})")  # fmt: skip
        ax.set_xticks(xs, settings)
        ax.set_xlabel("answers per item")
        ax.grid(alpha=0.3)

    ax = axes[0]
    lines(ax, "aggregation", ("mixed", "honest"), list(METHODS))
    ax.axhline(100 * summary["teacher_on_answered"]["mean"], color="grey", linestyle="-.", label="teacher alone")
    ax.set_ylabel("aggregated-label accuracy (%)")
    ax.set_title("1. aggregation, on the answered pool items", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))

    ax = axes[1]
    for profile, p in summary["pausing"].items():
        ax.plot(range(1, len(p["curve"]) + 1), [100 * v for v in p["curve"]], label=profile)
    ax.axvline(PAUSE_WITHIN, color="grey", linestyle="--")
    ax.set_xlabel("check answers given")
    ax.set_ylabel("trainers paused (%)")
    ax.set_title("2. the pause rule, by profile", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))

    ax = axes[2]
    lines(ax, "budget", list(TEAMS), list(BUDGET_METHODS))
    ax.axhline(100 * summary["teacher_on_test"]["mean"], color="grey", linestyle="-.", label="teacher alone")
    ax.axhline(100 * summary["gold_student"]["mean"], color="black", linestyle=":", label="true labels")
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title(f"3. the student at {results['config']['budget']} answers", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))

    fig.suptitle(f"Quality control on Financial PhraseBank — {results['config']['seeds']} seed(s), mean ± std",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def write(results: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "crowd.json", "markdown": folder / "crowd.md", "plot": folder / "crowd.png"}
    paths["json"].write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    paths["markdown"].write_text(markdown(results), encoding="utf-8")
    plot(results, paths["plot"])
    return paths


# ----------------------------------------------------------------------------- the command line


def parse_args(argv: Sequence[str] | None) -> tuple[Config, Path, bool]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a harness check on a sample (about 1.5 minutes)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3; --quick 2)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default bench/results/crowd)")
    parser.add_argument("--limit", type=int, default=None, help="a seeded sample of at most N sentences")
    parser.add_argument("--answered", type=int, default=None, help="pool items answered in table 1 (default 2000)")
    parser.add_argument("--budget", type=int, default=None, help="answers per student in table 3 (default 600)")
    parser.add_argument("--trainers", type=int, default=None, help="trainers per profile in table 2 (default 200)")
    parser.add_argument("--teacher-accuracy", type=float, default=None, help="the teacher's accuracy (default 0.78)")
    parser.add_argument("--adversary-label", default=None, help="what the team's adversary always answers")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else Config()
    overrides = {
        "seeds": args.seeds,
        "limit": args.limit,
        "answered": args.answered,
        "budget": args.budget,
        "trainers": args.trainers,
        "teacher_accuracy": args.teacher_accuracy,
        "adversary_label": args.adversary_label,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if config.seeds < 1 or config.answered < 1 or config.budget < 3 or config.trainers < 1:
        parser.error("--seeds, --answered and --trainers must be 1 or more, --budget 3 or more")
    out = args.out or RESULTS / ("crowd_quick" if args.quick else "crowd")
    return config, out, args.quick


def main(argv: Sequence[str] | None = None) -> int:
    config, out, quick = parse_args(argv)
    began = time.perf_counter()
    try:
        ds = datasets.load_fpb(config.limit)
    except datasets.DataMissing as exc:
        log(f"skipping the quality-control benchmark: data not found at {exc} (../shared/data is not part of the "
            "project)")  # fmt: skip
        return 0
    if quick:
        log("QUICK RUN (a harness check on a sample, not the benchmark)")
    log(f"{ds.title}: {len(ds.rows)} sentences {ds.sample_note}; {config}")
    try:
        results = run(ds.rows, list(ds.labels), config)
    except ValueError as exc:
        log(f"error: {exc}")
        return 2
    results["dataset"] = {"title": ds.title, "sample": ds.sample_note, "difficulty": ds.difficulty_counts()}
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["wall_s"] = time.perf_counter() - began
    print()
    print(markdown(results))
    paths = write(results, out)
    log(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}; wall time {results['wall_s']:.0f} s"
        + (" (QUICK RUN)" if quick else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
