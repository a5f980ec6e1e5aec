"""The generative student: a small causal language model that learns to answer like the teacher and the experts.

Training has two stages, both from TRL:

1. **SFT** (``trl.SFTTrainer``) on conversations that end with the answer to learn. Each row
   ``{"messages": [..., {"role": "assistant", "content": answer}]}`` is turned into TRL's *conversational
   prompt-completion* format (``prompt`` = the messages before the answer, ``completion`` = the answer), so
   the loss covers the answer and its end-of-turn token only (TRL's completion-only loss), never the
   system or user text. That works with any chat template; TRL's ``assistant_only_loss`` would need
   ``{% generation %}`` markers, which most base models' templates lack.
2. **DPO** (``trl.DPOTrainer``), when preference rows are given, on TRL's conversational preference format
   ``{"prompt": [...], "chosen": [assistant message], "rejected": [assistant message]}``, starting from
   the SFT model with a frozen copy of it as the reference (with LoRA: the SFT model with the adapters
   switched off, which is the same model).

The model is either a tiny GPT-2-style network built here (``base_model=None``) with its own byte-level
BPE tokenizer trained on the fit data (any language, Japanese included), or a local Hugging Face causal-LM
folder (``base_model="path"``), trained in full or through LoRA adapters (``lora=True``) that are merged
back before the student is used or saved.

A saved student is a standard Hugging Face folder plus ``terakoya.json``::

    config.json, generation_config.json, model.safetensors     the model (AutoModelForCausalLM)
    tokenizer.json, tokenizer_config.json, chat_template.jinja  the tokenizer (AutoTokenizer)
    terakoya.json   kind, task kind, format, hyper-parameters, metadata (rows, steps, losses,
                    seconds, parameters, library versions); written last, so a folder that has it is complete

    >>> student = GenerativeStudent(n_layer=2).fit(sft_rows, preference_rows)
    >>> student.generate([[{"role": "user", "content": "東京はどこ？"}]])[0].text
    >>> student.save(Path("runs/gen")); GenerativeStudent.load(Path("runs/gen"))
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from terakoya.errors import ConfigError, DataError, MissingDependency, StudentError
from terakoya.students.base import HyperParameters, library_versions

__all__ = ["META_FILE", "Generation", "GenerativeStudent", "is_generative_folder"]

#: the file that marks a folder as a saved generative student (written last)
META_FILE = "terakoya.json"
KIND = "generative.v1"
TASK_KIND = "generate.v1"
FORMAT = 1


#: special tokens of the tokenizer trained for a student built from scratch; the first is the end of a turn
_END, _PAD = "<|end|>", "<|pad|>"
_SPECIAL = [_END, _PAD, "<|system|>", "<|user|>", "<|assistant|>"]
#: a turn is ``<|role|>content`` and the end-of-turn (eos) token; the answer starts after ``<|assistant|>``
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}{{ eos_token }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
_ROLES = ("system", "user", "assistant")
#: models with fewer parameters train and generate on one CPU thread (see _threads_for)
SMALL_MODEL_PARAMETERS = 1_000_000
_LIBRARIES = ("torch", "transformers", "tokenizers", "trl", "peft", "datasets", "accelerate", "safetensors")


@dataclass(frozen=True)
class Generation:
    """One answer of the student: its text, how many tokens it generated, and how long it took."""

    text: str
    tokens: int  # generated tokens (the end-of-turn token included when the model wrote it)
    seconds: float
    prompt_tokens: int = 0  # tokens of the conversation as the model saw it
    finish_reason: str = "stop"  # as OpenAI says it: "stop" (end of turn) or "length" (ran out of tokens)


def is_generative_folder(path: Path) -> bool:
    """True when ``path`` is a folder saved by :class:`GenerativeStudent` (its terakoya.json names the kind)."""
    meta = Path(path) / META_FILE
    if not meta.is_file():
        return False
    try:
        return bool(json.loads(meta.read_text(encoding="utf-8")).get("kind") == KIND)
    except (OSError, ValueError, AttributeError):
        return False


def _libraries() -> None:
    """Import the training stack, or say which extra installs it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for module in ("torch", "transformers", "tokenizers", "trl", "datasets", "accelerate"):
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            raise MissingDependency.for_extra(exc.name or module, "generate", "the generative student") from exc


# ----------------------------------------------------------------------------- checking the rows


def _message(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise DataError(f"{where} is {type(value).__name__}; write each message as {{'role': ..., 'content': ...}}")
    role, content = value.get("role"), value.get("content")
    if role not in _ROLES:
        raise DataError(f"{where} has role {role!r}; use one of: {', '.join(_ROLES)}")
    if not isinstance(content, str):
        raise DataError(f"{where} has content of type {type(content).__name__}; the content must be a string")
    return {"role": str(role), "content": content}


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise DataError(f"{where} must be a non-empty list of messages ({{'role': ..., 'content': ...}})")
    return [_message(m, f"{where}[{i}]") for i, m in enumerate(value)]


def _sft_row(row: Any, i: int) -> dict[str, list[dict[str, str]]]:
    """SFT row ``i`` in TRL's conversational prompt-completion format."""
    if not isinstance(row, Mapping) or "messages" not in row:
        raise DataError(
            f"SFT row {i} has no 'messages'; write each row as "
            "{'messages': [{'role': 'user', 'content': ...}, {'role': 'assistant', 'content': ...}]}"
        )
    messages = _messages(row["messages"], f"SFT row {i}: messages")
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        raise DataError(
            f"SFT row {i} does not end with an assistant message after the prompt; "
            "end each conversation with the answer to learn, as {'role': 'assistant', 'content': ...}"
        )
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def _preference_row(row: Any, i: int) -> dict[str, list[dict[str, str]]]:
    """Preference row ``i`` in TRL's conversational preference format."""
    if not isinstance(row, Mapping) or not {"prompt", "chosen", "rejected"} <= set(row):
        raise DataError(
            f"preference row {i} needs 'prompt', 'chosen' and 'rejected'; write it as {{'prompt': [messages], "
            "'chosen': [{'role': 'assistant', 'content': ...}], 'rejected': [{'role': 'assistant', 'content': ...}]}"
        )
    out = {name: _messages(row[name], f"preference row {i}: {name}") for name in ("prompt", "chosen", "rejected")}
    for name in ("chosen", "rejected"):
        if [m["role"] for m in out[name]] != ["assistant"]:
            raise DataError(f"preference row {i}: {name} must be one assistant message, [{{'role': 'assistant', ...}}]")
    return out


def _steps(rows: int, epochs: float, batch_size: int) -> int:
    """Optimiser steps for ``epochs`` passes over ``rows`` in batches of ``batch_size`` (0 when nothing to do)."""
    if rows == 0 or epochs <= 0:
        return 0
    return max(1, math.ceil(epochs * math.ceil(rows / batch_size)))


def _losses(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The first, last and mean training loss logged by a trainer (one entry per step)."""
    values = [float(entry["loss"]) for entry in log_history if "loss" in entry]
    if not values:
        return {}
    return {"first": values[0], "final": values[-1], "mean": sum(values) / len(values)}


# ----------------------------------------------------------------------------- the student


class GenerativeStudent(HyperParameters):
    """A small causal language model fine-tuned with TRL (SFT, then DPO when there are preference pairs).

    Hyper-parameters (stored as given; scikit-learn's ``get_params``/``set_params``):
        base_model: a local Hugging Face causal-LM folder to start from (None: a tiny GPT-2-style model built
            here, with its own tokenizer trained on the fit data)
        vocab_size, n_layer, n_embd, n_head: the tiny model's tokenizer size and shape (ignored with base_model)
        max_length: tokens per training example (prompt and answer); the tiny model's context length
        sft_epochs, dpo_epochs: passes over the SFT rows and the preference rows (dpo_epochs=0: no DPO)
        learning_rate: AdamW's peak learning rate (linear decay) of SFT
        dpo_learning_rate: the same for DPO (None: a tenth of learning_rate; DPO at SFT's rate diverges)
        dpo_beta: DPO's beta (how far the student may move from the SFT model)
        batch_size: rows per optimiser step
        lora, lora_r: train LoRA adapters of rank lora_r on base_model instead of all weights
        max_new_tokens: tokens generated per answer unless generate() says otherwise
        seed: seeds the initial weights and the order of the batches

    Learned attributes: ``model_`` (a transformers causal LM, on the CPU), ``tokenizer_`` and ``metadata_``.
    """

    name: ClassVar[str] = KIND
    task_kind: ClassVar[str] = TASK_KIND

    def __init__(
        self,
        *,
        base_model: str | None = None,
        vocab_size: int = 2000,
        n_layer: int = 2,
        n_embd: int = 128,
        n_head: int = 4,
        max_length: int = 256,
        sft_epochs: float = 3.0,
        dpo_epochs: float = 1.0,
        learning_rate: float = 1e-3,
        dpo_learning_rate: float | None = None,
        dpo_beta: float = 0.1,
        batch_size: int = 8,
        lora: bool = False,
        lora_r: int = 8,
        max_new_tokens: int = 64,
        seed: int = 0,
    ) -> None:
        self.base_model = base_model
        self.vocab_size = vocab_size
        self.n_layer = n_layer
        self.n_embd = n_embd
        self.n_head = n_head
        self.max_length = max_length
        self.sft_epochs = sft_epochs
        self.dpo_epochs = dpo_epochs
        self.learning_rate = learning_rate
        self.dpo_learning_rate = dpo_learning_rate
        self.dpo_beta = dpo_beta
        self.batch_size = batch_size
        self.lora = lora
        self.lora_r = lora_r
        self.max_new_tokens = max_new_tokens
        self.seed = seed

    # ---- fitting

    def fit(
        self,
        sft: Sequence[Mapping[str, Any]],
        preferences: Sequence[Mapping[str, Any]] | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> GenerativeStudent:
        """SFT on ``sft`` conversations, then DPO on ``preferences`` (if any); returns ``self``.

        ``progress(done, total)`` is called after every optimiser step, counting both stages.
        """
        started = time.perf_counter()
        sft_rows = [_sft_row(row, i) for i, row in enumerate(sft)]
        if not sft_rows:
            raise DataError(
                "no SFT rows to train the generative student on; pass at least one conversation that ends with "
                "an assistant answer, {'messages': [{'role': 'user', ...}, {'role': 'assistant', ...}]}"
            )
        pref_rows = [_preference_row(row, i) for i, row in enumerate(preferences or [])]
        self._check_params()
        _libraries()
        sft_steps = _steps(len(sft_rows), self.sft_epochs, self.batch_size)
        dpo_steps = _steps(len(pref_rows), self.dpo_epochs, self.batch_size)
        report = _Progress(progress, sft_steps + dpo_steps)

        import torch
        import transformers

        with _quiet(), tempfile.TemporaryDirectory(prefix="terakoya-generative-") as scratch:
            transformers.set_seed(self.seed)
            model, tokenizer, origin = self._start(sft_rows, pref_rows)
            with _threads_for(model):
                sft_log = self._sft(model, tokenizer, sft_rows, sft_steps, Path(scratch, "sft"), report)
                model = sft_log.pop("model")
                dpo_log: dict[str, Any] = {}
                if dpo_steps:
                    report.offset = sft_steps
                    dpo_log = self._dpo(model, tokenizer, pref_rows, dpo_steps, Path(scratch, "dpo"), report)
                    model = dpo_log.pop("model")
        model = model.to("cpu").eval()
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = _stop_ids(model, tokenizer)
        self.model_ = model
        self.tokenizer_ = tokenizer
        self.metadata_: dict[str, Any] = {
            "rows": {"sft": sft_log["rows"], "preferences": dpo_log.get("rows", 0)},
            "steps": {"sft": sft_steps, "dpo": dpo_steps},
            "losses": {"sft": sft_log["losses"], "dpo": dpo_log.get("losses", {})},
            "seconds": {
                "sft": sft_log["seconds"],
                "dpo": dpo_log.get("seconds", 0.0),
                "total": round(time.perf_counter() - started, 3),
            },
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "model": origin,
            "sft_format": "conversational prompt-completion, completion-only loss",
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "library_versions": library_versions(*_LIBRARIES),
        }
        return self

    def _check_params(self) -> None:
        checks = [
            (self.max_length >= 8, f"max_length={self.max_length} is too short; use at least 8 tokens"),
            (self.batch_size >= 1, f"batch_size={self.batch_size}; use at least 1"),
            (self.sft_epochs > 0, f"sft_epochs={self.sft_epochs}; use a positive number of passes"),
            (self.dpo_epochs >= 0, f"dpo_epochs={self.dpo_epochs}; use 0 (no DPO) or more"),
            (self.learning_rate > 0, f"learning_rate={self.learning_rate}; use a positive learning rate"),
            (self.max_new_tokens >= 1, f"max_new_tokens={self.max_new_tokens}; use at least 1"),
        ]
        if self.base_model is None:
            least = 256 + len(_SPECIAL)
            checks += [
                (
                    self.vocab_size >= least,
                    f"vocab_size={self.vocab_size} is below the {least} tokens a byte-level "
                    f"tokenizer needs; use at least {least}",
                ),
                (
                    self.n_embd % self.n_head == 0,
                    f"n_embd={self.n_embd} is not a multiple of n_head={self.n_head}; "
                    "pick a width divisible by the number of heads",
                ),
                (
                    not self.lora,
                    "lora=True needs a base_model to put the adapters on; pass base_model=<folder> or set lora=False",
                ),
            ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"GenerativeStudent: {message}")

    def _start(
        self, sft_rows: list[dict[str, list[dict[str, str]]]], pref_rows: list[dict[str, list[dict[str, str]]]]
    ) -> tuple[Any, Any, dict[str, Any]]:
        """The model and tokenizer to train, and a description of where they came from."""
        if self.base_model is not None:
            model, tokenizer = _load_base(self.base_model)
            return model, tokenizer, {"base_model": self.base_model, "lora": self.lora}
        from transformers import GPT2Config, GPT2LMHeadModel

        texts = [m["content"] for row in [*sft_rows, *pref_rows] for part in row.values() for m in part]
        tokenizer = _train_tokenizer(texts, self.vocab_size, self.max_length)
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=self.max_length,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = GPT2LMHeadModel(config)
        return model, tokenizer, {"base_model": None, "architecture": "gpt2", "vocab": len(tokenizer)}

    def _common(self, output_dir: Path, steps: int) -> dict[str, Any]:
        """Training arguments both stages share: CPU-friendly, quiet, seeded, nothing written outside ``output_dir``."""
        import torch

        return {
            "output_dir": str(output_dir),
            "max_steps": steps,
            "per_device_train_batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "lr_scheduler_type": "linear",
            "warmup_steps": 0,
            "max_length": self.max_length,
            "bf16": False,
            "fp16": False,
            "gradient_checkpointing": False,
            "activation_checkpointing": False,  # the new name; the old one alone warns on transformers 5
            "use_cpu": not torch.cuda.is_available(),
            "report_to": [],
            "save_strategy": "no",
            "logging_strategy": "steps",
            "logging_steps": 1,
            "disable_tqdm": True,
            "log_level": "error",
            "dataloader_num_workers": 0,
            "dataloader_pin_memory": False,
            "seed": self.seed,
            "data_seed": self.seed,
        }

    def _lora_config(self) -> Any:
        if not self.lora:
            return None
        try:
            from peft import LoraConfig
        except ModuleNotFoundError as exc:
            raise MissingDependency.for_extra("peft", "generate", "lora=True") from exc
        return LoraConfig(
            r=self.lora_r,
            lora_alpha=2 * self.lora_r,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )

    def _sft(
        self,
        model: Any,
        tokenizer: Any,
        rows: list[dict[str, list[dict[str, str]]]],
        steps: int,
        output_dir: Path,
        report: _Progress,
    ) -> dict[str, Any]:
        from trl.trainer.sft_config import SFTConfig
        from trl.trainer.sft_trainer import SFTTrainer

        from datasets import Dataset

        args = SFTConfig(**self._common(output_dir, steps), completion_only_loss=True, packing=False)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=self._lora_config(),
            callbacks=[report.callback()],
        )
        return _train(trainer)

    def _dpo(
        self,
        model: Any,
        tokenizer: Any,
        rows: list[dict[str, list[dict[str, str]]]],
        steps: int,
        output_dir: Path,
        report: _Progress,
    ) -> dict[str, Any]:
        from trl.trainer.dpo_config import DPOConfig
        from trl.trainer.dpo_trainer import DPOTrainer

        from datasets import Dataset

        peft_config = self._lora_config()
        # a frozen copy of the SFT model is the reference (with LoRA, the model with its adapters off is)
        reference = None if peft_config is not None else copy.deepcopy(model).eval().requires_grad_(False)
        rate = self.dpo_learning_rate if self.dpo_learning_rate is not None else self.learning_rate / 10
        args = DPOConfig(**{**self._common(output_dir, steps), "learning_rate": rate}, beta=self.dpo_beta)
        trainer = DPOTrainer(
            model=model,
            ref_model=reference,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[report.callback()],
        )
        return _train(trainer)

    # ---- generating

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise StudentError(
                "this GenerativeStudent is not fitted yet; call fit(sft_rows) first or GenerativeStudent.load(folder)"
            )

    def generate(
        self,
        conversations: Sequence[Sequence[Mapping[str, str]]],
        *,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> list[Generation]:
        """The student's answer to each conversation (greedy when ``temperature`` is 0), stopping at end of turn."""
        self._check_fitted()
        wanted = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if wanted < 1:
            raise DataError(f"max_new_tokens={wanted}; ask for at least 1 token")
        if temperature < 0:
            raise DataError(f"temperature={temperature}; use 0 (greedy) or a positive temperature")
        prompts = [_messages(c, f"conversation {i}") for i, c in enumerate(conversations)]
        with _threads_for(self.model_):
            return [self._generate_one(messages, wanted, temperature) for messages in prompts]

    def _generate_one(self, messages: list[dict[str, str]], wanted: int, temperature: float) -> Generation:
        import torch

        started = time.perf_counter()
        ids = self.tokenizer_.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        context = _context_length(self.model_.config, self.max_length)
        new = min(wanted, max(context - len(ids), context // 2))  # a long conversation leaves half the room
        ids = ids[-(context - new) :]  # and keeps its end: the last question
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {}
        with torch.inference_mode():
            result = self.model_.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=new,
                pad_token_id=self.tokenizer_.pad_token_id,
                **({"do_sample": False} | sampling),
            )
        generated = result[0, len(ids) :].tolist()
        stopped = bool(generated) and generated[-1] in _stop_ids(self.model_, self.tokenizer_)
        return Generation(
            text=self.tokenizer_.decode(generated, skip_special_tokens=True).strip(),
            tokens=len(generated),
            seconds=time.perf_counter() - started,
            prompt_tokens=len(ids),
            finish_reason="stop" if stopped or len(generated) < new else "length",
        )

    def log_likelihood(
        self, conversations: Sequence[Sequence[Mapping[str, str]]], answers: Sequence[str]
    ) -> list[float]:
        """The log-probability the student gives each answer after its conversation (summed over the answer's
        tokens and the end of turn): what DPO moves, chosen answers up and rejected ones down."""
        import torch

        self._check_fitted()
        if len(conversations) != len(answers):
            raise DataError(f"{len(conversations)} conversations but {len(answers)} answers; give one answer each")
        out = []
        context = _context_length(self.model_.config, self.max_length)
        with _threads_for(self.model_), torch.inference_mode():
            for i, (conversation, answer) in enumerate(zip(conversations, answers, strict=True)):
                messages = _messages(conversation, f"conversation {i}")
                prompt = self.tokenizer_.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
                full = self.tokenizer_.apply_chat_template(
                    [*messages, {"role": "assistant", "content": answer}], return_dict=True
                )
                start, ids = len(prompt["input_ids"]), list(full["input_ids"])
                cut = max(0, len(ids) - context)  # keep the end: the answer
                ids, start = ids[cut:], max(1, start - cut)
                logits = self.model_(torch.tensor([ids])).logits[0, :-1]
                logp = torch.log_softmax(logits.float(), dim=-1)
                targets = torch.tensor(ids[1:])
                picked = logp[torch.arange(len(targets)), targets][start - 1 :]
                out.append(float(picked.sum()))
        return out

    # ---- saving

    def describe(self) -> dict[str, Any]:
        """What terakoya.json holds: kind, task kind, format, hyper-parameters and metadata."""
        return {
            "kind": KIND,
            "task_kind": TASK_KIND,
            "format": FORMAT,
            "params": self.get_params(),
            "metadata": dict(getattr(self, "metadata_", {})),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def save(self, path: Path) -> Path:
        """Write the student into folder ``path`` (a Hugging Face folder plus terakoya.json); returns ``path``."""
        self._check_fitted()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise StudentError(f"{path} is a file; pass a folder to save the student into")
        path.mkdir(parents=True, exist_ok=True)
        (path / META_FILE).unlink(missing_ok=True)  # the folder is incomplete until terakoya.json is back
        with _quiet():
            self.model_.save_pretrained(path)
            self.tokenizer_.save_pretrained(path)
        tmp = path / f".{META_FILE}.tmp"
        tmp.write_text(json.dumps(self.describe(), indent=2, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path / META_FILE)
        return path

    @classmethod
    def load(cls, path: Path) -> GenerativeStudent:
        """The student saved in folder ``path`` by :meth:`save`."""
        folder = Path(path)
        fix = "pass the folder GenerativeStudent.save wrote, or train the student again"
        if not folder.is_dir():
            raise StudentError(f"no saved generative student at {folder}: the folder does not exist; {fix}")
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise StudentError(f"{folder} is not a saved generative student: it has no {META_FILE}; {fix}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StudentError(f"{meta_path} is damaged ({exc}); {fix}") from exc
        if not isinstance(meta, dict) or meta.get("kind") != KIND:
            kind = meta.get("kind") if isinstance(meta, dict) else None
            raise StudentError(f"{meta_path} names kind {kind!r}, not {KIND}; {fix}")
        if not isinstance(meta.get("format"), int) or meta["format"] > FORMAT:
            raise StudentError(
                f"{meta_path} has format {meta.get('format')!r}, newer than this Terakoya reads ({FORMAT}); "
                "upgrade terakoya"
            )
        params = dict(meta.get("params") or {})
        unknown = sorted(set(params) - set(cls._param_names()))
        if unknown:
            raise StudentError(
                f"{meta_path} has hyper-parameters this Terakoya does not know ({', '.join(unknown)}); upgrade terakoya"
            )
        _libraries()
        student = cls(**params)
        with _quiet():
            student.model_, student.tokenizer_ = _load_pretrained(folder, fix)
        student.model_.eval()
        student.metadata_ = dict(meta.get("metadata") or {})
        return student


# ----------------------------------------------------------------------------- helpers that touch the libraries


class _Progress:
    """Calls ``progress(done, total)`` after every optimiser step of either stage."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.offset = 0

    def callback(self) -> Any:
        from transformers import TrainerCallback

        report = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if report.progress is not None:
                    report.progress(report.offset + int(state.global_step), report.total)

        return _Callback()


@contextlib.contextmanager
def _threads_for(model: Any) -> Iterator[None]:
    """One CPU thread for a small model while the block runs (then torch's setting again).

    A tiny model's matrix products are too short to share: on a busy 2-core machine a second thread only
    added waiting (a 0.5M-parameter model with short rows: 17 steps/s on one thread, 2.5 on two). From about
    the default size on (0.7M parameters, 200-token rows) the two settings were even, so larger models keep
    torch's setting.
    """
    import torch

    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS
    before = torch.get_num_threads()
    if small and not torch.cuda.is_available():
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars, load reports or deprecation notes from transformers, datasets and TRL."""
    from datasets import utils as datasets_bars
    from terakoya.students.finetune import _quiet as transformers_quiet

    bars_were_on = not datasets_bars.are_progress_bars_disabled()
    datasets_bars.disable_progress_bars()
    try:
        with transformers_quiet(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*deprecated and will be removed in v6", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r"fan_in_fan_out is set to False", category=UserWarning)
            yield
    finally:
        if bars_were_on:
            datasets_bars.enable_progress_bars()


def _train(trainer: Any) -> dict[str, Any]:
    """Run ``trainer``; the trained model (LoRA adapters merged) and what the run logged."""
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # it prints every logged loss
    trainer.remove_callback(ProgressCallback)
    if len(trainer.train_dataset) == 0:
        raise DataError(
            f"every row is too long: after cutting to max_length={trainer.args.max_length} tokens no answer is left "
            "to learn; raise max_length or shorten the prompts"
        )
    started = time.perf_counter()
    trainer.train()
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return {
        "model": model,
        "rows": len(trainer.train_dataset),
        "losses": _losses(trainer.state.log_history),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _train_tokenizer(texts: list[str], vocab_size: int, max_length: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (any script): a transformers tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        eos_token=_END,
        pad_token=_PAD,
        additional_special_tokens=_SPECIAL[2:],
        chat_template=CHAT_TEMPLATE,
        model_max_length=max_length,
    )


def _load_pretrained(folder: Path, fix: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as exc:
        raise StudentError(
            f"{folder} does not hold a causal language model that transformers can load ({exc}); {fix}"
        ) from exc
    return model, tokenizer


def _load_base(base_model: str) -> tuple[Any, Any]:
    """The local Hugging Face causal-LM folder ``base_model`` and its tokenizer, ready for chat training."""
    folder = Path(base_model).expanduser()
    if not folder.is_dir() or not (folder / "config.json").is_file():
        what = "does not exist" if not folder.exists() else "is not a Hugging Face model folder (no config.json)"
        raise ConfigError(
            f"base_model {base_model!r} {what}; pass the path of a local Hugging Face causal-LM folder "
            "(config.json, weights, tokenizer) — models are never downloaded — or base_model=None to build a tiny "
            "model here (in terakoya.toml: generate.student_base_model)"
        )
    model, tokenizer = _load_pretrained(folder, "pass a causal language model folder as base_model")
    if tokenizer.eos_token is None:
        raise ConfigError(
            f"the tokenizer in {folder} has no end-of-sequence token; the student could not learn "
            "to stop — pick a base model whose tokenizer defines eos_token"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return model, tokenizer


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokens that end an answer: the tokenizer's end of turn and any the model's generation config names."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [] if configured is None else [configured]
    return sorted({int(i) for i in ids} | {int(tokenizer.eos_token_id)})


def _context_length(config: Any, fallback: int) -> int:
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return fallback
