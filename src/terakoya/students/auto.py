"""Choosing a student: each candidate's k-fold cross-validated accuracy on the expert-labelled rows.

``student.kind = "auto"`` is a choice among the registered students, not a student of its own: the
training stage calls :func:`choose_student` on its training set, then trains the winner as usual.

    >>> name, scores = choose_student(texts, targets, weights, classes, eval_mask=is_expert)
    >>> scores["linear.v1"].accuracy
    0.81

Only the rows where ``eval_mask`` is true (the experts' answers) are scored; the other rows (the
teacher's labels) are in every training fold. A candidate whose estimated time for the folds and one
final fit passes ``time_limit_s`` is skipped before it starts (fine-tuning is slow on a CPU: it is
tried where the data is small or a GPU is present), and so is one whose libraries are missing or that
does not suit the texts (the English MiniLM fine-tuned on Japanese).
:func:`student_params_for` gives each kind the hyper-parameters a project implies (its language picks
the embedding encoder; the project folder holds the embedding cache).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from terakoya.errors import DataError, MissingDependency
from terakoya.students.embed import encoder_for_language

__all__ = ["DEFAULT_CANDIDATES", "CandidateScore", "choose_student", "student_params_for"]

log = logging.getLogger(__name__)

#: the students ``choose_student`` compares by default, cheapest first (ties go to the earlier one)
DEFAULT_CANDIDATES = ("linear", "embed", "finetune")


def student_params_for(name: str, *, language: str, project_dir: Path | None, features: str = "auto") -> dict[str, Any]:
    """The hyper-parameters a project implies for student kind ``name`` (the others keep their defaults).

    embed: the encoder for ``language`` (``multilingual`` for any language but English; for English
    ``auto``, which still picks the multilingual encoder when the texts are in a non-Latin script) and
    the embedding cache under ``project_dir/cache/embeddings`` (none when ``project_dir`` is None);
    ``features`` other than "auto" (the project's ``student.features``) names the sources instead.
    """
    from terakoya.students import resolve

    full = resolve(name)
    if full.startswith("embed."):
        params: dict[str, Any] = {
            "model": "multilingual" if encoder_for_language(language) == "multilingual" else "auto"
        }
        if features != "auto":
            params["model"] = features  # the project's ``student.features``
        if project_dir is not None:
            params["cache_dir"] = str(Path(project_dir) / "cache" / "embeddings")
        return params
    return {}


@dataclass
class CandidateScore:
    """How one candidate did in :func:`choose_student`.

    accuracy: share of the scored rows whose out-of-fold prediction is their target's top label (None
    when the candidate was skipped); cross_entropy: mean cross-entropy of those predictions against the
    targets; seconds: time spent on its folds; estimated_seconds: the estimate that decided whether to
    try it; skipped: why it was not tried (None when it was).
    """

    name: str
    accuracy: float | None
    cross_entropy: float | None
    seconds: float
    estimated_seconds: float
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _folds(labels: np.ndarray[Any, Any], folds: int, seed: int) -> list[np.ndarray[Any, Any]]:
    """Test indices (into ``labels``) of each fold: stratified when every label has ``folds`` rows."""
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = np.bincount(labels)
    splitter: Any
    if counts[counts > 0].min() >= folds:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(labels)), labels)]


def _checked(
    n: int, classes: Sequence[str], targets: ArrayLike, weights: ArrayLike | None, eval_mask: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Targets, weights and the rows scored, as arrays, checked against ``n`` texts and ``classes``."""
    target = np.asarray(targets, dtype=np.float64)
    if target.shape != (n, len(classes)):
        raise DataError(
            f"targets has shape {target.shape}, expected ({n}, {len(classes)}): one row per text, one column per class"
        )
    weight = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    scored = np.ones(n, dtype=bool) if eval_mask is None else np.asarray(eval_mask, dtype=bool).reshape(-1)
    if len(weight) != n or len(scored) != n:
        raise DataError(f"weights and eval_mask need one value per text ({n})")
    return target, weight, scored


@dataclass(frozen=True)
class _Fit:
    """One candidate and what it is fitted on."""

    name: str
    hyper: dict[str, Any]
    classes: list[str]
    texts: list[str]
    target: NDArray[np.float64]
    weight: NDArray[np.float64]


def _score_candidate(
    fit: _Fit, fold_rows: list[NDArray[np.intp]], time_limit_s: float, language: str, scored_rows: int
) -> tuple[CandidateScore, bool]:
    """The candidate's cross-validated accuracy, or why it was skipped; True when its libraries are missing."""
    from terakoya.students import make_student

    name, n = fit.name, len(fit.texts)
    try:
        probe = make_student(name, classes=fit.classes, **fit.hyper)
        estimate = probe.estimate_fit_seconds(fit.texts, fits=len(fold_rows) + 1)
    except MissingDependency as exc:
        return CandidateScore(name, None, None, 0.0, 0.0, skipped=str(exc)), True
    if (why := probe.unsuited(fit.texts, language=language)) is not None:
        return CandidateScore(name, None, None, 0.0, estimate, skipped=why), False
    if estimate > time_limit_s:
        why = (
            f"estimated {estimate:.0f} s for {len(fold_rows)} folds and a final fit, "
            f"over the limit of {time_limit_s:.0f} s"
        )
        return CandidateScore(name, None, None, 0.0, estimate, skipped=why), False
    if not fold_rows:
        why = f"{scored_rows} scored rows are too few to cross-validate"
        return CandidateScore(name, None, None, 0.0, estimate, skipped=why), False
    started = time.perf_counter()
    proba = np.zeros((n, len(fit.classes)))
    try:
        for test in fold_rows:
            train = np.ones(n, dtype=bool)
            train[test] = False
            student = make_student(name, classes=fit.classes, **fit.hyper)
            student.fit([fit.texts[i] for i in np.flatnonzero(train)], fit.target[train], fit.weight[train])
            proba[test] = student.predict_proba([fit.texts[i] for i in test])
    except MissingDependency as exc:
        return CandidateScore(name, None, None, time.perf_counter() - started, estimate, skipped=str(exc)), True
    rows = np.concatenate(fold_rows)
    top = fit.target.argmax(axis=1)
    accuracy = float((proba[rows].argmax(axis=1) == top[rows]).mean())
    cross_entropy = float(-(fit.target[rows] * np.log(np.clip(proba[rows], 1e-12, 1.0))).sum(axis=1).mean())
    seconds = time.perf_counter() - started
    log.info("student %s: cross-validated accuracy %.4f in %.1f s", name, accuracy, seconds)
    return CandidateScore(name, accuracy, cross_entropy, seconds, estimate), False


def choose_student(
    texts: Sequence[str],
    targets: ArrayLike,
    weights: ArrayLike | None,
    classes: Sequence[str],
    *,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    time_limit_s: float = 600.0,
    folds: int = 3,
    seed: int = 0,
    language: str = "en",
    eval_mask: ArrayLike | None = None,
    project_dir: Path | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    features: str = "auto",
) -> tuple[str, dict[str, CandidateScore]]:
    """The candidate with the best cross-validated accuracy, and every candidate's score, by versioned name.

    ``targets`` is an ``(n, k)`` array of target distributions whose columns follow ``classes`` and
    ``weights`` the sample weights (None: all 1), as ``Student.fit`` takes them. Rows where
    ``eval_mask`` is true (default: all rows) are split into ``folds`` folds (stratified by their top
    label where every label has enough rows); each fold is predicted by a candidate trained on every
    other row. The highest accuracy wins; ties go to the earlier candidate. A candidate is skipped
    when its estimated time for the folds plus one final fit passes ``time_limit_s``, when it says it
    does not suit the texts (``Student.unsuited``: English MiniLM fine-tuned on Japanese), or when its
    libraries are missing. With fewer than two scored rows, or when every candidate is skipped, the
    first candidate that was not skipped for missing libraries is returned, unscored.

    ``params`` overrides the hyper-parameters of a candidate (by short or versioned name); the rest
    come from :func:`student_params_for` with ``language``, ``project_dir`` and ``features``.
    """
    from terakoya.students import resolve

    texts = list(texts)
    target, weight, scored = _checked(len(texts), classes, targets, weights, eval_mask)
    if not candidates:
        raise DataError("choose_student needs at least one candidate student kind")
    names = list(dict.fromkeys(resolve(c) for c in candidates))
    overrides = {resolve(k): dict(v) for k, v in (params or {}).items()}

    scored_rows = np.flatnonzero(scored)
    top = target.argmax(axis=1)
    k = min(int(folds), len(scored_rows))
    fold_rows = [scored_rows[test] for test in _folds(top[scored_rows], k, seed)] if k >= 2 else []

    scores: dict[str, CandidateScore] = {}
    unavailable: set[str] = set()
    for name in names:
        implied = student_params_for(name, language=language, project_dir=project_dir, features=features)
        hyper = {**implied, **overrides.get(name, {})}
        fit = _Fit(name, hyper, list(classes), texts, target, weight)
        scores[name], missing = _score_candidate(fit, fold_rows, time_limit_s, language, len(scored_rows))
        if missing:
            unavailable.add(name)

    tried = [s for s in scores.values() if s.accuracy is not None]
    if tried:
        best = max(tried, key=lambda s: s.accuracy or 0.0)  # max keeps the first of equal ones
        return best.name, scores
    usable = [name for name in names if name not in unavailable]
    return (usable[0] if usable else names[0]), scores
