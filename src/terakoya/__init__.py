"""Terakoya: a big model plus a few hours of domain experts' time -> a small model anyone can own and run."""

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

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "EncodingError",
    "MissingDependency",
    "ProjectNotFound",
    "StateError",
    "StudentError",
    "TeacherError",
    "TerakoyaError",
    "__version__",
]
