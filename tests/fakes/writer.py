"""A writing teacher for tests (``teacher.kind = "python"``): it answers every prompt by repeating it, and as a
judge it always prefers the answer shown first ("A") — a judge with nothing but position bias."""

from __future__ import annotations

from typing import Any


def write(conversations: list[list[dict[str, Any]]], n: int) -> list[list[str]]:
    out = []
    for turns in conversations:
        last = str(turns[-1]["content"])
        if last.startswith("Question:"):
            out.append(["A"] * n)
        else:
            out.append([f"Answer: {last}"] + [f"Answer {i}: {last}" for i in range(1, n)])
    return out
