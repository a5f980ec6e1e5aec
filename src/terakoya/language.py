"""What a project's ``language`` setting says: one rule for the stages that pick a model by it (the embedding
student's encoder, the local teacher's packaged model)."""

from __future__ import annotations

__all__ = ["is_english"]

_ENGLISH = {"", "en", "eng", "english"}


def is_english(language: str) -> bool:
    """Whether ``language`` (a code such as "en", "en-GB", "ja", or a word such as "mixed") means English only."""
    code = language.strip().lower().replace("_", "-")
    return code in _ENGLISH or code.startswith("en-")
