"""A huge text costs what its first max_length tokens cost: pooled paths tokenize only that far.

encode, preprocess and the classification head's rows cut at max_length while tokenizing; the
windowing heads (token classification, QA) still see every token of a long text.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import nlptl
from nlptl.encoders.base import longest_first
from nlptl.heads import ClassificationHead
from nlptl.heads.token_classification import TokenClassificationHead
from tests.tiny import static as tiny_static
from tests.tiny.transformers import BUILDERS, SAMPLE_TEXTS

HUGE_WORDS = 200_000
HUGE = " ".join(["the movie was good, really good!"] * (HUGE_WORDS // 6))  # ~1.1M characters
FIRST_WORDS = " ".join(HUGE.split()[:300])  # well over 64 tokens: what the huge text's rows can hold


class RecordingTokenizer:
    """Delegates to a ``tokenizers.Tokenizer`` and records the longest text any encode call is handed."""

    def __init__(self, backend):
        self._backend, self.longest = backend, 0

    def __getattr__(self, name):
        attr = getattr(self._backend, name)
        if not name.startswith("encode"):
            return attr

        def encode(texts, *args, **kwargs):
            batch = [texts] if isinstance(texts, str) else texts
            self.longest = max(self.longest, *map(len, batch))
            return attr(texts, *args, **kwargs)

        return encode


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = BUILDERS[name](tmp_path_factory.mktemp(name))[0].eval()
        return cache[name]

    return get


def recording(encoder, monkeypatch) -> RecordingTokenizer:
    recorder = RecordingTokenizer(encoder._backend)
    monkeypatch.setattr(encoder, "_backend", recorder)
    return recorder


def encode_quietly(encoder, texts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the truncation warning; tested elsewhere
        return encoder.encode(texts, batch_size=2)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_huge_text_encodes_as_its_first_tokens_without_tokenizing_it_all(tiny, name, monkeypatch):
    encoder = tiny(name)
    recorder = recording(encoder, monkeypatch)
    with pytest.warns(UserWarning, match="truncated"):
        huge = encoder.encode([HUGE, "fine"], batch_size=2)
    assert recorder.longest < 20 * encoder.max_length  # characters; the text has over a million
    np.testing.assert_allclose(huge, encode_quietly(encoder, [FIRST_WORDS, "fine"]), rtol=0, atol=1e-6)
    assert encoder.build_rows([HUGE])[0].ids == encoder.build_rows([FIRST_WORDS])[0].ids


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_rows_are_what_the_full_tokenizer_gives(tiny, name):
    """Rows equal the old path's (tokenize everything, then truncate); encode's packed batches equal collate's.

    "a x...x b" is longer than the first prefix tried, so it exercises the cut and the retry.
    """
    encoder = tiny(name)
    texts = [*SAMPLE_TEXTS, "", "   ", "a  tiny\tfilm\nabout nothing", "good " * 20, "a " + "x" * 600 + " b"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # character-level vocabularies cut the long word
        rows = encoder.build_rows(texts)
        before = [encoder.build_inputs(encoder.truncate(t, None)) for t in encoder.tokenize(texts)]
        order, make_batch = encoder._encode_plan(texts)
    fields = lambda r: (r.ids, r.type_ids, r.sequence_ids, r.offsets, r.extras)  # noqa: E731
    assert [fields(r) for r in rows] == [fields(r) for r in before]
    assert order.tolist() == longest_first(before).tolist()
    for start in range(0, len(texts), 3):
        got, expected = make_batch(order[start : start + 3]), encoder.collate([before[i] for i in order[start : start + 3]])
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in got)


@pytest.mark.parametrize("name", ["bert", "xlnet"])
def test_pairs_split_the_budget_as_before(tiny, name):
    encoder = tiny(name)
    pairs = [(HUGE, "hello world"), ("a tiny film", HUGE), (FIRST_WORDS, FIRST_WORDS + " bad")]
    for a, b in pairs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = encoder.build_inputs(*encoder.truncate(*encoder.tokenize([a[:5000], b[:5000]])))
            got = encoder.build_rows([a], [b])[0]
        assert (got.ids, got.type_ids, got.sequence_ids) == (expected.ids, expected.type_ids, expected.sequence_ids)


def test_classification_rows_cut_while_tokenizing(tiny, monkeypatch):
    encoder = tiny("bert")
    recorder = recording(encoder, monkeypatch)
    with pytest.warns(UserWarning, match="truncated"):
        rows = ClassificationHead(2).prepare(encoder, {"text": [HUGE, "fine"], "label": [0, 1]}, train=True)
    assert len(rows[0]["input"]) == encoder.max_length
    assert recorder.longest < 20 * encoder.max_length


def test_token_classification_still_windows_every_token(tiny):
    """Windowing heads call tokenize, not the truncating path: a long text keeps all its words."""
    encoder = tiny("bert")
    words = ("the movie was good " * 40).split()
    head = TokenClassificationHead(["O", "B-X"], stride=8)
    rows = head.prepare(encoder, {"tokens": [words], "tags": [["O"] * len(words)]}, train=False)
    assert len(rows) > 1  # several windows
    covered = {int(w) for r in rows for w in r["input"].extras["word_at"] if w >= 0}
    assert covered == set(range(len(words)))


def test_static_vectors_split_only_the_first_words(tmp_path, monkeypatch):
    encoder = nlptl.load_encoder(tiny_static.write_glove(tmp_path))
    encoder.max_length = 16
    unknown = " ".join(["zzz,"] * HUGE_WORDS)  # every piece takes the slow path (split at punctuation)
    calls = []
    split = encoder._split_unknown
    monkeypatch.setattr(encoder, "_split_unknown", lambda *a: calls.append(1) or split(*a))
    with pytest.warns(UserWarning, match="truncated"):
        encoded = encoder.encode([unknown])
    assert len(calls) <= encoder.max_length + 1  # one past the limit, to know the text was cut
    assert encoder.build_rows([HUGE])[0].ids == encoder.tokenize([FIRST_WORDS])[0].ids[:16]
    first = " ".join(["zzz,"] * 16), " ".join(HUGE.split()[:16])
    np.testing.assert_allclose(encoder.encode([unknown, HUGE]), encoder.encode(list(first)), rtol=0, atol=1e-6)
    calls.clear()
    tokens = encoder.tokenize_truncated([unknown], 16)[0]
    assert len(tokens.ids) == 16 and len(calls) <= 16
    assert tokens.ids == encoder.tokenize([" ".join(["zzz,"] * 40)])[0].ids[:16]
