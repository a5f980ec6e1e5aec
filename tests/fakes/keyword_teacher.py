"""A tiny keyword teacher for end-to-end tests: `teacher.kind = "python"`, `teacher.function = this:label`."""

from __future__ import annotations

POSITIVE = ("rose", "record", "raised", "growth", "increase", "上方修正", "増配", "増加")
NEGATIVE = ("fell", "loss", "cut", "layoff", "decline", "下方修正", "減損", "減少")


def label(texts: list[str], labels: list[str]) -> list[dict[str, float]]:
    out = []
    for text in texts:
        low = text.lower()
        scores = {name: 1.0 for name in labels}
        if any(word in low for word in POSITIVE):
            scores["positive"] = 6.0
        if any(word in low for word in NEGATIVE):
            scores["negative"] = 6.0
        if scores.get("positive") == scores.get("negative"):
            scores["neutral"] = 3.0
        total = sum(scores.values())
        out.append({name: value / total for name, value in scores.items()})
    return out
