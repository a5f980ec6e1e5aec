"""Every error Terakoya raises on purpose.

The tree, chosen by what the user can do about it::

    TerakoyaError                 base: the CLI prints its message, never a traceback
    ├── ConfigError               the project file, a setting or a flag is wrong -> edit it
    ├── ProjectNotFound           no terakoya.toml here -> run `terakoya init` or pass --project
    ├── DataError                 an input file is wrong -> fix the file or the column flags
    │   └── EncodingError         the file is not in the declared encoding -> pass --encoding
    ├── StateError                a step needs an earlier step first -> run that step
    ├── TeacherError              the teacher could not answer -> check the endpoint, key, model
    ├── StudentError              a saved student is missing or broken -> retrain or fix the path
    ├── MissingDependency         an optional extra is not installed -> the message names the pip line
    ├── AuthError                 not signed in, or wrong credentials -> sign in again
    ├── Forbidden                 signed in, but the role may not do that -> ask the project owner
    ├── NotFound                  the thing asked for does not exist (or is not yours to see)
    └── RateLimited               too many attempts -> wait and try again

Every message says what was wrong *and* how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "DataError",
    "EncodingError",
    "Forbidden",
    "MissingDependency",
    "NotFound",
    "ProjectNotFound",
    "RateLimited",
    "StateError",
    "StudentError",
    "TeacherError",
    "TerakoyaError",
]


class TerakoyaError(Exception):
    """Base class of every error Terakoya raises on purpose."""

    #: a short stable code, shown by the CLI and returned by the API
    code: str = "terakoya"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(TerakoyaError):
    code = "config"


class ProjectNotFound(TerakoyaError):
    code = "project-not-found"


class DataError(TerakoyaError):
    code = "data"


class EncodingError(DataError):
    code = "encoding"


class StateError(TerakoyaError):
    code = "state"


class TeacherError(TerakoyaError):
    code = "teacher"


class StudentError(TerakoyaError):
    code = "student"


class MissingDependency(TerakoyaError):
    code = "missing-dependency"

    @classmethod
    def for_extra(cls, module: str, extra: str, what: str) -> MissingDependency:
        return cls(
            f"{what} needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'terakoya[{extra}]'"
        )


class AuthError(TerakoyaError):
    code = "auth"


class Forbidden(TerakoyaError):
    code = "forbidden"


class NotFound(TerakoyaError):
    code = "not-found"


class RateLimited(TerakoyaError):
    code = "rate-limited"
