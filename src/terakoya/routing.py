"""Routing: which items an expert should see, and which the teacher may keep.

One route run does three things in one transaction:

1. **gold**: ``routing.gold_share`` of the budget is drawn at random from test items that carry a
   gold label and that nobody has answered yet; they are queued with reason ``gold`` so that an
   expert's agreement with the recorded truth can be measured.
2. **routed**: the rest of the budget comes from the pool. With the ``terakoya`` strategy each
   eligible item gets a value (:func:`score_items`: teacher uncertainty plus teacher-student
   disagreement) and a batch is picked greedily, penalising items similar to those already picked
   (:func:`select_diverse`), so that one batch is not two hundred near-copies of one sentence.
   The ``random`` strategy draws a seeded uniform sample instead: the baseline to compare with.
3. **auto-accept**: pool items left out of the batch whose teacher confidence is known and at or
   above ``routing.auto_accept_threshold`` take the teacher's label (an :class:`AutoAccept` row).

A pool item is eligible when it has a current teacher suggestion (the newest teacher suggestion
that is not an error), no live answer, no open task (queued or leased) and no auto-accept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sqlalchemy import Row, insert, select
from sqlalchemy.orm import Session

from terakoya.errors import ConfigError, StateError
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, AutoAccept, Item, RouteRun, Suggestion, Task
from terakoya.storage.queries import current_suggestion_ids

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = [
    "OPEN_TASK_STATUSES",
    "STRATEGIES",
    "ItemScores",
    "RouteReport",
    "route",
    "score_items",
    "select_diverse",
    "text_vectors",
]

STRATEGIES = ("terakoya", "random")
OPEN_TASK_STATUSES = ("queued", "leased")

#: candidates kept for the diversity pass, as a multiple of the batch size
CANDIDATE_FACTOR = 5
#: rows per IN (...) list, well below every backend's parameter limit
_CHUNK = 500


@dataclass
class RouteReport:
    route_run_id: int
    strategy: str
    budget_items: int
    routed: int
    gold: int
    auto_accepted: int
    expert_minutes: float
    skipped_no_teacher: int
    #: pool items that could be routed when the run started
    eligible: int = 0
    #: plain-language notes, e.g. that the budget was larger than the eligible pool
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- scoring (pure)


@dataclass(frozen=True)
class ItemScores:
    """Per-item value and the parts it is made of (all arrays of length n)."""

    value: NDArray[np.float64]
    uncertainty: NDArray[np.float64]
    margin: NDArray[np.float64]  # top-1 minus top-2 teacher probability (NaN where confidence is unknown)
    entropy: NDArray[np.float64]  # teacher entropy / log(k), in [0, 1] (NaN where unknown)
    disagreement: NDArray[np.float64]
    js: NDArray[np.float64]  # Jensen-Shannon divergence teacher vs student, base 2, in [0, 1] (NaN: no student)
    argmax_differs: NDArray[np.float64]  # 1.0 where teacher and student pick different labels (NaN: no student)

    def components(self, i: int) -> dict[str, Any]:
        """The parts of item ``i`` as a JSON-safe dict (None for unknown)."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(float(x), 6)

        return {
            "value": num(self.value[i]),
            "uncertainty": num(self.uncertainty[i]),
            "margin": num(self.margin[i]),
            "entropy": num(self.entropy[i]),
            "disagreement": num(self.disagreement[i]),
            "js": num(self.js[i]),
            "argmax_differs": num(self.argmax_differs[i]),
        }


def _as_probabilities(raw: ArrayLike) -> NDArray[np.float64]:
    p = np.asarray(raw, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be a 2-D array (items x labels), got shape {p.shape}")
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    sums = p.sum(axis=1, keepdims=True)
    k = p.shape[1]
    # a row with no mass says nothing: read it as uniform
    return np.where(sums > 0, p / np.where(sums > 0, sums, 1.0), 1.0 / max(k, 1))


def score_items(
    teacher: ArrayLike,
    *,
    confidence_known: ArrayLike | None = None,
    student: ArrayLike | None = None,
    has_student: ArrayLike | None = None,
    uncertainty_weight: float = 1.0,
    disagreement_weight: float = 1.0,
) -> ItemScores:
    """Value of asking an expert about each item.

    ``teacher`` and ``student`` are (n, k) probability arrays over the same label order.
    Uncertainty is the mean of ``1 - margin`` and the normalised entropy of the teacher;
    an item whose teacher confidence is unknown counts as maximally uncertain (1.0).
    Disagreement is the mean of the Jensen-Shannon divergence (base 2) and whether the argmax
    labels differ; it is 0 where the item has no student suggestion.
    ``value = uncertainty_weight * uncertainty + disagreement_weight * disagreement``.
    """
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy as scipy_entropy

    t = _as_probabilities(teacher)
    n, k = t.shape
    known = np.ones(n, dtype=bool) if confidence_known is None else np.asarray(confidence_known, dtype=bool)
    if known.shape != (n,):
        raise ValueError(f"confidence_known must have one entry per item ({n}), got shape {known.shape}")

    if n == 0:
        empty = np.zeros(0, dtype=np.float64)
        return ItemScores(empty, empty, empty, empty, empty, empty, empty)

    if k == 0:
        known = np.zeros(n, dtype=bool)
    top2 = -np.sort(-np.hstack([t, np.zeros((n, 2))]), axis=1)[:, :2]
    margin = top2[:, 0] - top2[:, 1]
    ent = scipy_entropy(t, axis=1) / math.log(k) if k >= 2 else np.zeros(n)
    ent = np.clip(ent, 0.0, 1.0)
    uncertainty = np.where(known, 0.5 * (1.0 - margin) + 0.5 * ent, 1.0)
    margin = np.where(known, margin, np.nan)
    ent = np.where(known, ent, np.nan)

    js = np.full(n, np.nan)
    differs = np.full(n, np.nan)
    disagreement = np.zeros(n)
    if student is not None:
        s = _as_probabilities(student)
        if s.shape != t.shape:
            raise ValueError(f"student probabilities have shape {s.shape}, teacher {t.shape}; they must match")
        present = np.ones(n, dtype=bool) if has_student is None else np.asarray(has_student, dtype=bool)
        if present.any():
            d = np.asarray(jensenshannon(t[present], s[present], base=2, axis=1), dtype=np.float64) ** 2
            js[present] = np.clip(np.nan_to_num(d), 0.0, 1.0)
            differs[present] = (t[present].argmax(axis=1) != s[present].argmax(axis=1)).astype(np.float64)
            disagreement[present] = 0.5 * js[present] + 0.5 * differs[present]

    value = uncertainty_weight * uncertainty + disagreement_weight * disagreement
    return ItemScores(
        value=value.astype(np.float64),
        uncertainty=uncertainty.astype(np.float64),
        margin=margin.astype(np.float64),
        entropy=ent.astype(np.float64),
        disagreement=disagreement,
        js=js,
        argmax_differs=differs,
    )


# ----------------------------------------------------------------------------- diversity (pure)


def text_vectors(texts: Sequence[str]) -> csr_matrix:
    """Hashed word 1-2-gram and character 2-4-gram TF-IDF vectors, one L2-normalised row per text.

    Character n-grams make this work for languages written without spaces (Japanese).
    """
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    words = HashingVectorizer(
        analyzer="word", ngram_range=(1, 2), n_features=2**18, alternate_sign=False, norm=None
    ).transform(texts)
    chars = HashingVectorizer(
        analyzer="char_wb", ngram_range=(2, 4), n_features=2**18, alternate_sign=False, norm=None
    ).transform(texts)
    counts = hstack([words, chars]).tocsr()
    return TfidfTransformer(norm="l2", sublinear_tf=True).fit_transform(counts).tocsr()


def select_diverse(
    values: ArrayLike, vectors: csr_matrix | None, k: int, *, diversity_weight: float
) -> tuple[list[int], NDArray[np.float64]]:
    """Greedy maximal-marginal-relevance pick of ``k`` rows.

    Each step takes the row with the highest ``value - diversity_weight * max cosine similarity to
    the rows already picked``. Returns the picked row indices in pick order and, for every row,
    its redundancy (max similarity to the rows picked before it; 0 for the first).
    Ties go to the lower index, so callers order rows to break ties as they wish.
    """
    vals = np.asarray(values, dtype=np.float64)
    m = vals.shape[0]
    k = min(k, m)
    redundancy = np.zeros(m)
    if k <= 0:
        return [], redundancy
    if vectors is None or diversity_weight <= 0:
        order = np.argsort(-vals, kind="stable")[:k]
        return [int(i) for i in order], redundancy
    if vectors.shape[0] != m:
        raise ValueError(f"vectors have {vectors.shape[0]} rows for {m} values")
    # rows of the transposed matrix: one pick's similarities touch only the candidates sharing its n-grams
    columns = vectors.T.tocsr()
    max_sim = np.zeros(m)
    taken = np.zeros(m, dtype=bool)
    picked: list[int] = []
    for _ in range(k):
        adjusted = vals - diversity_weight * max_sim
        adjusted[taken] = -np.inf
        j = int(np.argmax(adjusted))
        picked.append(j)
        redundancy[j] = max_sim[j]
        taken[j] = True
        sims = np.asarray((vectors[j] @ columns).toarray()).ravel()
        np.maximum(max_sim, sims, out=max_sim)
    return picked, redundancy


# ----------------------------------------------------------------------------- the run


def _budget(settings: Settings, budget_items: int | None, budget_minutes: float | None) -> int:
    if (budget_items is None) == (budget_minutes is None):
        raise ConfigError(
            "give exactly one budget: the number of items an expert should see (--budget N) "
            "or the expert minutes to spend (--minutes M)"
        )
    if budget_items is not None:
        if budget_items < 1:
            raise ConfigError(f"the budget must be at least 1 item (got {budget_items}); pass --budget 1 or more")
        return int(budget_items)
    assert budget_minutes is not None
    per_item = settings.routing.seconds_per_item
    if not math.isfinite(budget_minutes) or budget_minutes <= 0:
        raise ConfigError(f"the budget must be a positive number of minutes (got {budget_minutes}); pass --minutes 30")
    items = math.floor(budget_minutes * 60.0 / per_item + 1e-9)
    if items < 1:
        raise ConfigError(
            f"{budget_minutes:g} expert minutes is less than one item at routing.seconds_per_item = {per_item:g} s; "
            "pass more --minutes or lower routing.seconds_per_item"
        )
    return items


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _latest(s: Session, project_id: int, agent_kind: str) -> dict[int, Row[Any]]:
    """item id -> the newest non-error suggestion of ``agent_kind`` for pool items of the project."""
    newest = current_suggestion_ids(project_id, agent_kind, split="pool").subquery()
    rows = s.execute(
        select(
            Suggestion.item_id,
            Suggestion.id,
            Suggestion.probabilities,
            Suggestion.label,
            Suggestion.confidence,
            Suggestion.confidence_known,
        ).join(newest, Suggestion.id == newest.c.sid)
    ).all()
    return {row.item_id: row for row in rows}


def _blocked_items(s: Session, project_id: int) -> set[int]:
    """Items with a live answer, an open task or an auto-accept: not to be routed again."""
    answered = s.scalars(
        select(Answer.item_id)
        .join(Item, Item.id == Answer.item_id)
        .where(Item.project_id == project_id, Answer.superseded.is_(False))
        .distinct()
    ).all()
    queued = s.scalars(
        select(Task.item_id).where(Task.project_id == project_id, Task.status.in_(OPEN_TASK_STATUSES)).distinct()
    ).all()
    accepted = s.scalars(
        select(AutoAccept.item_id).join(Item, Item.id == AutoAccept.item_id).where(Item.project_id == project_id)
    ).all()
    return {*answered, *queued, *accepted}


def _matrix(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> NDArray[np.float64]:
    out = np.zeros((len(rows), len(labels)))
    for i, probs in enumerate(rows):
        for j, name in enumerate(labels):
            value = (probs or {}).get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[i, j] = float(value)
    return out


def _texts(s: Session, ids: Sequence[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(ids):
        found.update(
            (item_id, text) for item_id, text in s.execute(select(Item.id, Item.text).where(Item.id.in_(chunk)))
        )
    return found


def route(
    db: Database,
    project_id: int,
    settings: Settings,
    *,
    budget_items: int | None = None,
    budget_minutes: float | None = None,
    strategy: str | None = None,
    seed: int | None = None,
) -> RouteReport:
    """Queue the most useful items for experts, add gold checks, auto-accept confident ones."""
    cfg = settings.routing
    budget = _budget(settings, budget_items, budget_minutes)
    strategy = strategy or cfg.strategy
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"unknown routing strategy {strategy!r}; use one of: {', '.join(STRATEGIES)} "
            "(--strategy or routing.strategy)"
        )
    seed = cfg.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    notes: list[str] = []

    with db.session() as s:
        teacher = _latest(s, project_id, "teacher")
        if not teacher:
            raise StateError("no teacher labels yet; run `terakoya teach` first")
        blocked = _blocked_items(s, project_id)
        pool_ids = s.scalars(select(Item.id).where(Item.project_id == project_id, Item.split == "pool")).all()
        skipped_no_teacher = sum(1 for i in pool_ids if i not in teacher and i not in blocked)
        eligible = sorted(i for i in teacher if i not in blocked)

        # ---- gold from the test split
        gold_target = round(budget * cfg.gold_share)
        gold_ids: list[int] = []
        if gold_target > 0:
            test_ids = sorted(
                s.scalars(
                    select(Item.id).where(
                        Item.project_id == project_id, Item.split == "test", Item.gold_label.is_not(None)
                    )
                ).all()
            )
            open_gold = [i for i in test_ids if i not in blocked]
            take = min(gold_target, len(open_gold))
            if take:
                gold_ids = [open_gold[int(i)] for i in rng.choice(len(open_gold), size=take, replace=False)]
            if take < gold_target:
                notes.append(
                    f"only {take} unanswered gold items were left in the test split (wanted {gold_target}); "
                    "the rest of the budget went to the pool"
                )

        # ---- the pool batch
        pool_target = budget - len(gold_ids)
        labels = settings.label_names or sorted({str(k) for row in teacher.values() for k in (row.probabilities or {})})
        student = _latest(s, project_id, "student")
        t_rows = [teacher[i] for i in eligible]
        t_probs = _matrix([r.probabilities for r in t_rows], labels)
        known = np.array([bool(r.confidence_known) and r.confidence is not None for r in t_rows], dtype=bool)
        has_student = np.array([i in student for i in eligible], dtype=bool)
        s_probs = _matrix([student[i].probabilities if i in student else {} for i in eligible], labels)
        scores = score_items(
            t_probs,
            confidence_known=known,
            student=s_probs if has_student.any() else None,
            has_student=has_student,
            uncertainty_weight=cfg.uncertainty_weight,
            disagreement_weight=cfg.disagreement_weight,
        )

        n_pick = min(pool_target, len(eligible))
        if n_pick < pool_target:
            notes.append(
                f"the budget asked for {pool_target} pool items but only {len(eligible)} are eligible "
                "(teacher-labelled, not answered, not queued, not auto-accepted); all of them were routed"
            )
        picked: list[int]  # positions in `eligible`
        mmr_score = scores.value.copy()
        redundancy = np.zeros(len(eligible))
        if strategy == "random":
            picked = [int(i) for i in rng.choice(len(eligible), size=n_pick, replace=False)] if n_pick else []
        else:
            # seeded tie-break, then highest value first; keep the top candidates for the diversity pass
            shuffle = rng.permutation(len(eligible))
            order = shuffle[np.argsort(-scores.value[shuffle], kind="stable")]
            cand = order[: min(len(order), max(n_pick * CANDIDATE_FACTOR, n_pick))]
            vectors = None
            if n_pick > 1 and cfg.diversity_weight > 0:
                texts = _texts(s, [eligible[int(c)] for c in cand])
                vectors = text_vectors([texts[eligible[int(c)]] for c in cand])
            local, red = select_diverse(scores.value[cand], vectors, n_pick, diversity_weight=cfg.diversity_weight)
            picked = [int(cand[j]) for j in local]
            redundancy[cand] = red
            mmr_score = scores.value - cfg.diversity_weight * redundancy

        # ---- write: the run, its tasks, the auto-accepts
        run = RouteRun(
            project_id=project_id,
            strategy=strategy,
            budget_items=budget,
            params={
                "budget_items": budget_items,
                "budget_minutes": budget_minutes,
                "seconds_per_item": cfg.seconds_per_item,
                "seed": seed,
                "gold_share": cfg.gold_share,
                "auto_accept_threshold": cfg.auto_accept_threshold,
                "uncertainty_weight": cfg.uncertainty_weight,
                "disagreement_weight": cfg.disagreement_weight,
                "diversity_weight": cfg.diversity_weight,
                "eligible": len(eligible),
                "skipped_no_teacher": skipped_no_teacher,
                "labels": list(labels),
                "notes": notes,
            },
        )
        s.add(run)
        s.flush()

        reason = "random" if strategy == "random" else "routed"
        queue: list[dict[str, Any]] = []
        for pos in picked:
            comps = scores.components(pos)
            comps["redundancy"] = round(float(redundancy[pos]), 6)
            comps["confidence"] = t_rows[pos].confidence if known[pos] else None
            comps["suggestion_id"] = t_rows[pos].id
            queue.append(
                {"item_id": eligible[pos], "reason": reason, "score": float(mmr_score[pos]), "components": comps}
            )
        # gold checks are mixed in at seeded random places so that they look like any other task
        for item_id in gold_ids:
            at = int(rng.integers(0, len(queue) + 1))
            queue.insert(at, {"item_id": item_id, "reason": "gold", "score": 0.0, "components": {"gold": True}})
        if queue:
            s.execute(
                insert(Task),
                [
                    {
                        "project_id": project_id,
                        "route_run_id": run.id,
                        "kind": "label",
                        "status": "queued",
                        "priority": rank,
                        **task,
                    }
                    for rank, task in enumerate(queue)
                ],
            )

        routed_set = {eligible[p] for p in picked}
        threshold = cfg.auto_accept_threshold
        accepts: list[dict[str, Any]] = []
        for pos, item_id in enumerate(eligible):
            row = t_rows[pos]
            if item_id in routed_set or not known[pos] or float(row.confidence) < threshold:
                continue
            label = row.label if row.label is not None else (labels[int(t_probs[pos].argmax())] if labels else None)
            if label is None:
                continue
            accepts.append(
                {
                    "item_id": item_id,
                    "suggestion_id": row.id,
                    "route_run_id": run.id,
                    "label": label,
                    "confidence": float(row.confidence),
                }
            )
        if accepts:
            s.execute(insert(AutoAccept), accepts)

        run.routed = len(picked)
        run.gold = len(gold_ids)
        run.auto_accepted = len(accepts)
        run_id = run.id

    return RouteReport(
        route_run_id=run_id,
        strategy=strategy,
        budget_items=budget,
        routed=len(picked),
        gold=len(gold_ids),
        auto_accepted=len(accepts),
        expert_minutes=(len(picked) + len(gold_ids)) * cfg.seconds_per_item / 60.0,
        skipped_no_teacher=skipped_no_teacher,
        eligible=len(eligible),
        notes=notes,
    )
