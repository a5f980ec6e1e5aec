"""What every student shares: scikit-learn's estimator contract, targets, the softmax head, save/load.

A student is fitted on texts and either label strings (hard targets) or an ``(n, k)`` array of target
distributions whose columns follow the ``classes`` hyper-parameter (soft targets, as distilled from a
teacher). ``predict_proba`` is ``softmax(decision_function / temperature_)``; ``temperature_`` is 1.0
after ``fit`` and is set by calibration.

A saved student is a folder that describes itself::

    config.json    kind, format version, hyper-parameters, label map, temperature, metadata
                   (data hash, teacher and prompt version, expert answers, metrics), library versions
    weights.npz    the learned arrays (numpy, no pickle)
"""

from __future__ import annotations

import inspect
import json
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from terakoya.errors import ConfigError, DataError, StudentError
from terakoya.students.lbfgs import lbfgs

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "Block",
    "SoftmaxFit",
    "Student",
    "fit_softmax",
    "library_versions",
    "softmax",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"
FORMAT = "terakoya-student"
FORMAT_VERSION = 1

Texts = Sequence[str]
FloatArray = NDArray[np.float64]


def softmax(z: FloatArray) -> FloatArray:
    """Row-wise softmax, stable for large logits."""
    shifted: FloatArray = z - z.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _log_softmax(z: FloatArray) -> FloatArray:
    shifted: FloatArray = z - z.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of the libraries a saved student depends on."""
    names = ["terakoya", "numpy", "scipy", *extra]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ----------------------------------------------------------------------------- the softmax head


class SoftmaxFit:
    """Result of :func:`fit_softmax`: weights, bias and how the optimiser ended."""

    def __init__(self, coef: FloatArray, intercept: FloatArray, loss: float, iterations: int, converged: bool) -> None:
        self.coef = coef
        self.intercept = intercept
        self.loss = loss
        self.iterations = iterations
        self.converged = converged


@dataclass
class Block:
    """One block of features: the matrix ``left``, or the product ``left @ right`` (never formed)."""

    left: Any
    right: Any | None = None


def _compress(matrix: Any, dtype: type[np.floating[Any]]) -> tuple[Any, NDArray[np.intp], int]:
    """``matrix`` restricted to the columns that occur, those columns, and the full width."""
    from scipy.sparse import csr_matrix, issparse

    if not issparse(matrix):
        dense = np.ascontiguousarray(matrix, dtype=dtype)
        return dense, np.arange(dense.shape[1]), dense.shape[1]
    matrix = csr_matrix(matrix)
    width = matrix.shape[1]
    present = np.bincount(matrix.indices, minlength=width) > 0
    remap = (np.cumsum(present) - 1).astype(matrix.indices.dtype)
    data = matrix.data.astype(dtype, copy=False)
    used = np.flatnonzero(present)
    return csr_matrix((data, remap[matrix.indices], matrix.indptr), shape=(matrix.shape[0], len(used))), used, width


def _plan(
    parts: list[Block], dtype: type[np.floating[Any]]
) -> tuple[list[tuple[Any, Any, NDArray[np.intp], int]], list[int], int]:
    """Per block: (left, right or None, columns used, offset into the parameters); the blocks' full widths; and
    the number of feature columns optimised."""
    from scipy.sparse import csr_matrix

    plan: list[tuple[Any, Any, NDArray[np.intp], int]] = []
    widths: list[int] = []
    d = 0
    for part in parts:
        if part.right is None:
            left, used, width = _compress(part.left, dtype)
            right = None
        else:
            left = csr_matrix(part.left).astype(dtype)
            right, used, width = _compress(part.right, dtype)
        plan.append((left, right, used, d))
        widths.append(width)
        d += len(used)
    return plan, widths, d


def fit_softmax(
    features: Any,
    targets: FloatArray,
    weights: FloatArray,
    *,
    alpha: float,
    max_iter: int,
    tol: float,
    dtype: type[np.floating[Any]] = np.float64,
) -> SoftmaxFit:
    """Multinomial logistic regression on soft targets, by L-BFGS on the exact loss and gradient.

    Minimises ``sum_i w_i * CE(targets_i, softmax(x_i W + b)) / sum_i w_i + alpha / 2 * ||W||^2``
    (the bias is not penalised). ``features`` is a dense array, a scipy sparse matrix, or a list of
    :class:`Block` whose columns are concatenated (a factored block costs the products of its two
    factors, not of its product). Only sparse columns that occur are optimised; the others keep weight
    0. Deterministic: it starts from zeros and uses no randomness. ``dtype`` is the precision of the
    matrix products.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    n, k = targets.shape
    w = (weights / weights.sum())[:, None]
    parts = list(features) if isinstance(features, list | tuple) else [Block(features)]
    plan, widths, d = _plan(parts, dtype)
    start_at = np.zeros(d * k + k)
    targets_w = targets * w
    # buffers reused by every evaluation: fresh large arrays cost page faults on every call
    coef_cast = np.empty((d, k), dtype=dtype)
    log_p = np.empty((n, k))
    p = np.empty((n, k))
    g_cast = np.empty((n, k), dtype=dtype)

    def loss_and_grad(theta: FloatArray, grad: FloatArray) -> float:
        coef = theta[: d * k].reshape(d, k)
        np.copyto(coef_cast, coef, casting="same_kind")
        log_p[:] = theta[d * k :]
        for left, right, used, at in plan:
            block = coef_cast[at : at + len(used)]
            product = left @ block if right is None else left @ (right @ block)
            np.add(log_p, product, out=log_p)
        np.subtract(log_p, log_p.max(axis=1, keepdims=True), out=log_p)
        np.exp(log_p, out=p)
        total = p.sum(axis=1, keepdims=True)
        np.subtract(log_p, np.log(total), out=log_p)
        np.divide(p, total, out=p)
        loss = -float(np.vdot(targets_w, log_p)) + 0.5 * alpha * float(np.vdot(coef, coef))
        np.multiply(p, w, out=p)
        np.subtract(p, targets_w, out=p)
        np.copyto(g_cast, p, casting="same_kind")
        grad_coef = grad[: d * k].reshape(d, k)
        np.multiply(coef, alpha, out=grad_coef)
        for left, right, used, at in plan:
            back = left.T @ g_cast if right is None else right.T @ (left.T @ g_cast)
            np.add(grad_coef[at : at + len(used)], back, out=grad_coef[at : at + len(used)], casting="unsafe")
        grad[d * k :] = p.sum(axis=0)
        return loss

    # one BLAS thread: the vectors are memory-bound, threaded BLAS only adds spin-waiting (20x slower on a
    # busy machine) and makes the sums depend on the thread count
    with threadpool_limits(limits=1, user_api="blas"):
        theta, loss, iterations, converged = lbfgs(loss_and_grad, start_at, max_iter=max_iter, tol=tol)
    coef = np.zeros((sum(widths), k))
    start = 0
    for (_, _, used, at), width in zip(plan, widths, strict=True):
        coef[start + used] = theta[at * k : (at + len(used)) * k].reshape(len(used), k)
        start += width
    return SoftmaxFit(coef, theta[d * k :].copy(), loss, iterations, converged)


# ----------------------------------------------------------------------------- the base class


class HyperParameters:
    """scikit-learn's parameter protocol, for every student: the keyword-only arguments of ``__init__`` are the
    hyper-parameters, stored unchanged. Written here: sklearn.base costs about a second to import, and loading a
    saved student to serve it should not need scikit-learn at all."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ConfigError(
                    f"{type(self).__name__} has no hyper-parameter {name!r}; valid ones are: {', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values() if p.name != "self"
        }
        shown = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k, inspect.Parameter.empty) != v]
        return f"{type(self).__name__}({', '.join(shown)})"


class Student(HyperParameters):
    """Base class of the students: scikit-learn's estimator contract plus a self-describing save.

    Subclasses declare their hyper-parameters as keyword arguments of ``__init__`` (stored as-is),
    set ``kind`` (the registered, versioned name), and implement ``_fit``, ``decision_function``,
    ``_state`` (arrays to save) and ``_restore`` (the inverse).
    """

    #: the registered, versioned name written into config.json
    kind: ClassVar[str] = ""
    #: extra libraries whose versions go into config.json
    libraries: ClassVar[tuple[str, ...]] = ()
    #: scikit-learn reads this to treat the student as a classifier
    _estimator_type: ClassVar[str] = "classifier"

    classes: list[str] | None

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
        )

    # ---- fitting

    def fit(self, X: Texts, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Student:
        """Fit on texts ``X`` and labels or target distributions ``y``; returns ``self``."""
        texts = self._check_texts(X)
        targets, classes = self._targets(y, len(texts))
        weights = self._weights(sample_weight, len(texts))
        self.classes_ = classes
        self.temperature_ = 1.0
        self.metadata: dict[str, Any] = getattr(self, "metadata", {}) or {}
        self._fit(texts, targets, weights)
        return self

    def _fit(self, texts: list[str], targets: FloatArray, weights: FloatArray) -> None:
        raise NotImplementedError

    @staticmethod
    def _check_texts(X: Texts) -> list[str]:
        if isinstance(X, str):
            raise DataError("X is one string; pass a list of texts, e.g. [text]")
        texts = list(X)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise DataError(
                f"text #{bad} is {type(texts[bad]).__name__}, not str; "
                "pass a list of strings (use '' for a missing text)"
            )
        return texts

    def _targets(self, y: ArrayLike, n: int) -> tuple[FloatArray, list[str]]:
        if n == 0:
            raise DataError("no texts to fit on; pass at least one text per class")
        classes = None if self.classes is None else [str(c) for c in self.classes]
        if classes is not None and len(set(classes)) != len(classes):
            raise DataError(f"classes {classes} has duplicates; list each label once")
        array = np.asarray(y)
        if array.ndim == 2 and array.dtype.kind in "fiu":
            if classes is None:
                raise DataError(
                    "y is a 2-D array of target distributions but the student has no classes; "
                    "pass classes=[...] naming its columns in order"
                )
            if array.shape != (n, len(classes)):
                raise DataError(
                    f"y has shape {array.shape}, expected ({n}, {len(classes)}): one row per text, "
                    f"one column per class ({', '.join(classes)})"
                )
            targets = array.astype(np.float64)
            if not np.isfinite(targets).all() or (targets < 0).any():
                raise DataError("y has negative or non-finite values; each row must be a probability distribution")
            sums = targets.sum(axis=1, keepdims=True)
            if (sums <= 0).any():
                raise DataError("y has a row that sums to 0; each row must be a probability distribution")
            targets /= sums
        elif array.ndim == 1:
            labels = [str(v) for v in array.tolist()]
            if len(labels) != n:
                raise DataError(f"y has {len(labels)} labels for {n} texts; give one label per text")
            if classes is None:
                classes = sorted(set(labels))
            index = {c: i for i, c in enumerate(classes)}
            unknown = sorted({lab for lab in labels if lab not in index})
            if unknown:
                raise DataError(
                    f"labels {', '.join(map(repr, unknown))} are not among the classes ({', '.join(classes)}); "
                    "add them to classes or fix the labels"
                )
            targets = np.zeros((n, len(classes)))
            targets[np.arange(n), [index[lab] for lab in labels]] = 1.0
        else:
            raise DataError(
                f"y has shape {array.shape}; pass a list of labels or an (n, k) float array of target distributions"
            )
        if len(classes) < 2:
            raise DataError(f"a student needs at least two classes, got {classes}; pass classes=[...] with all labels")
        return targets, classes

    @staticmethod
    def _weights(sample_weight: ArrayLike | None, n: int) -> FloatArray:
        if sample_weight is None:
            return np.ones(n)
        weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if len(weights) != n:
            raise DataError(f"sample_weight has {len(weights)} values for {n} texts; give one weight per text")
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise DataError("sample_weight must be finite, non-negative and not all zero")
        return weights

    # ---- predicting

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise StudentError(f"this {type(self).__name__} is not fitted yet; call fit(texts, labels) first")

    def decision_function(self, X: Texts) -> FloatArray:
        raise NotImplementedError

    def predict_proba(self, X: Texts) -> FloatArray:
        """``softmax(decision_function(X) / temperature_)``: one row per text, one column per class."""
        self._check_fitted()
        return softmax(self.decision_function(X) / self.temperature_)

    def predict(self, X: Texts) -> list[str]:
        self._check_fitted()
        best = self.decision_function(X).argmax(axis=1)
        return [self.classes_[i] for i in best]

    def score(self, X: Texts, y: Sequence[str], sample_weight: ArrayLike | None = None) -> float:
        """Accuracy on texts ``X`` against labels ``y`` (scikit-learn's ClassifierMixin.score)."""
        predicted = np.asarray(self.predict(X), dtype=object)
        truth = np.asarray([str(v) for v in y], dtype=object)
        hits = (predicted == truth).astype(float)
        if sample_weight is None:
            return float(hits.mean()) if len(hits) else math.nan
        w = np.asarray(sample_weight, dtype=np.float64)
        return float((hits * w).sum() / w.sum())

    # ---- saving

    def _state(self) -> dict[str, NDArray[Any]]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, NDArray[Any]], config: dict[str, Any]) -> None:
        raise NotImplementedError

    def _json_params(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()}

    def config(self) -> dict[str, Any]:
        """What config.json holds."""
        self._check_fitted()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "params": self._json_params(),
            "classes": list(self.classes_),
            "label_map": {str(i): c for i, c in enumerate(self.classes_)},
            "temperature": float(self.temperature_),
            "metadata": dict(getattr(self, "metadata", {}) or {}),
            "library_versions": library_versions(*self.libraries),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def clear_cache(self) -> None:
        """Forget cached computations (e.g. embeddings) so that a timing measures the real work."""

    def unsuited(self, texts: Texts, *, language: str) -> str | None:
        """Why this student, as configured, should not be tried on ``texts`` in ``language`` (None: it may be)."""
        return None

    def estimate_fit_seconds(self, texts: Texts, *, fits: int = 1) -> float:
        """Roughly how long ``fits`` fits on ``texts`` take on this machine (for choosing a student in time).

        A coarse figure from measurements on a 2-core CPU, not a promise; subclasses refine it.
        """
        return fits * (0.5 + 2e-4 * len(texts))

    def save(self, path: Path) -> Path:
        """Write the student into folder ``path`` (created if needed); returns ``path``."""
        self._check_fitted()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise StudentError(f"{path} is a file; pass a folder to save the student into")
        path.mkdir(parents=True, exist_ok=True)
        config = self.config()
        weights = path / WEIGHTS_FILE
        tmp = path / f".{WEIGHTS_FILE}.tmp.npz"
        np.savez_compressed(tmp, **self._state())  # type: ignore[arg-type]  # numpy's stub reads ** as allow_pickle
        tmp.replace(weights)
        # config.json last: a folder with a config.json is a complete student
        tmp_config = path / f".{CONFIG_FILE}.tmp"
        tmp_config.write_text(json.dumps(config, indent=2, ensure_ascii=False, default=_json_default), encoding="utf-8")
        tmp_config.replace(path / CONFIG_FILE)
        return path

    @classmethod
    def _from_saved(cls, folder: Path, config: dict[str, Any]) -> Student:
        params = dict(config.get("params", {}))
        names = cls._param_names()
        tuples = {
            p.name
            for p in inspect.signature(cls.__init__).parameters.values()
            if isinstance(p.default, tuple) and p.name in params
        }
        for name in tuples:
            if isinstance(params[name], list):
                params[name] = tuple(params[name])
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise StudentError(
                f"{folder / CONFIG_FILE} has hyper-parameters {', '.join(unknown)} that {cls.kind} does not take; "
                "it was saved by another version of Terakoya: upgrade, or retrain with `terakoya train`"
            )
        student = cls(**params)
        student.classes_ = [str(c) for c in config["classes"]]
        student.temperature_ = float(config.get("temperature", 1.0))
        student.metadata = dict(config.get("metadata", {}))
        student._load_weights(folder, config)
        return student

    def _load_weights(self, folder: Path, config: dict[str, Any]) -> None:
        """Read what ``save`` wrote beside config.json (weights.npz, by default) into the learned attributes."""
        try:
            with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError as exc:
            raise StudentError(
                f"{folder / WEIGHTS_FILE} is missing; the folder holds a config but no weights: "
                "retrain with `terakoya train`"
            ) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise StudentError(f"{folder / WEIGHTS_FILE} is damaged ({exc}); retrain with `terakoya train`") from exc
        try:
            self._restore(arrays, config)
        except (KeyError, ValueError) as exc:
            raise StudentError(
                f"{folder / WEIGHTS_FILE} does not fit its config.json ({exc}); retrain with `terakoya train`"
            ) from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
