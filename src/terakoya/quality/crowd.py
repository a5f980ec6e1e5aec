"""Label aggregation through crowd-kit: several people's answers (and, if wanted, models' labels) -> one label
per item, a posterior for it, and an estimate of how reliable each answerer is.

Every method eats one long table of ``(item, worker, label)`` answers, crowd-kit's contract; the models (the
teacher, the student) can take part as workers with their own estimated reliability. The methods (:data:`METHODS`):

- ``majority``: the house rule, :func:`terakoya.quality.aggregate.majority` (``majority.v1``), applied to each
  item's answers; its confidence is the winning label's vote share and a worker's reliability is its agreement
  with the aggregate. Needs neither crowd-kit nor pandas.
- ``dawid_skene``: ``crowdkit.aggregation.DawidSkene`` (one confusion matrix per worker, fitted by EM from a
  majority-vote start; deterministic). Reliability: the matrix's diagonal (per-label recall).
- ``mace``: ``crowdkit.aggregation.MACE`` (each worker either knows the label or spams from its own label
  distribution; variational Bayes, seeded by ``seed``). Reliability: P(knows) + P(spams) * P(spam label = c).

GLAD is left out: in crowd-kit 1.4.2 its stopping rule (``Q - last_Q < tol``) ends EM after two iterations
whenever the second one dips, which on 3-class data with a spammer and an adversary happened in 2 of 6 seeds
(accuracy ~0.80 instead of ~0.90, barely above majority vote), and it is slow (~0.3 s per EM iteration on
900 answers). MACE in crowd-kit 1.4.2 needs two work-arounds, both applied here: it mixes up labels (and workers)
unless their first-appearance order is also their sorted order, so every worker and label is handed to it as an
integer code in first-appearance order; and its ``n_restarts`` restarts all start from the same ``random_state``,
so they are identical and one is run.

Rules:

- **Only items with at least one human answer get an aggregate label.** A model alone does not make a
  target; a model's labels on items no person answered are left out of the fit too (there they would only
  teach the aggregator that the model agrees with itself).
- ``answers`` are in the order they were given, oldest first (as
  :func:`terakoya.quality.aggregate.expert_answer_rows` yields them): that order breaks majority ties, the newest
  answer winning as in ``majority.v1``. Model labels count as older than every human answer, so a tie between a
  person and a model goes to the person. An exact tie in a posterior is broken the same way, among the tied labels.
- Every label, human or model, must be one of ``classes`` (ValueError otherwise); a model name may not also be
  a human worker's name.
- The same input and ``seed`` give the same result.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from terakoya.quality.aggregate import AGGREGATOR, majority, top_labels

__all__ = ["METHODS", "CrowdResult", "WorkerReliability", "aggregate"]

#: the aggregation methods :func:`aggregate` knows
METHODS = ("majority", "dawid_skene", "mace")

#: two posteriors closer than this are a tie
_TIE = 1e-9


@dataclass(frozen=True)
class WorkerReliability:
    """How far one worker (a person or a model) can be trusted, as the fitted model sees it.

    ``accuracy``: the estimated chance that its answer is right, over the items it answered; ``recall``: class ->
    the estimated chance it answers that class when that class is right (classes none of its items belong to
    are left out); ``answers``: how many answers it gave to the items aggregated; ``model``: a model, not a person.
    """

    accuracy: float
    recall: dict[str, float]
    answers: int
    model: bool = False


@dataclass(frozen=True)
class CrowdResult:
    """What :func:`aggregate` found. ``version`` is the aggregator's name recorded with training labels."""

    method: str
    version: str
    #: item -> its aggregate label (items with at least one human answer only)
    labels: dict[int, str]
    #: item -> the posterior probability of that label (majority: its vote share)
    confidence: dict[int, float]
    #: item -> class -> probability, every class present, summing to 1
    probabilities: dict[int, dict[str, float]]
    #: worker (person or model) -> its estimated reliability
    reliability: dict[str, WorkerReliability]


@dataclass(frozen=True)
class _Answer:
    order: int  # models first, then people in the order given: the majority tie-break
    item: int
    worker: str
    label: str
    model: bool


def aggregate(
    answers: Sequence[tuple[int, str, str]],
    classes: Sequence[str],
    method: str = "dawid_skene",
    *,
    models: Mapping[str, Mapping[int, str]] | None = None,
    seed: int = 0,
) -> CrowdResult:
    """Aggregate ``(item id, worker, label)`` answers from people, oldest first, into one label per item.

    ``models``: model worker name (``"teacher"``, ``"student"``) -> item -> its label; the models join as workers
    with their own estimated reliability (a teacher that labels every item lets Dawid–Skene learn its confusion
    matrix on the items people answered too). Only items with at least one human answer get a label; a model's
    labels elsewhere are ignored. ``seed`` seeds the methods that draw random numbers (MACE).
    """
    if method not in METHODS:
        raise ValueError(f"unknown aggregation method {method!r}; the methods are: {', '.join(METHODS)}")
    classes = _check_classes(classes)
    rows = _rows(answers, classes, models or {})
    if not rows:
        return CrowdResult(method, _version(method), {}, {}, {}, {})
    if method == "majority":
        return _majority(rows, classes)
    return _crowdkit(rows, classes, method, seed)


def _check_classes(classes: Sequence[str]) -> list[str]:
    out = [str(c) for c in classes]
    if not out:
        raise ValueError("aggregate() needs the project's classes; got none")
    if len(set(out)) != len(out):
        raise ValueError(f"classes repeat: {out}")
    return out


def _rows(
    answers: Sequence[tuple[int, str, str]], classes: Sequence[str], models: Mapping[str, Mapping[int, str]]
) -> list[_Answer]:
    """Model answers (on items people answered) first, then human answers in the order given; labels checked."""
    known = set(classes)
    humans = {str(worker) for _, worker, _ in answers}
    for name in models:
        if name in humans:
            raise ValueError(f"model worker {name!r} has the name of a human worker; give the model another name")
    for item, worker, label in answers:
        if label not in known:
            raise ValueError(
                f"answer by {worker!r} on item {item} has label {label!r}, which is not one of the classes "
                f"{list(classes)}; drop the answer or declare the class"
            )
    for name, labels in models.items():
        for item, label in labels.items():
            if label not in known:
                raise ValueError(
                    f"model {name!r} labelled item {item} {label!r}, which is not one of the classes {list(classes)}; "
                    "drop that label or declare the class"
                )
    items = list(dict.fromkeys(int(item) for item, _, _ in answers))
    rows: list[_Answer] = []
    for name, labels in models.items():
        for item in items:
            if item in labels:
                rows.append(_Answer(len(rows), item, str(name), labels[item], True))
    for item, worker, label in answers:
        rows.append(_Answer(len(rows), int(item), str(worker), label, False))
    return rows


def _version(method: str) -> str:
    if method == "majority":
        return AGGREGATOR
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{method}.crowdkit-{version('crowd-kit')}"
    except PackageNotFoundError:
        return f"{method}.crowdkit"


def _by_item(rows: Sequence[_Answer]) -> dict[int, list[_Answer]]:
    """Item -> its answers in order, items in the order people first answered them."""
    out: dict[int, list[_Answer]] = {r.item: [] for r in rows if not r.model}
    for row in rows:
        out[row.item].append(row)
    return out


def _pick(probabilities: Mapping[str, float], item_rows: Sequence[_Answer], classes: Sequence[str]) -> str:
    """The most probable label; an exact tie goes by the majority rule among the tied labels' answers."""
    best = max(probabilities.values())
    tied = [c for c in classes if probabilities[c] >= best - _TIE]
    if len(tied) > 1:
        ranked = top_labels([(r.order, r.label) for r in item_rows if r.label in tied])
        if ranked:
            return ranked[0]
    return tied[0]


def _majority(rows: Sequence[_Answer], classes: Sequence[str]) -> CrowdResult:
    labels: dict[int, str] = {}
    probabilities: dict[int, dict[str, float]] = {}
    for item, item_rows in _by_item(rows).items():
        counts = Counter(r.label for r in item_rows)
        labels[item] = majority([(r.order, r.label) for r in item_rows])
        probabilities[item] = {c: counts[c] / len(item_rows) for c in classes}
    confidence = {item: probabilities[item][label] for item, label in labels.items()}
    # agreement with the aggregate: recall(c) = share of the worker's answers on items aggregated to c that say c
    reliability: dict[str, WorkerReliability] = {}
    for worker, worker_rows in _by_worker(rows).items():
        recall: dict[str, float] = {}
        for c in classes:
            on_c = [r for r in worker_rows if labels[r.item] == c]
            if on_c:
                recall[c] = sum(r.label == c for r in on_c) / len(on_c)
        accuracy = sum(r.label == labels[r.item] for r in worker_rows) / len(worker_rows)
        reliability[worker] = WorkerReliability(accuracy, recall, len(worker_rows), worker_rows[0].model)
    return CrowdResult("majority", AGGREGATOR, labels, confidence, probabilities, reliability)


def _by_worker(rows: Sequence[_Answer]) -> dict[str, list[_Answer]]:
    out: dict[str, list[_Answer]] = {}
    for row in rows:
        out.setdefault(row.worker, []).append(row)
    return out


def _crowdkit(rows: Sequence[_Answer], classes: Sequence[str], method: str, seed: int) -> CrowdResult:
    try:
        import pandas as pd  # type: ignore[import-untyped, unused-ignore]
        from crowdkit.aggregation import MACE, DawidSkene
    except ImportError as exc:
        from terakoya.errors import MissingDependency

        raise MissingDependency.for_extra(exc.name or "crowd-kit", "quality", f"aggregation method {method!r}") from exc

    # integer codes in first-appearance order (MACE in crowd-kit 1.4.2 needs appearance order == sorted order)
    workers = list(dict.fromkeys(r.worker for r in rows))
    seen = list(dict.fromkeys(r.label for r in rows))
    worker_code = {w: i for i, w in enumerate(workers)}
    label_code = {label: i for i, label in enumerate(seen)}
    frame = pd.DataFrame(
        {
            "task": [r.item for r in rows],
            "worker": [worker_code[r.worker] for r in rows],
            "label": [label_code[r.label] for r in rows],
        }
    )
    with warnings.catch_warnings():
        # crowd-kit 1.4.2 under pandas 3: thousands of "inplace/copy keyword is deprecated" warnings per fit
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"crowdkit\b")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"crowdkit\b")
        if method == "dawid_skene":
            model: Any = DawidSkene(n_iter=100, tol=1e-5)
        else:
            model = MACE(n_restarts=1, n_iter=50, method="vb", random_state=seed)
        probas = model.fit_predict_proba(frame)

    by_item = _by_item(rows)
    probabilities = _probabilities(probas, seen, classes)
    labels = {item: _pick(probabilities[item], by_item[item], classes) for item in by_item}
    confidence = {item: probabilities[item][label] for item, label in labels.items()}

    reliability: dict[str, WorkerReliability] = {}
    for worker, worker_rows in _by_worker(rows).items():
        code = worker_code[worker]
        if method == "dawid_skene":
            recall_all = _ds_recall(model.errors_, code, label_code, classes)
        else:
            recall_all = _mace_recall(model, code, label_code, classes)
        # the worker's items' posterior mass per class weights its per-class recall into one accuracy
        mass = {c: sum(probabilities[r.item][c] for r in worker_rows) for c in classes}
        total = sum(mass.values())
        accuracy = sum(recall_all[c] * mass[c] for c in classes) / total
        recall = {c: recall_all[c] for c in classes if mass[c] > 1e-9 * total}
        reliability[worker] = WorkerReliability(_clip(accuracy), recall, len(worker_rows), worker_rows[0].model)
    return CrowdResult(method, _version(method), labels, confidence, probabilities, reliability)


def _probabilities(probas: Any, seen: Sequence[str], classes: Sequence[str]) -> dict[int, dict[str, float]]:
    """crowd-kit's task x label-code frame -> item -> class -> probability (every class, renormalised)."""
    out: dict[int, dict[str, float]] = {}
    columns = [int(code) for code in probas.columns]
    for item, values in zip(probas.index, probas.to_numpy(dtype=float), strict=True):
        row = dict.fromkeys(classes, 0.0)
        for code, value in zip(columns, values, strict=True):
            row[seen[code]] = max(0.0, float(value))
        total = sum(row.values())
        out[int(item)] = {c: v / total for c, v in row.items()}
    return out


def _ds_recall(errors: Any, code: int, label_code: Mapping[str, int], classes: Sequence[str]) -> dict[str, float]:
    """Dawid–Skene: P(worker says c | truth c), the diagonal of its confusion matrix (0 for a label it never gave)."""
    out: dict[str, float] = {}
    for c in classes:
        lc = label_code.get(c)
        value = 0.0
        if lc is not None and (code, lc) in errors.index and lc in errors.columns:
            value = float(errors.loc[(code, lc), lc])
        out[c] = _clip(value)
    return out


def _mace_recall(model: Any, code: int, label_code: Mapping[str, int], classes: Sequence[str]) -> dict[str, float]:
    """MACE: P(worker says c | truth c) = P(knows) + P(spams) * P(its spam label is c)."""
    spamming, thetas = model.spamming_, model.thetas_
    knows, spams = float(spamming[code, 1]), float(spamming[code, 0])
    out: dict[str, float] = {}
    for c in classes:
        lc = label_code.get(c)
        out[c] = _clip(knows + spams * float(thetas[code, lc])) if lc is not None else _clip(knows)
    return out


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))
