"""The vectorised n-gram hasher against a plain-Python reference of the same definition."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from terakoya.students.featurize import (
    CHAR_SEED,
    MIX_MULTIPLIER,
    POLY_MULTIPLIER,
    WORD_SEED,
    HashingFeaturizer,
    tokenize,
)

M64 = (1 << 64) - 1


def fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    return h ^ (h >> 33)


def poly(s: str) -> int:
    h = 0
    for ch in s:
        h = (h * POLY_MULTIPLIER + ord(ch)) & M64
    return h


def reference_counts(text: str, f: HashingFeaturizer) -> Counter[int]:
    """Column -> count for one text, written the slow, obvious way."""
    tokens = re.findall(r"\w+|[^\w\s]", text.lower())
    out: Counter[int] = Counter()
    lo, hi = f.word_ngrams
    if hi:
        hashes = [poly(t) for t in tokens]
        for n in range(lo, hi + 1):
            for i in range(len(tokens) - n + 1):
                h = hashes[i]
                for j in range(1, n):
                    h = (h * MIX_MULTIPLIER + hashes[i + j]) & M64
                out[fmix64(h ^ ((WORD_SEED * (n + 1)) & M64)) % f.n_word_features] += 1
    lo, hi = f.char_ngrams
    if hi:
        for token in tokens:
            padded = f" {token} "
            for n in range(lo, hi + 1):
                for i in range(len(padded) - n + 1):
                    gram = padded[i : i + n]
                    if n == 1 and gram == " ":
                        continue
                    column = fmix64(poly(gram) ^ ((CHAR_SEED * (n + 1)) & M64)) % f.n_char_features
                    out[f.n_word_features + column] += 1
    return out


TEXTS = [
    "Profit rose 12 % to EUR 3.4 mn!",
    "",
    "   ",
    "a",
    "Operating loss widened , the company said .",
    "株式会社の業績は好調です。売上高が増加しました",
    "Café naïve ÉLAN — ok?",
    "emoji 😀 ok 😀",
    "a b a b a b",
]


@pytest.mark.parametrize(
    "featurizer",
    [
        HashingFeaturizer(),
        HashingFeaturizer(n_word_features=97, n_char_features=1013),  # not powers of two: modulo path
        HashingFeaturizer(word_ngrams=(1, 3), char_ngrams=(1, 5), n_word_features=64, n_char_features=256),
        HashingFeaturizer(word_ngrams=(0, 0), char_ngrams=(3, 3)),
        HashingFeaturizer(word_ngrams=(2, 2), char_ngrams=(0, 0)),
    ],
    ids=["default", "modulo", "wide-small", "chars-only", "bigrams-only"],
)
def test_counts_match_the_reference(featurizer: HashingFeaturizer) -> None:
    counts = featurizer.counts(TEXTS)
    assert counts.shape == (len(TEXTS), featurizer.n_features)
    assert counts.has_canonical_format
    for i, text in enumerate(TEXTS):
        row = counts.getrow(i)
        got = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
        assert got == dict(reference_counts(text, featurizer)), text
        assert list(row.indices) == sorted(row.indices)


def test_batches_do_not_change_a_texts_features() -> None:
    texts = [f"item {i} profit {'rose' if i % 2 else 'fell'} 売上 {i % 7}" for i in range(500)]
    f = HashingFeaturizer()
    whole = f.transform(texts)
    parts = [f.transform(texts[i : i + 37]) for i in range(0, 500, 37)]
    from scipy.sparse import vstack

    assert (whole != vstack(parts, format="csr")).nnz == 0


def test_japanese_gets_character_ngrams_without_spaces() -> None:
    f = HashingFeaturizer()
    counts = f.counts(["業績好調"])
    # one token "業績好調" padded to " 業績好調 ": 5 bigrams, 4 trigrams, 3 four-grams; plus 1 word unigram
    assert counts.sum() == 5 + 4 + 3 + 1
    assert reference_counts("業績好調", f).total() == 13


def test_empty_texts_give_empty_rows() -> None:
    X = HashingFeaturizer().transform(["", "  ", "\n\t"])
    assert X.shape[0] == 3
    assert X.nnz == 0
    X = HashingFeaturizer().transform([])
    assert X.shape == (0, 2**18 + 2**20)


def test_transform_weights_each_block() -> None:
    f = HashingFeaturizer()
    texts = ["good good good news", "株式", "", "!"]
    X = f.transform(texts).toarray()
    counts = f.counts(texts).toarray()
    for row, raw in zip(X, counts, strict=True):
        words, chars = raw[: f.n_word_features], raw[f.n_word_features :]
        # words: 1 + log(count), unit L2 norm
        tf = np.where(words > 0, 1 + np.log(np.maximum(words, 1)), 0)
        expected = tf / np.linalg.norm(tf) if tf.any() else tf
        np.testing.assert_allclose(row[: f.n_word_features], expected, rtol=1e-6)
        # characters: raw counts over the square root of how many there are
        expected = chars / np.sqrt(chars.sum()) if chars.any() else chars
        np.testing.assert_allclose(row[f.n_word_features :], expected, rtol=1e-6)


def test_factors_multiply_out_to_the_features() -> None:
    f = HashingFeaturizer()
    texts = ["Profit rose, profit rose again.", "業績は好調です。", ""]
    parts = f.factors(texts)
    assert parts.tokens.shape[1] == parts.chars.shape[0]  # one row of chars per distinct token
    assert parts.chars.shape[0] == len({t for text in texts for t in tokenize(text)})
    X = f.transform(texts)
    np.testing.assert_allclose((parts.tokens @ parts.chars).toarray(), X[:, f.n_word_features :].toarray())
    np.testing.assert_allclose(parts.words.toarray(), X[:, : f.n_word_features].toarray())


def test_tokenize() -> None:
    assert tokenize("Profit ROSE, again!") == ["profit", "rose", ",", "again", "!"]
    assert tokenize("  ") == []
    assert tokenize("業績は好調。") == ["業績は好調", "。"]


def test_bad_ngram_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match=r"char_ngrams=\(3, 2\): give \(min, max\)"):
        HashingFeaturizer(char_ngrams=(3, 2))
