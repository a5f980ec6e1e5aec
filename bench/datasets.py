"""The distillation benchmark's datasets, read from ../shared/data (never copied into the project).

- ``fpb``: Financial PhraseBank, the 50 %-agreement file (UTF-8 ``sentence@label`` lines). Each sentence's
  *difficulty* comes from the other agreement files (latin-1): in the all-agree file it is easy (0), in the
  75 % file but not the all-agree one medium (1), in the 66 % file but not the 75 % one harder (2), only in
  the 50 % file hardest (3). The files disagree on encoding (the 50 % file carries U+FFFD where the others
  have a latin-1 letter), so sentences are matched after mapping every non-ASCII character to U+FFFD and
  collapsing whitespace. The pool/test split is Terakoya's own seeded, stratified 80/20 import split.
- ``chabsa``: chABSA's derived binary sentences (train 1,970 → pool, test 843 → test). No difficulty is
  recorded, so every sentence gets the same one (uniform).

A missing file raises :class:`DataMissing`; the runner skips that dataset and says why.
"""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FPB_DIR = SHARED / "financial_phrasebank"
CHABSA_DIR = SHARED / "chabsa" / "sentence_binary_derived"

DIFFICULTY_NAMES = {0: "easy (all agree)", 1: "medium (≥75 %)", 2: "harder (≥66 %)", 3: "hardest (50 % only)"}


class DataMissing(FileNotFoundError):
    """A dataset file is not under ../shared/data."""


@dataclass(frozen=True)
class Row:
    id: str
    text: str
    label: str
    #: 0 easy … 3 hardest (FPB); a constant where none is recorded
    difficulty: int
    #: "pool" or "test" where the files fix the split; None where Terakoya's import splits
    split: str | None = None


@dataclass
class Dataset:
    key: str
    title: str
    language: str
    labels: dict[str, str]
    guidelines: str
    examples: list[tuple[str, str]]
    rows: list[Row]
    difficulty_note: str
    sample_note: str = ""
    imports: list[dict[str, object]] = field(default_factory=list)

    def difficulty_counts(self) -> dict[str, int]:
        counts = Counter(r.difficulty for r in self.rows)
        return {
            DIFFICULTY_NAMES.get(d, str(d)) if self.key == "fpb" else "uniform": n for d, n in sorted(counts.items())
        }

    def write_imports(self, folder: Path) -> list[dict[str, object]]:
        """CSV files for ``Project.import_file`` (id, sentence, label), one per split the files fix."""
        folder.mkdir(parents=True, exist_ok=True)
        groups: dict[str | None, list[Row]] = {}
        for row in self.rows:
            groups.setdefault(row.split, []).append(row)
        out: list[dict[str, object]] = []
        for split, rows in groups.items():
            path = folder / f"{self.key}_{split or 'all'}.csv"
            with path.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["id", "sentence", "label"])
                writer.writerows([r.id, r.text, r.label] for r in rows)
            # no fixed split: Terakoya's seeded stratified import split puts 20 % into the test split
            out.append({"path": path, "split": split or "test", "fraction": 1.0 if split else 0.2})
        return out

    def toml(self, *, name: str, teacher: str, kind: str | None, fingerprint: str) -> str:
        """The project file. ``teacher`` is a ``[teacher]`` table or "" (the project defaults apply)."""
        labels = "".join(f'[[labels]]\nname = "{n}"\ndescription = "{d}"\n\n' for n, d in self.labels.items())
        examples = "".join(f'[[examples]]\ntext = "{t}"\nlabel = "{lab}"\n\n' for t, lab in self.examples)
        student = f'[student]\nkind = "{kind}"\n\n' if kind else ""
        return (
            f'# written by bench/run.py — {fingerprint}\n[project]\nname = "{name}"\nlanguage = "{self.language}"\n'
            f'seed = 0\n\n{labels}[guidelines]\ntext = """\n{self.guidelines}\n"""\n\n{examples}{teacher}{student}'
        )


def ascii_key(text: str) -> str:
    """How FPB's four files are matched: non-ASCII characters as U+FFFD, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"[^\x00-\x7f]", "\ufffd", text)).strip()


def _agree_file(name: str, encoding: str) -> list[tuple[str, str]]:
    path = FPB_DIR / name
    if not path.is_file():
        raise DataMissing(path)
    rows = []
    for line in path.read_text(encoding=encoding).splitlines():
        text, sep, label = line.rpartition("@")
        if sep and text.strip():
            rows.append((text, label.strip()))
    return rows


def load_fpb(limit: int | None = None) -> Dataset:
    rows50 = _agree_file("Sentences_50Agree.txt", "utf-8")
    levels = {
        0: {ascii_key(t) for t, _ in _agree_file("Sentences_AllAgree.txt", "latin-1")},
        1: {ascii_key(t) for t, _ in _agree_file("Sentences_75Agree.txt", "latin-1")},
        2: {ascii_key(t) for t, _ in _agree_file("Sentences_66Agree.txt", "latin-1")},
    }

    def difficulty(text: str) -> int:
        key = ascii_key(text)
        return next((level for level in (0, 1, 2) if key in levels[level]), 3)

    if limit:
        rows50 = random.Random(0).sample(rows50, min(limit, len(rows50)))
    rows = [Row(f"fpb-{i}", t, lab, difficulty(t)) for i, (t, lab) in enumerate(rows50, start=1)]
    return Dataset(
        key="fpb",
        title="Financial PhraseBank (50 % agreement, seeded 80/20 stratified split)",
        language="en",
        labels={
            "positive": "good news for the company: growth, higher profit or sales, new orders, upgrades",
            "negative": "bad news for the company: losses, falling sales, layoffs, downgrades, lawsuits",
            "neutral": "no clear good or bad news: facts, announcements, descriptions of the business",
        },
        guidelines="Label the tone of the sentence for the company's investors: positive, negative or neutral.",
        examples=[
            ("Net sales increased by 18.5 % to EUR 167.8 million compared with the previous year.", "positive"),
            ("The company said it will cut 140 jobs after orders fell sharply in the second quarter.", "negative"),
            ("The annual general meeting will be held in Helsinki on 24 March.", "neutral"),
            ("Operating loss widened to EUR 4.2 million from EUR 1.1 million a year earlier.", "negative"),
        ],
        rows=rows,
        difficulty_note="from the annotators' agreement files: easy = all agree, medium = ≥75 %, harder = ≥66 %, "
        "hardest = 50 % only",
        sample_note=f"a seeded sample of {len(rows)} sentences" if limit else "",
    )


def load_chabsa(limit: int | None = None) -> Dataset:
    if not CHABSA_DIR.is_dir():
        raise DataMissing(CHABSA_DIR)
    rows: list[Row] = []
    for split, name in (("pool", "train.tsv"), ("test", "test.tsv")):
        path = CHABSA_DIR / name
        if not path.is_file():
            raise DataMissing(path)
        lines = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if limit:
            lines = random.Random(0).sample(lines, min(limit if split == "pool" else limit // 3, len(lines)))
        for i, parts in enumerate(lines, start=1):
            label = "positive" if parts[1].strip() == "1" else "negative"
            rows.append(Row(f"{split}-{i}", parts[0], label, 0, split))
    return Dataset(
        key="chabsa",
        title="chABSA (Japanese securities reports, binary sentences)",
        language="ja",
        labels={
            "negative": "bad for the company: lower sales or profit, losses, worse conditions",
            "positive": "good for the company: higher sales or profit, growth, improvement",
        },
        guidelines="有価証券報告書の文が会社にとって良い内容 (positive) か悪い内容 (negative) かを判断する。",
        examples=[
            ("売上高は前年同期比12.3％増の450億円となりました", "positive"),
            ("営業利益は原材料価格の高騰により前年同期比25.1％減となりました", "negative"),
            ("海外事業の受注が好調に推移し、経常利益は過去最高を更新しました", "positive"),
            ("個人消費の低迷により、販売数量は減少しました", "negative"),
        ],
        rows=rows,
        difficulty_note="none recorded: every sentence has the same (uniform) difficulty",
        sample_note=f"a seeded sample of {len(rows)} sentences" if limit else "",
    )


LOADERS = {"fpb": load_fpb, "chabsa": load_chabsa}


def load(key: str, limit: int | None = None) -> Dataset:
    if key not in LOADERS:
        raise ValueError(f"unknown dataset {key!r}; choose from {', '.join(LOADERS)}")
    return LOADERS[key](limit)
