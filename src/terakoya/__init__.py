"""Terakoya: a big model plus a few hours of domain experts' time -> a small model anyone can own and run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from terakoya.errors import (
    ConfigError,
    DataError,
    EncodingError,
    MissingDependency,
    ProjectNotFound,
    StateError,
    StudentError,
    TeacherError,
    TerakoyaError,
)
from terakoya.project import Project
from terakoya.settings import Settings, load_settings

if TYPE_CHECKING:
    from terakoya.students.base import Student

__version__ = "0.1.0"


def load(path: str | Path) -> Student:
    """Load a saved student folder: ``terakoya.load("runs/<id>").predict_proba(texts)``."""
    from terakoya.students import load as load_student

    return load_student(Path(path))


__all__ = [
    "ConfigError",
    "DataError",
    "EncodingError",
    "MissingDependency",
    "Project",
    "ProjectNotFound",
    "Settings",
    "StateError",
    "StudentError",
    "TeacherError",
    "TerakoyaError",
    "__version__",
    "load",
    "load_settings",
]
