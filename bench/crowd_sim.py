"""Simulated trainers (people who label) of known quality, for the crowd-aggregation benchmark. No database.

A :class:`Trainer` answers an item right with a probability that falls from ``easy_accuracy`` (difficulty 0)
to ``hard_accuracy`` (difficulty 1), linearly; a wrong answer goes to another class, each equally likely. A
trainer without an accuracy is a spammer (uniform over all classes, so right 1/K of the time); a trainer with a
``fixed_label`` is an adversary (always that label, whatever the item). The four profiles:

- :func:`careful`: 95 % on easy items, 70 % on hard ones (on Financial PhraseBank, the sentences found only in
  the 50 %/66 % agreement files: a careful trainer does about as well as the original annotators did);
- :func:`average`: 80 % / 60 %;
- :func:`spammer`: uniform at random;
- :func:`adversary`: always one label.

:func:`simulate_answers` gives every item ``k`` answers from ``k`` distinct trainers; :func:`adaptive_answers`
starts with two and asks one more trainer while the answers disagree, up to a cap. Both return the crowd
aggregators' input, ``(item id, trainer name, label)`` triples, in the order they were given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FPB_DIFFICULTY",
    "Trainer",
    "adaptive_answers",
    "adversary",
    "average",
    "careful",
    "fpb_difficulty",
    "simulate_answers",
    "spammer",
    "team",
]

#: bench/datasets.py's Financial PhraseBank difficulty levels -> difficulty in [0, 1]: all agree 0, >=75 % 0.5,
#: >=66 % and 50 % only 1 (hard: a careful trainer answers them about as the annotators did)
FPB_DIFFICULTY = {0: 0.0, 1: 0.5, 2: 1.0, 3: 1.0}


@dataclass(frozen=True)
class Trainer:
    """One simulated person. ``easy_accuracy`` None: a spammer; ``fixed_label`` set: an adversary. ``profile``
    names the kind (``careful``, ``average``, ``spammer``, ``adversary``; ``custom`` for hand-made accuracies)."""

    name: str
    easy_accuracy: float | None = None
    hard_accuracy: float | None = None
    fixed_label: str | None = None
    profile: str = "custom"

    def __post_init__(self) -> None:
        if (self.easy_accuracy is None) != (self.hard_accuracy is None):
            raise ValueError(f"trainer {self.name!r}: give both easy_accuracy and hard_accuracy, or neither")
        for value in (self.easy_accuracy, self.hard_accuracy):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"trainer {self.name!r}: accuracies are in [0, 1], got {value}")

    def accuracy(self, difficulty: float) -> float | None:
        """The chance of a right answer at ``difficulty`` in [0, 1]; None for a spammer or an adversary."""
        if self.fixed_label is not None or self.easy_accuracy is None or self.hard_accuracy is None:
            return None
        d = min(1.0, max(0.0, difficulty))
        return self.easy_accuracy + (self.hard_accuracy - self.easy_accuracy) * d

    def answer(self, truth: str, difficulty: float, classes: Sequence[str], rng: np.random.Generator) -> str:
        """One answer to an item whose true label is ``truth``."""
        if self.fixed_label is not None:
            return self.fixed_label
        accuracy = self.accuracy(difficulty)
        if accuracy is None:
            return str(classes[int(rng.integers(len(classes)))])
        if rng.random() < accuracy:
            return truth
        others = [c for c in classes if c != truth]
        return str(others[int(rng.integers(len(others)))]) if others else truth


def careful(name: str) -> Trainer:
    """95 % right on easy items, 70 % on hard ones."""
    return Trainer(name, 0.95, 0.70, profile="careful")


def average(name: str) -> Trainer:
    """80 % right on easy items, 60 % on hard ones."""
    return Trainer(name, 0.80, 0.60, profile="average")


def spammer(name: str) -> Trainer:
    """A label drawn uniformly from all classes, whatever the item."""
    return Trainer(name, profile="spammer")


def adversary(name: str, label: str) -> Trainer:
    """Always ``label``."""
    return Trainer(name, fixed_label=label, profile="adversary")


def team(
    *, careful_n: int = 0, average_n: int = 0, spammers: int = 0, adversaries: int = 0, label: str = ""
) -> list[Trainer]:
    """A group of trainers named ``careful-1``, ``average-1``, ``spammer-1``, ``adversary-1`` ...; the adversaries
    always answer ``label``."""
    if adversaries and not label:
        raise ValueError("team(): adversaries need the label they always give (label=...)")
    return (
        [careful(f"careful-{i}") for i in range(1, careful_n + 1)]
        + [average(f"average-{i}") for i in range(1, average_n + 1)]
        + [spammer(f"spammer-{i}") for i in range(1, spammers + 1)]
        + [adversary(f"adversary-{i}", label) for i in range(1, adversaries + 1)]
    )


def fpb_difficulty(level: int) -> float:
    """A Financial PhraseBank difficulty level (0 all agree ... 3 only in the 50 % file) as a difficulty in [0, 1]."""
    return FPB_DIFFICULTY[level]


def _check(trainers: Sequence[Trainer], classes: Sequence[str], most: int) -> None:
    if most > len(trainers):
        raise ValueError(f"{most} distinct trainers per item asked for, but there are only {len(trainers)}")
    names = [t.name for t in trainers]
    if len(set(names)) != len(names):
        raise ValueError(f"trainer names repeat: {names}")
    for t in trainers:
        if t.fixed_label is not None and t.fixed_label not in classes:
            raise ValueError(f"adversary {t.name!r} answers {t.fixed_label!r}, not one of {list(classes)}")


def simulate_answers(
    items: Sequence[int],
    truth: Mapping[int, str],
    difficulty: Mapping[int, float],
    trainers: Sequence[Trainer],
    k: int,
    classes: Sequence[str],
    rng: np.random.Generator,
) -> list[tuple[int, str, str]]:
    """``k`` answers per item from ``k`` distinct trainers drawn at random: ``(item, trainer name, label)``, item by
    item. ``difficulty`` defaults to 0 (easy) for an item it lacks."""
    _check(trainers, classes, k)
    out: list[tuple[int, str, str]] = []
    for item in items:
        for index in rng.choice(len(trainers), size=k, replace=False):
            trainer = trainers[int(index)]
            out.append((item, trainer.name, trainer.answer(truth[item], difficulty.get(item, 0.0), classes, rng)))
    return out


def adaptive_answers(
    items: Sequence[int],
    truth: Mapping[int, str],
    difficulty: Mapping[int, float],
    trainers: Sequence[Trainer],
    classes: Sequence[str],
    rng: np.random.Generator,
    *,
    start: int = 2,
    cap: int = 4,
    teacher: Mapping[int, str] | None = None,
) -> tuple[list[tuple[int, str, str]], int]:
    """Answers bought adaptively: ``start`` per item from distinct trainers, then one more (another trainer) while
    the item's answers disagree with each other, or, with ``teacher`` (item -> the teacher's label), with the
    teacher's label for that item, until the item has ``cap`` answers. Returns the answers (item by item) and the
    number of answers spent."""
    if not 1 <= start <= cap:
        raise ValueError(f"adaptive_answers(): need 1 <= start <= cap, got start={start}, cap={cap}")
    _check(trainers, classes, cap)
    out: list[tuple[int, str, str]] = []
    for item in items:
        order = rng.permutation(len(trainers))[:cap]
        labels: list[str] = []
        for n, index in enumerate(order):
            if n >= start and _settled(labels, teacher.get(item) if teacher is not None else None):
                break
            trainer = trainers[int(index)]
            label = trainer.answer(truth[item], difficulty.get(item, 0.0), classes, rng)
            labels.append(label)
            out.append((item, trainer.name, label))
    return out, len(out)


def _settled(labels: Sequence[str], teacher_label: str | None) -> bool:
    """The answers agree with each other (and with the teacher's label, when there is one)."""
    distinct = set(labels)
    if teacher_label is not None:
        distinct.add(teacher_label)
    return len(distinct) == 1
