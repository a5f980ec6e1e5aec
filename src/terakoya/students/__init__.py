"""Students: small classifiers distilled from the teacher and the experts.

Every student follows scikit-learn's contract (``fit`` returns ``self``, learned attributes end in
``_``, ``predict_proba``) and saves into a folder that describes itself. The registry below is the
one list of students, by versioned name; a short name (``linear``) means its newest version.

    >>> student = make_student("linear", classes=["negative", "positive"])
    >>> student.fit(texts, labels).save(Path("model"))
    >>> load(Path("model")).predict_proba(["Profit rose."])

The students: ``linear`` (hashed n-grams, seconds to train, any language), ``embed`` (a frozen
sentence encoder and a softmax head; MiniLM for English, multilingual-e5-small for the rest) and
``finetune`` (MiniLM fine-tuned end to end; minutes on a CPU, saved as a Hugging Face folder).
:func:`choose_student` picks one of them by cross-validation ("auto" is that choice, not a student),
and :func:`student_params_for` gives the hyper-parameters a project's language and folder imply.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from terakoya.errors import StudentError
from terakoya.students.auto import CandidateScore, choose_student, student_params_for
from terakoya.students.base import CONFIG_FILE, FORMAT, FORMAT_VERSION, Student
from terakoya.students.embed import EmbedStudent, encoder_for_language
from terakoya.students.finetune import FinetuneStudent
from terakoya.students.linear import LinearStudent

__all__ = [
    "STUDENTS",
    "CandidateScore",
    "EmbedStudent",
    "FinetuneStudent",
    "LinearStudent",
    "Student",
    "choose_student",
    "encoder_for_language",
    "load",
    "make_student",
    "registered",
    "resolve",
    "student_params_for",
]

#: every student, by versioned name
STUDENTS: dict[str, type[Student]] = {
    "linear.v1": LinearStudent,
    "embed.v1": EmbedStudent,
    "finetune.v1": FinetuneStudent,
}

_VERSIONED = re.compile(r"^(?P<base>.+)\.v(?P<version>\d+)$")


def registered() -> list[str]:
    """The registered names, versioned."""
    return sorted(STUDENTS)


def resolve(name: str) -> str:
    """The versioned name for ``name`` (``linear`` -> the newest ``linear.vN``)."""
    if name in STUDENTS:
        return name
    versions = [(int(m["version"]), full) for full in STUDENTS if (m := _VERSIONED.match(full)) and m["base"] == name]
    if versions:
        return max(versions)[1]
    shorts = sorted({m["base"] for full in STUDENTS if (m := _VERSIONED.match(full))})
    raise StudentError(
        f"unknown student kind {name!r}; registered students are: {', '.join(shorts)} "
        f"(versioned: {', '.join(registered())}); set student.kind to one of them"
    )


def make_student(name: str, **params: Any) -> Student:
    """A new, unfitted student of kind ``name`` with hyper-parameters ``params``."""
    cls = STUDENTS[resolve(name)]
    try:
        return cls(**params)
    except TypeError as exc:
        valid = ", ".join(cls._param_names())
        raise StudentError(f"student {cls.kind}: {exc}; its hyper-parameters are: {valid}") from exc


def load(path: Path | str) -> Student:
    """The student saved in folder ``path`` (by ``Student.save`` or ``terakoya train``)."""
    folder = Path(path)
    fix = "pass the folder that `terakoya train` wrote (runs/<run id>) or retrain with `terakoya train`"
    if not folder.exists():
        raise StudentError(f"no saved student at {folder}: the folder does not exist; {fix}")
    if not folder.is_dir():
        raise StudentError(f"{folder} is a file, not a saved student folder; {fix}")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise StudentError(f"{folder} is not a saved student: it has no {CONFIG_FILE}; {fix}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudentError(f"{config_path} is damaged ({exc}); retrain with `terakoya train`") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT or "classes" not in config:
        raise StudentError(f"{config_path} is not a Terakoya student config; {fix}")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StudentError(
            f"{config_path} has format version {version!r}, newer than this Terakoya reads ({FORMAT_VERSION}); "
            "upgrade terakoya"
        )
    kind = str(config.get("kind", ""))
    if kind not in STUDENTS:
        raise StudentError(
            f"{config_path} was saved by student kind {kind!r}, which this version of Terakoya does not know "
            f"(registered: {', '.join(registered())}); upgrade terakoya or retrain with `terakoya train`"
        )
    return STUDENTS[kind]._from_saved(folder, config)
