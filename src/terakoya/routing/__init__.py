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
from sqlalchemy import Row, func, insert, select
from sqlalchemy.orm import Session

from terakoya.errors import ConfigError, StateError
from terakoya.kinds import TaskKind, kind_for
from terakoya.routing.trust import MIN_BLIND, TeacherTrust, measure_trust
from terakoya.settings import Settings
from terakoya.storage.db import Database
from terakoya.storage.models import Answer, AutoAccept, Item, RouteRun, Suggestion, Task
from terakoya.storage.queries import current_suggestion_ids
from terakoya.workqueue.assignments import OPEN_TASK_STATUSES

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

#: candidates kept for the diversity pass, as a multiple of the batch size
CANDIDATE_FACTOR = 5
#: fewer expert-answered pool items than this: the student share is picked by typicality (cold start)
COLD_START = 20
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
    #: pool items drawn at random and shown blind, to measure the teacher
    audit: int = 0
    teacher_trust: TeacherTrust | None = None
    #: generation projects: blind comparisons of the student's answer with the teacher's on test prompts
    evaluation: int = 0


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


def text_vectors(texts: Sequence[str], *, n_features: int = 2**18) -> csr_matrix:
    """Hashed word 1-2-gram and character 2-4-gram TF-IDF vectors, one L2-normalised row per text.

    Character n-grams make this work for languages written without spaces (Japanese).
    """
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    words = HashingVectorizer(
        analyzer="word", ngram_range=(1, 2), n_features=n_features, alternate_sign=False, norm=None
    ).transform(texts)
    chars = HashingVectorizer(
        analyzer="char_wb", ngram_range=(2, 4), n_features=n_features, alternate_sign=False, norm=None
    ).transform(texts)
    counts = hstack([words, chars]).tocsr()
    return TfidfTransformer(norm="l2", sublinear_tf=True).fit_transform(counts).tocsr()


def select_diverse(
    values: ArrayLike,
    vectors: csr_matrix | None,
    k: int,
    *,
    diversity_weight: float,
    groups: ArrayLike | None = None,
) -> tuple[list[int], NDArray[np.float64]]:
    """Greedy maximal-marginal-relevance pick of ``k`` rows.

    Each step takes the row with the highest ``value - diversity_weight * max cosine similarity to
    the rows already picked``. With ``groups`` (one class index per row) each group may fill at most
    ``ceil(k / groups present)`` places while other groups still have rows, so that minority classes
    are sampled too. Returns the picked row indices in pick order and, for every row, its redundancy
    (max similarity to the rows picked before it; 0 for the first). Ties go to the lower index.
    """
    vals = np.asarray(values, dtype=np.float64)
    m = vals.shape[0]
    k = min(k, m)
    redundancy = np.zeros(m)
    if k <= 0:
        return [], redundancy
    group = None if groups is None else np.asarray(groups, dtype=np.intp)
    quota = m
    if group is not None:
        if group.shape != (m,):
            raise ValueError(f"groups must have one entry per row ({m}), got shape {group.shape}")
        quota = math.ceil(k / max(1, len(np.unique(group))))
    use_vectors = vectors is not None and diversity_weight > 0
    if use_vectors and vectors is not None and vectors.shape[0] != m:
        raise ValueError(f"vectors have {vectors.shape[0]} rows for {m} values")
    # rows of the transposed matrix: one pick's similarities touch only the candidates sharing its n-grams
    columns = vectors.T.tocsr() if use_vectors and vectors is not None else None
    max_sim = np.zeros(m)
    taken = np.zeros(m, dtype=bool)
    filled: dict[int, int] = {}
    picked: list[int] = []
    for _ in range(k):
        adjusted = vals - diversity_weight * max_sim if use_vectors else vals.copy()
        adjusted[taken] = -np.inf
        if group is not None:
            full = np.array([filled.get(int(g), 0) >= quota for g in group])
            if (~full & ~taken).any():
                adjusted[full] = -np.inf
        j = int(np.argmax(adjusted))
        picked.append(j)
        redundancy[j] = max_sim[j]
        taken[j] = True
        if group is not None:
            filled[int(group[j])] = filled.get(int(group[j]), 0) + 1
        if columns is not None and vectors is not None:
            sims = np.asarray((vectors[j] @ columns).toarray()).ravel()
            np.maximum(max_sim, sims, out=max_sim)
    return picked, redundancy


def typical_picks(vectors: NDArray[np.float64], k: int, *, covered: int = 0, seed: int = 0) -> list[int]:
    """Cold start by representative items (TypiClust, Hacohen et al. 2022, arXiv 2202.02794).

    The rows are clustered into ``covered + k`` clusters; from the largest clusters, the most *typical*
    row of each (the inverse of its mean distance to its nearest neighbours inside the cluster) is
    picked. ``covered`` is how many items are already labelled (their clusters are assumed covered,
    so the picks go to the next largest). Returns up to ``k`` row indices.
    """
    from sklearn.cluster import MiniBatchKMeans

    m = vectors.shape[0]
    k = min(k, m)
    if k <= 0:
        return []
    n_clusters = min(m, covered + k)
    if n_clusters <= 1:
        return [0]
    model = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3, batch_size=1024)
    assign = model.fit_predict(vectors)
    sizes = np.bincount(assign, minlength=n_clusters)
    order = np.argsort(-sizes, kind="stable")
    picks: list[int] = []
    for c in order[covered:] if covered < len(order) else order:
        members = np.flatnonzero(assign == c)
        if len(members) == 0:
            continue
        if len(members) <= 2:
            picks.append(int(members[0]))
        else:
            sub = vectors[members]
            # distances to (at most 500 of) the cluster's members keep large clusters affordable
            ref = sub if len(members) <= 500 else sub[np.random.default_rng(seed).choice(len(members), 500, False)]
            dist = np.sqrt(np.maximum(2.0 - 2.0 * (sub @ ref.T), 0.0))
            nn = min(20, ref.shape[0] - 1)
            mean_nn = np.sort(dist, axis=1)[:, 1 : nn + 1].mean(axis=1)
            picks.append(int(members[int(np.argmin(mean_nn))]))
        if len(picks) >= k:
            break
    return picks


def dense_vectors(texts: Sequence[str], *, dims: int = 64, seed: int = 0) -> NDArray[np.float64]:
    """Dense, L2-normalised vectors of the texts (TF-IDF n-grams reduced by truncated SVD), for clustering."""
    from sklearn.decomposition import TruncatedSVD

    # a small hashing space keeps the randomized SVD fast (its work grows with the number of columns)
    sparse = text_vectors(texts, n_features=2**13)
    n_comp = max(1, min(dims, sparse.shape[0] - 1, sparse.shape[1] - 1))
    if sparse.shape[0] < 3:
        return np.asarray(sparse.toarray(), dtype=np.float64)
    dense = TruncatedSVD(n_components=n_comp, random_state=seed).fit_transform(sparse)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return np.asarray(dense / np.where(norms > 0, norms, 1.0), dtype=np.float64)


def student_margin(student: ArrayLike) -> NDArray[np.float64]:
    """1 - (top-1 minus top-2 probability) of the student: high where it is least sure."""
    s = _as_probabilities(student)
    top2 = -np.sort(-np.hstack([s, np.zeros((s.shape[0], 2))]), axis=1)[:, :2]
    return np.asarray(1.0 - (top2[:, 0] - top2[:, 1]), dtype=np.float64)


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


@dataclass
class _Candidates:
    """The eligible pool items of one route run, with what routing reads about them."""

    ids: list[int]
    teacher_rows: list[Row[Any]]
    teacher: NDArray[np.float64]
    known: NDArray[np.bool_]
    student: NDArray[np.float64]
    has_student: NDArray[np.bool_]
    scores: ItemScores


def _candidates(s: Session, project_id: int, eligible: list[int], teacher: dict[int, Row[Any]], labels: list[str],
                cfg: Any, kind: TaskKind) -> _Candidates:  # fmt: skip
    """What routing reads about the eligible items; the task kind values each (:meth:`TaskKind.route_value`)."""
    student = _latest(s, project_id, "student")
    rows = [teacher[i] for i in eligible]
    t_probs = _matrix([r.probabilities for r in rows], labels)
    known = np.array([bool(r.confidence_known) and r.confidence is not None for r in rows], dtype=bool)
    has_student = np.array([i in student for i in eligible], dtype=bool)
    s_probs = _matrix([student[i].probabilities if i in student else {} for i in eligible], labels)
    scores = kind.route_value(t_probs, known, s_probs if has_student.any() else None, has_student, cfg)
    return _Candidates(eligible, rows, t_probs, known, s_probs, has_student, scores)


def _pick_by_value(
    s: Session, c: _Candidates, values: NDArray[np.float64], n: int, free: NDArray[np.bool_], *, diversity: float,
    groups: NDArray[np.intp] | None, rng: np.random.Generator,
) -> tuple[list[int], NDArray[np.float64]]:  # fmt: skip
    """``n`` positions among the ``free`` candidates: highest value first, diverse, class quotas by ``groups``."""
    positions = np.flatnonzero(free)
    if n <= 0 or len(positions) == 0:
        return [], np.zeros(len(c.ids))
    shuffle = rng.permutation(len(positions))
    order = positions[shuffle[np.argsort(-values[positions][shuffle], kind="stable")]]
    cand = order[: min(len(order), max(n * CANDIDATE_FACTOR, n))]
    vectors = None
    if n > 1 and diversity > 0:
        texts = _texts(s, [c.ids[int(p)] for p in cand])
        vectors = text_vectors([texts[c.ids[int(p)]] for p in cand])
    local, red = select_diverse(
        values[cand], vectors, n, diversity_weight=diversity, groups=None if groups is None else groups[cand]
    )
    redundancy = np.zeros(len(c.ids))
    redundancy[cand] = red
    return [int(cand[j]) for j in local], redundancy


def _expert_pool_items(s: Session, project_id: int) -> int:
    return len(
        set(
            s.scalars(
                select(Answer.item_id)
                .join(Item, Item.id == Answer.item_id)
                .where(Item.project_id == project_id, Item.split == "pool", Answer.superseded.is_(False))
            ).all()
        )
    )


def audits_needed(s: Session, project_id: int, settings: Settings) -> int:
    """How many more pool items drawn at random (audit or random tasks, answered or still queued) the teacher
    must be checked on before its signals steer routing: enough to measure trust (:data:`MIN_BLIND`; not when
    ``routing.trust_teacher`` decides it) and to re-calibrate it (``MIN_CORRECTION_PER_LABEL`` per label, with
    ``student.teacher_correction``), less those already drawn. Until then a batch's audit share fills up to
    that many.

    Measured on FPB with the real local teacher (45 % before re-calibration): at 1 % of the pool, 7 audits
    left it uncalibrated and its student at 54.0 ± 1.5 %, while random routing's 35 random items
    re-calibrated it to 63 % and reached 64.5 ± 1.8 %.
    """
    from terakoya.quality.aggregate import BLIND_REASONS
    from terakoya.teachers.calibrating import MIN_CORRECTION_PER_LABEL

    wanted = MIN_BLIND if settings.routing.trust_teacher == "measured" else 0
    if settings.student.teacher_correction:
        wanted = max(wanted, MIN_CORRECTION_PER_LABEL * len(settings.label_names))
    if not wanted:
        return 0
    drawn = s.scalar(
        select(func.count(func.distinct(Task.item_id)))
        .join(Item, Item.id == Task.item_id)
        .where(Task.project_id == project_id, Task.reason.in_(BLIND_REASONS), Item.split == "pool")
    )
    return max(0, wanted - int(drawn or 0))


def _plan_terakoya(
    s: Session, project_id: int, c: _Candidates, n_pick: int, settings: Settings, trust: TeacherTrust,
    rng: np.random.Generator, seed: int,
) -> list[tuple[int, str, float, dict[str, Any]]]:  # fmt: skip
    """(position, reason, score, components) for the pool batch of the ``terakoya`` strategy.

    The batch is made of: the random blind audit share; a teacher share (``trust.weight`` of the rest)
    picked by teacher uncertainty and teacher-student disagreement; a student share picked by the
    student's margin with a quota per predicted class, or — while experts have answered fewer than
    :data:`COLD_START` pool items or there is no student — by typicality (TypiClust).
    """
    cfg = settings.routing
    free = np.ones(len(c.ids), dtype=bool)
    out: list[tuple[int, str, float, dict[str, Any]]] = []
    n_audit = min(n_pick, round(n_pick * cfg.audit_share))
    if cfg.audit_share > 0:
        n_audit = max(n_audit, min(n_pick, audits_needed(s, project_id, settings)))
    if n_audit:
        for pos in rng.choice(len(c.ids), size=n_audit, replace=False):
            out.append((int(pos), "audit", 0.0, {"share": "audit"}))
            free[int(pos)] = False
    rest = n_pick - n_audit
    n_teacher = round(rest * trust.weight)
    value = c.scores.value
    picked, red = _pick_by_value(s, c, value, n_teacher, free, diversity=cfg.diversity_weight, groups=None, rng=rng)
    for pos in picked:
        out.append(
            (
                pos,
                "routed",
                float(value[pos] - cfg.diversity_weight * red[pos]),
                {"share": "teacher", "redundancy": round(float(red[pos]), 6)},
            )
        )
        free[pos] = False
    n_student = rest - len(picked)
    labelled = _expert_pool_items(s, project_id)
    if n_student <= 0:
        return out
    if c.has_student.any() and labelled >= COLD_START:
        margin = np.where(c.has_student, student_margin(c.student), 0.0)
        groups = np.where(c.has_student, c.student.argmax(axis=1), -1).astype(np.intp)
        picked, red = _pick_by_value(
            s, c, margin, n_student, free, diversity=cfg.diversity_weight, groups=groups, rng=rng
        )
        for pos in picked:
            out.append(
                (
                    pos,
                    "routed",
                    float(margin[pos] - cfg.diversity_weight * red[pos]),
                    {"share": "student", "redundancy": round(float(red[pos]), 6)},
                )
            )
        return out
    positions = np.flatnonzero(free)
    texts = _texts(s, [c.ids[int(p)] for p in positions])
    vectors = dense_vectors([texts[c.ids[int(p)]] for p in positions], seed=seed)
    for local in typical_picks(vectors, n_student, covered=labelled, seed=seed):
        out.append((int(positions[local]), "routed", 0.0, {"share": "typical"}))
    return out


@dataclass
class _RunPlan:
    """What one route run decided, before anything is written."""

    labels: list[str]
    candidates: _Candidates
    gold_ids: list[int]
    plan: list[tuple[int, str, float, dict[str, Any]]]
    skipped_no_teacher: int


def _check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"unknown routing strategy {strategy!r}; use one of: {', '.join(STRATEGIES)} "
            "(--strategy or routing.strategy)"
        )
    return strategy


def _decide(
    s: Session, project_id: int, settings: Settings, budget: int, strategy: str, trust: TeacherTrust,
    rng: np.random.Generator, seed: int, notes: list[str],
) -> _RunPlan:  # fmt: skip
    """Read the pool and decide the run: gold checks, the pool batch and the candidates behind it."""
    cfg = settings.routing
    teacher = _latest(s, project_id, "teacher")
    if not teacher:
        raise StateError("no teacher labels yet; run `terakoya teach` first")
    blocked = _blocked_items(s, project_id)
    pool_ids = s.scalars(select(Item.id).where(Item.project_id == project_id, Item.split == "pool")).all()
    skipped_no_teacher = sum(1 for i in pool_ids if i not in teacher and i not in blocked)
    eligible = sorted(i for i in teacher if i not in blocked)
    gold_ids = _gold(s, project_id, round(budget * cfg.gold_share), blocked, rng, notes)

    pool_target = budget - len(gold_ids)
    labels = settings.label_names or sorted({str(k) for row in teacher.values() for k in (row.probabilities or {})})
    c = _candidates(s, project_id, eligible, teacher, labels, cfg, kind_for(settings))
    n_pick = min(pool_target, len(eligible))
    if n_pick < pool_target:
        notes.append(
            f"the budget asked for {pool_target} pool items but only {len(eligible)} are eligible "
            "(teacher-labelled, not answered, not queued, not auto-accepted); all of them were routed"
        )
    if strategy == "random":
        chosen = [int(p) for p in rng.choice(len(eligible), size=n_pick, replace=False)] if n_pick else []
        plan: list[tuple[int, str, float, dict[str, Any]]] = [(p, "random", 0.0, {"share": "random"}) for p in chosen]
    else:
        plan = _plan_terakoya(s, project_id, c, n_pick, settings, trust, rng, seed)
    if trust.trusted is False:
        notes.append(trust.sentence)
    return _RunPlan(labels, c, gold_ids, plan, skipped_no_teacher)


def _run_params(
    settings: Settings, d: _RunPlan, trust: TeacherTrust, budget_items: int | None, budget_minutes: float | None,
    seed: int, notes: list[str],
) -> dict[str, Any]:  # fmt: skip
    """What the run was asked and what it saw, as stored on its ``RouteRun`` row."""
    cfg = settings.routing
    return {
        "budget_items": budget_items,
        "budget_minutes": budget_minutes,
        "seconds_per_item": cfg.seconds_per_item,
        "seed": seed,
        "gold_share": cfg.gold_share,
        "audit_share": cfg.audit_share,
        "auto_accept_threshold": cfg.auto_accept_threshold,
        "uncertainty_weight": cfg.uncertainty_weight,
        "disagreement_weight": cfg.disagreement_weight,
        "diversity_weight": cfg.diversity_weight,
        "answers_per_item": cfg.answers_per_item,
        "teacher_trust": trust.to_json(),
        "eligible": len(d.candidates.ids),
        "skipped_no_teacher": d.skipped_no_teacher,
        "labels": list(d.labels),
        "notes": notes,
    }


def _write_run(
    s: Session, project_id: int, settings: Settings, strategy: str, budget: int, params: dict[str, Any],
    d: _RunPlan, trust: TeacherTrust, rng: np.random.Generator,
) -> tuple[int, int]:  # fmt: skip
    """The ``RouteRun`` row, its tasks and its auto-accepts: (route run id, auto-accepted items)."""
    cfg = settings.routing
    run = RouteRun(project_id=project_id, strategy=strategy, budget_items=budget, params=params)
    s.add(run)
    s.flush()
    c = d.candidates
    verify = cfg.verify_routed and trust.trusted is not False  # trust_teacher = "never" makes it untrusted
    _queue(s, project_id, run.id, c, d.plan, d.gold_ids, rng, cfg.answers_per_item, verify)
    accepts = _auto_accepts(s, run.id, c, {c.ids[p] for p, *_ in d.plan}, d.labels, cfg, trust)
    run.routed = len(d.plan)
    run.gold = len(d.gold_ids)
    run.auto_accepted = accepts
    return run.id, accepts


def start_run(
    settings: Settings, budget_items: int | None, budget_minutes: float | None, strategy: str | None, seed: int | None
) -> tuple[int, str, int, np.random.Generator, list[str]]:
    """What every route run starts from, whatever the kind: the items the budget buys (it counts answers, and each
    item takes ``routing.answers_per_item`` of them), the strategy, the seed, its generator, and the notes so far."""
    cfg = settings.routing
    answers = _budget(settings, budget_items, budget_minutes)
    strategy = _check_strategy(strategy or cfg.strategy)
    seed = cfg.seed if seed is None else seed
    notes: list[str] = []
    budget = max(1, answers // cfg.answers_per_item)
    if cfg.answers_per_item > 1:
        notes.append(
            f"a budget of {answers} answers at {cfg.answers_per_item} answers per item (routing.answers_per_item) "
            f"routes {budget} items"
        )
    return budget, strategy, seed, np.random.default_rng(seed), notes


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
    """Queue the most useful items for experts, add gold checks and blind audits, auto-accept confident ones."""
    cfg = settings.routing
    budget, strategy, seed, rng, notes = start_run(settings, budget_items, budget_minutes, strategy, seed)
    from terakoya.teachers.calibrating import calibrate_teacher

    calibrate_teacher(db, project_id, settings)  # re-calibrated on the newest expert answers
    trust = measure_trust(db, project_id, settings, seed=seed)

    with db.session() as s:
        d = _decide(s, project_id, settings, budget, strategy, trust, rng, seed, notes)
        params = _run_params(settings, d, trust, budget_items, budget_minutes, seed, notes)
        run_id, accepts = _write_run(s, project_id, settings, strategy, budget, params, d, trust, rng)

    plan, gold_ids = d.plan, d.gold_ids
    return RouteReport(
        route_run_id=run_id,
        strategy=strategy,
        budget_items=budget,
        routed=len(plan),
        gold=len(gold_ids),
        auto_accepted=accepts,
        expert_minutes=(len(plan) + len(gold_ids)) * cfg.answers_per_item * cfg.seconds_per_item / 60.0,
        skipped_no_teacher=d.skipped_no_teacher,
        eligible=len(d.candidates.ids),
        notes=notes,
        audit=sum(1 for _, reason, *_ in plan if reason == "audit"),
        teacher_trust=trust,
    )


def _gold(s: Session, project_id: int, target: int, blocked: set[int], rng: np.random.Generator,
          notes: list[str]) -> list[int]:  # fmt: skip
    """Gold checks: ``target`` unanswered test items with a gold label, drawn at random."""
    if target <= 0:
        return []
    test_ids = sorted(
        s.scalars(
            select(Item.id).where(Item.project_id == project_id, Item.split == "test", Item.gold_label.is_not(None))
        ).all()
    )
    open_gold = [i for i in test_ids if i not in blocked]
    take = min(target, len(open_gold))
    gold_ids = [open_gold[int(i)] for i in rng.choice(len(open_gold), size=take, replace=False)] if take else []
    if take < target:
        notes.append(
            f"only {take} unanswered gold items were left in the test split (wanted {target}); "
            "the rest of the budget went to the pool"
        )
    return gold_ids


#: routed reasons whose tasks may show the teacher's answer (never the blind ones: audit, gold, random)
VERIFY_REASONS = ("routed",)


def _queue(s: Session, project_id: int, run_id: int, c: _Candidates, plan: list[tuple[int, str, float, dict[str, Any]]],
           gold_ids: list[int], rng: np.random.Generator, answers_wanted: int, verify: bool) -> None:  # fmt: skip
    """The run's tasks, gold checks among them, each taking ``answers_wanted`` answers.

    With ``verify``, routed items are verify tasks (the expert sees the teacher's label and accepts or corrects
    it: faster than labelling from scratch); gold checks, blind audits and random picks stay label tasks, so
    that neither the experts' accuracy nor the teacher's is measured through the teacher's own answer.
    """
    queue: list[dict[str, Any]] = []
    for pos, reason, score, extra in plan:
        comps = c.scores.components(pos)
        comps.update(extra)
        comps["confidence"] = c.teacher_rows[pos].confidence if c.known[pos] else None
        comps["suggestion_id"] = c.teacher_rows[pos].id
        kind = "verify" if verify and reason in VERIFY_REASONS else "label"
        queue.append({"item_id": c.ids[pos], "reason": reason, "score": score, "components": comps, "kind": kind})
    # gold checks (and the blind audits, drawn first) go to seeded random places so they look like any other task
    for item_id in gold_ids:
        at = int(rng.integers(0, len(queue) + 1))
        queue.insert(
            at, {"item_id": item_id, "reason": "gold", "score": 0.0, "components": {"gold": True}, "kind": "label"}
        )
    if len(queue) > 1:
        queue = [queue[int(i)] for i in rng.permutation(len(queue))]
    if queue:
        s.execute(
            insert(Task),
            [
                {"project_id": project_id, "route_run_id": run_id, "status": "queued",
                 "priority": rank, "answers_wanted": answers_wanted, **task}
                for rank, task in enumerate(queue)
            ],
        )  # fmt: skip


def _auto_accepts(s: Session, run_id: int, c: _Candidates, routed: set[int], labels: list[str], cfg: Any,
                  trust: TeacherTrust) -> int:  # fmt: skip
    """Pool items the teacher is confident about take its label — never from a teacher that is not trusted."""
    if trust.trusted is False:
        return 0
    accepts: list[dict[str, Any]] = []
    for pos, item_id in enumerate(c.ids):
        row = c.teacher_rows[pos]
        if item_id in routed or not c.known[pos] or float(row.confidence) < cfg.auto_accept_threshold:
            continue
        label = row.label if row.label is not None else (labels[int(c.teacher[pos].argmax())] if labels else None)
        if label is None:
            continue
        accepts.append({"item_id": item_id, "suggestion_id": row.id, "route_run_id": run_id, "label": label,
                        "confidence": float(row.confidence)})  # fmt: skip
    if accepts:
        s.execute(insert(AutoAccept), accepts)
    return len(accepts)
