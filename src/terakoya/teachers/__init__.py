"""Teachers: adapters that turn a batch of requests into label probabilities.

- ``openai``: any OpenAI-compatible chat completions endpoint (logprobs when it gives them)
- ``local``: a small model on this machine (SmolLM2-135M-Instruct by default), no server needed
- ``python``: a ``module:function`` of your own (also the test fake)

:class:`CachedTeacher` wraps any of them and stores every call in the project's database.
"""

from __future__ import annotations

from terakoya.errors import ConfigError
from terakoya.settings import TeacherSettings
from terakoya.teachers.base import Teacher, TeacherAnswer, TeacherRequest
from terakoya.teachers.cache import CachedTeacher
from terakoya.teachers.prompts import Prompt, approved_glossary, build_prompt, collect_examples

__all__ = [
    "CachedTeacher",
    "Prompt",
    "Teacher",
    "TeacherAnswer",
    "TeacherRequest",
    "approved_glossary",
    "build_prompt",
    "collect_examples",
    "make_teacher",
]


def make_teacher(settings: TeacherSettings) -> Teacher:
    """The teacher ``settings.kind`` names. Cheap: a local model is loaded on its first call, not here."""
    if settings.kind == "openai":
        from terakoya.teachers.openai import OpenAITeacher

        return OpenAITeacher(settings)
    if settings.kind == "recorded":
        raise ConfigError(
            "teacher.kind 'recorded' replays written answers and labels nothing; use it with task.kind = "
            "'generate.v1', or set teacher.kind to local, openai or python"
        )
    if settings.kind == "python":
        from terakoya.teachers.python import PythonTeacher

        return PythonTeacher(settings.function or "")
    from terakoya.teachers.local import LocalTeacher

    model, backend = settings.model, "transformers"
    if model.startswith("llama-cpp:"):
        model, backend = model.removeprefix("llama-cpp:"), "llama-cpp"
    # settings.calibrate is ignored: the local teacher's answers are uncalibrated, calibration is its own stage
    return LocalTeacher(
        model, threads=settings.threads, backend=backend, batch=settings.local_batch, style=settings.prompt_style
    )
