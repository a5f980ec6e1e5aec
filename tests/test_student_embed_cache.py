"""The embedding cache: shared by every embed student of a process, and on disk, keyed by encoder and text.

The encoder itself is replaced by a counting fake (hashed random vectors): what is tested is that the
second time costs no encoding and little time, for the 5,000 texts a benchmark refits on hundreds of times.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from terakoya.students import EmbedStudent
from terakoya.students import embed as embed_module

N = 5000


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """(encoder, number of texts) of every call to the fake encoder; the process cache starts and ends empty."""
    seen: list[tuple[str, int]] = []

    def fake(name: str) -> Callable[[list[str], int], NDArray[np.float32]]:
        def encode(texts: list[str], batch_size: int) -> NDArray[np.float32]:
            seen.append((name, len(texts)))
            rows = []
            for text in texts:
                seed = int.from_bytes(hashlib.sha256(f"{name}{text}".encode()).digest()[:8], "little")
                vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
                rows.append(vector / np.linalg.norm(vector))
            return np.stack(rows)

        return encode

    monkeypatch.setattr(embed_module, "encoder", fake)
    embed_module._memory.clear()
    yield seen
    embed_module._memory.clear()  # no fake vectors left for the tests that use the real encoder


def test_second_time_is_free_in_memory_and_cheap_from_disk(calls: list[tuple[str, int]], tmp_path: Path) -> None:
    texts = [f"Operating profit rose by {i} percent in the quarter." for i in range(N)]
    first = EmbedStudent(cache_dir=str(tmp_path)).embed(texts)
    assert calls == [("minilm", N)]

    started = time.perf_counter()
    again = EmbedStudent(cache_dir=str(tmp_path)).embed(texts)
    in_memory = time.perf_counter() - started
    np.testing.assert_array_equal(again, first)

    embed_module._memory.clear()  # a new process: only the disk is left
    started = time.perf_counter()
    from_disk = EmbedStudent(cache_dir=str(tmp_path)).embed(texts)
    on_disk = time.perf_counter() - started
    np.testing.assert_array_equal(from_disk, first)

    assert calls == [("minilm", N)]
    assert in_memory < 1.0, f"{N} cached embeddings took {in_memory:.2f} s from memory"
    assert on_disk < 10.0, f"{N} cached embeddings took {on_disk:.2f} s from disk"


def test_many_fits_encode_once_and_the_encoder_is_part_of_the_key(calls: list[tuple[str, int]], tmp_path: Path) -> None:
    texts = [f"Sales {'rose' if i % 2 else 'fell'} in region {i}." for i in range(300)]
    labels = ["positive" if i % 2 else "negative" for i in range(300)]
    for seed in range(20):  # e.g. a benchmark's learning curve: many students on subsets of the same texts
        subset = np.random.default_rng(seed).choice(300, size=200, replace=False)
        EmbedStudent().fit([texts[i] for i in subset], [labels[i] for i in subset])
    assert sum(n for _, n in calls) == 300  # every text encoded once, however many fits
    assert {name for name, _ in calls} == {"minilm"}

    EmbedStudent(model="multilingual").embed(texts[:10])
    assert calls[-1] == ("multilingual", 10)  # another encoder never reads MiniLM's vectors


def test_auto_resolves_before_the_cache_is_read(calls: list[tuple[str, int]]) -> None:
    texts = ["売上高が増加しました。", "損失が拡大しました。", "利益が改善しました。", "受注が減少しました。"]
    student = EmbedStudent(model="auto").fit(texts, ["positive", "negative", "positive", "negative"])
    assert student.encoder_ == "multilingual"
    assert calls == [("multilingual", 4)]
    student.predict(["Profit rose."])  # an English text later is read by the fitted encoder
    assert calls[-1] == ("multilingual", 1)
