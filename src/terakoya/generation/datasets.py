"""The datasets out of a generate project, in TRL's conversational formats, and Anthropic HH-RLHF in.

Two record kinds come in: an :class:`SFTExample` (one answer worth imitating) and a :class:`PreferencePair` (a
better and a worse answer to one prompt). They go out as rows TRL's trainers read as they are:

- :func:`sft_rows` → ``{"messages": [...prompt, {"role": "assistant", "content": answer}]}`` for ``SFTTrainer``
- :func:`preference_rows` → ``{"prompt": [...], "chosen": [assistant turn], "rejected": [assistant turn]}`` for
  ``DPOTrainer`` (and the other preference trainers)

Both add two provenance columns, ``item`` (the item's external id) and ``source``, unless
``provenance=False``. TRL 1.16 leaves such columns alone: its dataset preparation maps only the columns it
knows (``messages``, ``prompt``, ``chosen``, ``rejected``, ``completion``, ``label``, ``tools``,
``chat_template_kwargs``) and adds token columns beside the rest; the Trainer's ``remove_unused_columns`` (on
by default) drops the rest before batching; and its collators read only the token columns by name, so even
with ``remove_unused_columns=False`` extra string columns are ignored. (Checked in trl/trainer/sft_trainer.py,
dpo_trainer.py and data_utils.py, and by a one-step SFT and DPO run in tests/test_generation_datasets.py.)
The provenance columns avoid those reserved names, so they never change how a row is read.

Rows go to disk as JSONL (:func:`write_jsonl`) or as a ``datasets`` folder that ``datasets.load_from_disk``
opens (:func:`write_dataset_folder`); both appear only when complete. ``datasets`` (the ``generate`` extra) is
imported only by the function that needs it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from terakoya.errors import ConfigError, DataError, MissingDependency

__all__ = [
    "PREFERENCE_SOURCES",
    "ROLES",
    "SFT_SOURCES",
    "HHRLHFRead",
    "PreferencePair",
    "SFTExample",
    "dataset_card",
    "preference_rows",
    "read_hh_rlhf",
    "sft_rows",
    "write_dataset_folder",
    "write_jsonl",
]

#: where an answer worth imitating came from (``teacher_unreviewed``: no expert saw it, and the project trains
#: on such answers; ``expert_preferred``: the sample an expert picked over another)
SFT_SOURCES = (
    "teacher_accepted",
    "teacher_unreviewed",
    "expert_corrected",
    "expert_preferred",
    "expert_written",
    "reference",
)
#: where a preference came from: an expert's correction of a teacher answer, or an expert comparing two answers
PREFERENCE_SOURCES = ("correction", "comparison")
#: the roles a prompt conversation may hold
ROLES = ("system", "user", "assistant")

Message = Mapping[str, str]


@dataclass(frozen=True)
class SFTExample:
    """One accepted or corrected answer: the prompt conversation (system/user turns) and the answer to it."""

    item_id: int
    external_id: str
    messages: tuple[Message, ...]
    answer: str
    source: str  # one of SFT_SOURCES

    def __post_init__(self) -> None:
        if self.source not in SFT_SOURCES:
            raise DataError(
                f"item {self.external_id}: SFT source {self.source!r} is not one of {', '.join(SFT_SOURCES)}; "
                "say where the answer came from with one of those"
            )


@dataclass(frozen=True)
class PreferencePair:
    """A better (``chosen``) and a worse (``rejected``) answer to one prompt conversation."""

    item_id: int
    external_id: str
    messages: tuple[Message, ...]
    chosen: str
    rejected: str
    source: str  # one of PREFERENCE_SOURCES

    def __post_init__(self) -> None:
        if self.source not in PREFERENCE_SOURCES:
            raise DataError(
                f"item {self.external_id}: preference source {self.source!r} is not one of "
                f"{', '.join(PREFERENCE_SOURCES)}; use 'correction' when an expert's corrected answer replaces a "
                "teacher answer, 'comparison' when an expert compared two answers"
            )


def _prompt(messages: Sequence[Message], external_id: str) -> list[dict[str, str]]:
    """The prompt as plain ``{"role", "content"}`` dicts, checked: known roles, ending on a user turn."""
    if not messages:
        raise DataError(f"item {external_id}: the prompt has no messages; give at least one user turn")
    out = []
    for position, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or role not in ROLES or not isinstance(content, str):
            raise DataError(
                f"item {external_id}: prompt message {position} is {dict(message)!r}; each message needs a 'role' "
                f"({', '.join(ROLES)}) and a string 'content'"
            )
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise DataError(
            f"item {external_id}: the prompt ends on a {out[-1]['role']} turn; it must end on the user turn the "
            "answer replies to"
        )
    return out


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def sft_rows(examples: Sequence[SFTExample], *, provenance: bool = True) -> list[dict[str, Any]]:
    """TRL conversational language-modeling rows: the prompt turns, then the answer as the assistant's turn.

    With ``provenance``, each row also holds ``item`` (the external id) and ``source``.
    """
    rows: list[dict[str, Any]] = []
    for example in examples:
        row: dict[str, Any] = {
            "messages": [*_prompt(example.messages, example.external_id), _assistant(example.answer)]
        }
        if provenance:
            row |= {"item": example.external_id, "source": example.source}
        rows.append(row)
    return rows


def preference_rows(pairs: Sequence[PreferencePair], *, provenance: bool = True) -> list[dict[str, Any]]:
    """TRL conversational preference rows (explicit prompt): ``prompt``, ``chosen`` and ``rejected`` turn lists.

    With ``provenance``, each row also holds ``item`` (the external id) and ``source``.
    """
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        row: dict[str, Any] = {
            "prompt": _prompt(pair.messages, pair.external_id),
            "chosen": [_assistant(pair.chosen)],
            "rejected": [_assistant(pair.rejected)],
        }
        if provenance:
            row |= {"item": pair.external_id, "source": pair.source}
        rows.append(row)
    return rows


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise ConfigError(f"folder {path.parent} does not exist; create it or choose another output path")


def write_jsonl(rows: Sequence[Mapping[str, Any]], path: Path, *, force: bool = False) -> int:
    """Write ``rows`` as UTF-8 JSON lines (non-ASCII kept as is); returns the rows written.

    The file appears only when complete (a temporary file beside it, renamed at the end). An existing file is
    replaced only with ``force``.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a file name, for example {path / 'sft.jsonl'}")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass force=True (--force) to replace it, or choose another path")
    _check_parent(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a dataset is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return len(rows)


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependency.for_extra("datasets", "generate", "Writing a Hugging Face dataset folder") from exc
    datasets.disable_progress_bars()  # the CLI shows its own progress
    return datasets


def write_dataset_folder(
    rows: Sequence[Mapping[str, Any]], path: Path, *, force: bool = False, card: str | None = None
) -> Path:
    """Save ``rows`` as a Hugging Face ``datasets`` folder (``datasets.load_from_disk(path)`` opens it).

    The folder is built beside ``path`` and renamed into place when complete. An existing non-empty folder is
    replaced only with ``force``. ``card`` (for example from :func:`dataset_card`) becomes the folder's README.md.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is a file; give a folder path to save the dataset into")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise ConfigError(f"folder {path} is not empty; pass force=True (--force) to replace it, or choose another")
    if not rows:
        raise DataError(f"no rows to save into {path}; a dataset folder needs at least one example")
    _check_parent(path)
    datasets = _datasets()
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    old: Path | None = None
    try:
        datasets.Dataset.from_list([dict(row) for row in rows]).save_to_disk(str(tmp))
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private; a dataset is an ordinary folder
        if path.is_dir() and any(path.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            path.replace(old / path.name)
        elif path.is_dir():
            path.rmdir()
        tmp.replace(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            (old / path.name).replace(path)  # put the previous dataset back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


def dataset_card(rows: Sequence[Mapping[str, Any]], *, title: str, description: str = "") -> str:
    """A short README.md for a dataset folder: what it is, how many rows, from which sources, how to load it."""
    sources = Counter(str(row.get("source", "unknown")) for row in rows)
    kind = "preference" if rows and "chosen" in rows[0] else "conversational language modeling (SFT)"
    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    lines += [f"{len(rows)} rows, TRL {kind} format.", "", "| source | rows |", "|---|---|"]
    lines += [f"| {source} | {count} |" for source, count in sorted(sources.items())]
    lines += ["", "```python", "import datasets", "", 'ds = datasets.load_from_disk("path/to/this/folder")', "```", ""]
    return "\n".join(lines)


# --- Anthropic HH-RLHF -------------------------------------------------------------------------------------

#: a turn starts at a blank line followed by "Human:" or "Assistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLE = {"Human": "user", "Assistant": "assistant"}


@dataclass(frozen=True)
class HHRLHFRead:
    """What :func:`read_hh_rlhf` made of a file: the pairs, and how many records it skipped and why.

    Skip reasons: ``"identical"`` (chosen and rejected end on the same answer), ``"diverged_early"`` (the two
    conversations part before their final assistant turn, so there is no one prompt for both), ``"incomplete"``
    (a conversation does not end on an assistant answer to a user turn).
    """

    path: Path
    pairs: list[PreferencePair]
    records: int
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with _open_text(path) as fh:
            yield from enumerate(fh, start=1)
    except FileNotFoundError as exc:
        raise DataError(f"{path} does not exist; check the path to the HH-RLHF .jsonl or .jsonl.gz file") from exc
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} cannot be read ({exc}); give an HH-RLHF .jsonl file, or .jsonl.gz") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 ({exc.reason}); HH-RLHF files are UTF-8 JSON lines") from exc


def _hh_turns(text: str, where: str, key: str) -> list[dict[str, str]]:
    """``"\\n\\nHuman: …\\n\\nAssistant: …"`` as turns; consecutive turns of one role become one turn."""
    parts = _TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise DataError(
            f"{where}: {key!r} is not an HH-RLHF conversation (it should start with '\\n\\nHuman: ' and hold "
            "'\\n\\nAssistant: ' turns); fix or delete the line"
        )
    turns: list[dict[str, str]] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role, content = _ROLE[speaker], content.strip()
        if turns and turns[-1]["role"] == role:  # a few records repeat a speaker: keep the roles alternating
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{content}"
        else:
            turns.append({"role": role, "content": content})
    return turns


def _hh_record(line: str, where: str) -> tuple[str, str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno}); fix or delete the line") from exc
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object with 'chosen' and 'rejected'; fix or delete the line")
    missing = [key for key in ("chosen", "rejected") if not isinstance(record.get(key), str)]
    if missing:
        raise DataError(
            f"{where}: {' and '.join(repr(k) for k in missing)} missing or not text (keys: "
            f"{', '.join(sorted(record)) or 'none'}); each line needs 'chosen' and 'rejected' conversations"
        )
    return record["chosen"], record["rejected"]


def read_hh_rlhf(path: Path, limit: int | None = None) -> HHRLHFRead:
    """Read Anthropic HH-RLHF JSON lines (``.jsonl`` or ``.jsonl.gz``) into comparison pairs.

    Each line's ``chosen`` and ``rejected`` are one conversation with different last assistant turns: the turns
    they share become the prompt (Human → user, Assistant → assistant, ending on a user turn), the two last
    answers become ``chosen`` and ``rejected``. Records whose answers are the same, or whose conversations part
    earlier, are skipped and counted in the result's ``skipped``. ``limit`` stops after that many pairs.
    A pair's ``item_id`` is its line number and its ``external_id`` is ``file name:line``.

    Text that says "Human:" without the blank line before it stays inside the turn, as the dataset wrote it.
    """
    path = Path(path)
    pairs: list[PreferencePair] = []
    skipped: Counter[str] = Counter()
    records = 0
    for number, line in _lines(path):
        if limit is not None and len(pairs) >= limit:
            break
        if not line.strip():
            continue
        where = f"{path}:{number}"
        records += 1
        chosen_text, rejected_text = _hh_record(line, where)
        chosen, rejected = _hh_turns(chosen_text, where, "chosen"), _hh_turns(rejected_text, where, "rejected")
        prompt, chosen_last, rejected_last = chosen[:-1], chosen[-1], rejected[-1]
        if not prompt or chosen_last["role"] != "assistant" or rejected_last["role"] != "assistant":
            skipped["incomplete"] += 1
            continue
        if prompt != rejected[:-1]:
            skipped["diverged_early"] += 1
            continue
        if chosen_last["content"] == rejected_last["content"]:
            skipped["identical"] += 1
            continue
        pairs.append(
            PreferencePair(
                item_id=number,
                external_id=f"{path.name}:{number}",
                messages=tuple(prompt),
                chosen=chosen_last["content"],
                rejected=rejected_last["content"],
                source="comparison",
            )
        )
    return HHRLHFRead(path=path, pairs=pairs, records=records, skipped=dict(skipped))
