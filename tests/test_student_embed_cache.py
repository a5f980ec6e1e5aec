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

from terakoya.errors import ConfigError
from terakoya.students import EmbedStudent, load
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


def _sales(n: int, offset: int = 0) -> tuple[list[str], list[str]]:
    texts = [f"Sales {'rose' if i % 2 else 'fell'} in region {i}." for i in range(offset, offset + n)]
    return texts, ["positive" if i % 2 else "negative" for i in range(offset, offset + n)]


def test_auto_on_english_reads_both_encoders_and_the_words(calls: list[tuple[str, int]], tmp_path: Path) -> None:
    texts, labels = _sales(40)
    student = EmbedStudent(model="auto").fit(texts, labels)
    assert student.encoder_ == embed_module.LATIN_FEATURES == "minilm+multilingual+words"
    assert calls == [("minilm", 40), ("multilingual", 40)]
    assert student.coef_.shape == (384 + 384 + embed_module.N_WORD_FEATURES, 2)

    folder = student.save(tmp_path / "m")
    with np.load(folder / "weights.npz") as saved:  # only the word buckets seen in training are stored
        assert len(saved["coef_rows"]) < 768 + 200
    loaded = load(folder)
    assert isinstance(loaded, EmbedStudent) and loaded.encoder_ == student.encoder_
    unseen, _ = _sales(10, offset=1000)
    np.testing.assert_allclose(loaded.predict_proba(unseen), student.predict_proba(unseen))


def test_words_read_what_the_embeddings_miss(calls: list[tuple[str, int]]) -> None:
    # the fake encoder's vectors are random per text: no signal in them, all of it in the words
    texts, labels = _sales(200)
    unseen, truth = _sales(100, offset=1000)
    alone = EmbedStudent(model="minilm").fit(texts, labels).score(unseen, truth)
    with_words = EmbedStudent(model="minilm+words").fit(texts, labels).score(unseen, truth)
    assert alone < 0.7
    assert with_words == 1.0


def test_feature_sources_are_checked() -> None:
    assert embed_module.feature_sources("words+minilm") == ["minilm", "words"]
    with pytest.raises(ConfigError, match=r"unknown or repeated feature source in model='minilm\+bert'.*minilm"):
        EmbedStudent(model="minilm+bert").fit(["a b", "c d"], ["x", "y"])
    with pytest.raises(ConfigError, match="repeated"):
        embed_module.feature_sources("words+words")


def test_a_student_saved_before_word_features_still_loads(calls: list[tuple[str, int]], tmp_path: Path) -> None:
    texts, labels = _sales(30)
    student = EmbedStudent(model="minilm").fit(texts, labels)
    folder = student.save(tmp_path / "old")
    # the older layout: the whole head as one "coef" array
    np.savez_compressed(
        folder / "weights.npz", encoder=np.asarray("minilm"), coef=student.coef_, intercept=student.intercept_,
        n_iter=np.asarray(student.n_iter_), train_loss=np.asarray(student.train_loss_),
    )  # fmt: skip
    loaded = load(folder)
    np.testing.assert_allclose(loaded.predict_proba(texts), student.predict_proba(texts))
