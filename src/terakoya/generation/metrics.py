"""Scores for generated answers: chrF, sample disagreement, win/tie/loss with an interval, throughput.

Every function is pure: strings or counts in, numbers out. chrF comes from sacrebleu (the ``generate`` extra),
imported on first use; everything else needs only numpy and scipy.

chrF compares character n-grams (up to 6) and word n-grams are off (sacrebleu's ``CHRF()`` defaults), so it
needs no tokenizer and works the same for Japanese, which has no spaces between words. Its β = 2 weighs recall
twice as much as precision, so ``chrf(a, b)`` and ``chrf(b, a)`` differ; :func:`similarity` averages both.

Comparisons are told from the student's point of view: ``"win"`` (the student's answer is better), ``"tie"``,
``"loss"``, ``"both_bad"`` (neither answer is acceptable). :func:`swap_judgement` turns a judge's two verdicts on
one pair, shown in both orders, into one such outcome.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from terakoya.errors import DataError, MissingDependency

if TYPE_CHECKING:
    from sacrebleu.metrics.chrf import CHRF

__all__ = [
    "OUTCOMES",
    "VERDICTS",
    "WinTieLoss",
    "chrf",
    "corpus_chrf",
    "sample_disagreement",
    "similarity",
    "swap_judgement",
    "throughput",
    "win_tie_loss",
]

#: a comparison's outcome, from the student's point of view
OUTCOMES = ("win", "tie", "loss", "both_bad")
#: a judge's verdict on two answers shown as A then B
VERDICTS = ("a", "b", "tie", "both_bad")


@functools.cache
def _chrf_metric() -> CHRF:
    try:
        from sacrebleu.metrics.chrf import CHRF
    except ImportError as exc:  # pragma: no cover - the generate extra brings it
        raise MissingDependency.for_extra("sacrebleu", "generate", "chrF") from exc
    return CHRF()


def chrf(hypothesis: str, reference: str) -> float:
    """Sentence chrF of ``hypothesis`` against ``reference``, 0–100.

    Identical strings score 100, the empty string against itself included (sacrebleu gives 0 there, having no
    n-grams to count; for comparing answers "the same" is the useful reading).
    """
    if hypothesis == reference:
        return 100.0
    return float(_chrf_metric().sentence_score(hypothesis, [reference]).score)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float | None:
    """Corpus chrF (n-gram statistics summed over all pairs, then one score), 0–100; None for no pairs."""
    if len(hypotheses) != len(references):
        raise ValueError(
            f"corpus_chrf needs as many references as hypotheses, got {len(hypotheses)} and {len(references)}"
        )
    if not hypotheses:
        return None
    return float(_chrf_metric().corpus_score(list(hypotheses), [list(references)]).score)


def similarity(a: str, b: str) -> float:
    """How alike two answers are, 0–1 and symmetric: the mean of chrF both ways, over 100."""
    if a == b:
        return 1.0
    return (chrf(a, b) + chrf(b, a)) / 200.0


def sample_disagreement(samples: Sequence[str]) -> float:
    """1 − the mean pairwise :func:`similarity` of a teacher's samples for one prompt, 0–1.

    0 when all samples are the same, or when there are fewer than two (nothing to disagree with). Routing sends
    prompts whose samples disagree to the experts first.
    """
    pairs = list(itertools.combinations(samples, 2))
    if not pairs:
        return 0.0
    mean = sum(similarity(a, b) for a, b in pairs) / len(pairs)
    return min(1.0, max(0.0, 1.0 - mean))


@dataclass(frozen=True)
class WinTieLoss:
    """Counts and rates of comparison outcomes, and the student's win-or-tie rate with its interval.

    The four ``*_rate`` fields share out all ``n`` comparisons. ``win_or_tie_rate`` is (wins + ties / 2) over the
    ``decided`` ones (win, tie or loss: "both bad" says nothing about which answer is better). Rates are None
    when there is nothing to divide by; so is the interval.
    """

    wins: int
    ties: int
    losses: int
    both_bad: int
    win_rate: float | None
    tie_rate: float | None
    loss_rate: float | None
    both_bad_rate: float | None
    win_or_tie_rate: float | None
    #: (low, high) for ``win_or_tie_rate`` at ``confidence``
    interval: tuple[float, float] | None
    confidence: float
    method: str

    @property
    def n(self) -> int:
        """All comparisons."""
        return self.wins + self.ties + self.losses + self.both_bad

    @property
    def decided(self) -> int:
        """Comparisons that say which answer is better, or that they are equal (everything but "both bad")."""
        return self.wins + self.ties + self.losses


def win_tie_loss(
    outcomes: Sequence[str],
    *,
    confidence: float = 0.95,
    method: Literal["wilson", "bootstrap"] = "wilson",
    seed: int = 0,
    resamples: int = 2000,
) -> WinTieLoss:
    """Count ``outcomes`` ("win" | "tie" | "loss" | "both_bad", the student's view) into a :class:`WinTieLoss`.

    The interval for the win-or-tie rate is Wilson's score interval by default, with a tie as half a win. Each
    decided comparison scores 1, ½ or 0; its variance, p(1 − p) − (tie rate) / 4, is never more than the
    binomial p(1 − p) that Wilson assumes, so the interval errs on the wide side; and unlike a bootstrap it stays
    honest on the small, lopsided samples expert comparisons give (8 wins out of 8: a bootstrap says [1, 1],
    Wilson [0.68, 1]). ``method="bootstrap"`` gives the percentile bootstrap instead (``resamples`` draws of the
    decided comparisons, seeded by ``seed``: the same inputs give the same interval).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    if method not in ("wilson", "bootstrap"):
        raise ValueError(f"method must be 'wilson' or 'bootstrap', got {method!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    counts = dict.fromkeys(OUTCOMES, 0)
    bad: list[str] = []
    for position, outcome in enumerate(outcomes):
        if outcome in counts:
            counts[outcome] += 1
        elif len(bad) < 3:
            bad.append(f"{outcome!r} at position {position}")
    if bad:
        raise DataError(
            f"comparison outcomes must be one of {', '.join(OUTCOMES)}; got {', '.join(bad)}; "
            "fix the outcome values (the student's point of view: 'win' means the student's answer was better)"
        )
    wins, ties, losses, both_bad = (counts[o] for o in OUTCOMES)
    n = wins + ties + losses + both_bad
    decided = wins + ties + losses
    score = wins + ties / 2
    interval: tuple[float, float] | None = None
    if decided and method == "wilson":
        interval = _wilson(score, decided, confidence)
    elif decided:
        interval = _bootstrap(wins, ties, losses, confidence, seed, resamples)
    return WinTieLoss(
        wins=wins,
        ties=ties,
        losses=losses,
        both_bad=both_bad,
        win_rate=wins / n if n else None,
        tie_rate=ties / n if n else None,
        loss_rate=losses / n if n else None,
        both_bad_rate=both_bad / n if n else None,
        win_or_tie_rate=score / decided if decided else None,
        interval=interval,
        confidence=confidence,
        method=method,
    )


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def _wilson(successes: float, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's score interval for ``successes`` out of ``n`` (successes may be fractional: a tie is ½); the
    formula is the one quality control uses (:func:`terakoya.evaluation.metrics.wilson_interval`)."""
    from terakoya.evaluation.metrics import wilson_interval

    low, high = wilson_interval(successes, n, z=_z(confidence)) or [0.0, 1.0]
    return low, high


def _bootstrap(wins: int, ties: int, losses: int, confidence: float, seed: int, resamples: int) -> tuple[float, float]:
    """Percentile bootstrap of (wins + ties / 2) / decided: resampling the comparisons is a multinomial draw."""
    n = wins + ties + losses
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [wins / n, ties / n, losses / n], size=resamples)
    rates = (draws[:, 0] + draws[:, 1] / 2) / n
    alpha = 1.0 - confidence
    low, high = np.quantile(rates, [alpha / 2, 1.0 - alpha / 2])
    return float(low), float(high)


_FIRST = {"a": "win", "b": "loss", "tie": "tie", "both_bad": "both_bad"}
_SWAPPED = {"a": "loss", "b": "win", "tie": "tie", "both_bad": "both_bad"}


def swap_judgement(first: str, second: str) -> str:
    """One outcome for answer A from a judge's verdicts on (A, B) and on the swapped (B, A).

    Verdicts are "a" | "b" | "tie" | "both_bad", relative to the order shown. When both verdicts, read back to
    A's side, agree, that is the outcome; when they disagree the judge followed the order, not the answers, and
    the outcome is "tie" (so a judge's order bias cancels instead of counting as a win or a loss).
    """
    for name, verdict in (("first", first), ("second", second)):
        if verdict not in _FIRST:
            raise DataError(
                f"the {name} verdict {verdict!r} is not one of {', '.join(VERDICTS)}; "
                "a verdict names the better answer as shown ('a' first, 'b' second), or 'tie' or 'both_bad'"
            )
    one, other = _FIRST[first], _SWAPPED[second]
    return one if one == other else "tie"


def throughput(tokens: int, seconds: float) -> float | None:
    """Tokens per second; None when no time was measured (``seconds`` <= 0)."""
    if seconds <= 0:
        return None
    return tokens / seconds
