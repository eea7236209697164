"""Vectors for words outside a static vocabulary, built from fastText's character n-grams.

Why a table of unknown words rather than n-gram lookups inside ``forward``: the n-gram bucket
table (2M rows for real fastText) stays a CPU numpy array, never moves to the GPU, and is read
only when tokenizing meets a new word. That word's vector is computed once (exactly as fastText
and gensim do, with gensim's ``ft_ngram_hashes``), appended to the encoder's ``oov_vectors``
buffer and given a fixed id, so ``forward`` is a plain lookup and the same text always gives the
same ids and vectors. The encoder saves both tables, so a reloaded one gives the same vector to
old and new words. Tokenize in the main process (nlptl heads do): a DataLoader worker's additions
would be lost; with several processes, each must tokenize the same texts in the same order so
their ids agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

SUBWORD_FILE = "subword_ngrams.safetensors"


@dataclass
class SubwordTable:
    """fastText's character n-gram bucket table: an unknown word's vector is the mean of its n-gram rows."""

    vectors: np.ndarray  # (bucket, D) float32
    min_n: int
    max_n: int

    def vector(self, word: str) -> np.ndarray:
        from gensim.models.fasttext import ft_ngram_hashes

        hashes = ft_ngram_hashes(word, self.min_n, self.max_n, self.vectors.shape[0])
        if not hashes:  # no n-grams at all: fastText returns the origin too
            return np.zeros(self.vectors.shape[1], dtype=np.float32)
        return self.vectors[hashes].mean(0, dtype=np.float32)  # (D,)

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"ngram_vectors": np.ascontiguousarray(self.vectors)}, str(directory / SUBWORD_FILE))

    @classmethod
    def load(cls, directory: Path, min_n: int, max_n: int) -> "SubwordTable":
        from .weights import load_safetensors

        path = directory / SUBWORD_FILE
        tensors = load_safetensors(path, framework="np")
        if "ngram_vectors" not in tensors:
            raise ValueError(f"{str(path)!r} holds no 'ngram_vectors' tensor; save the encoder again")
        return cls(tensors["ngram_vectors"], min_n, max_n)


class UnknownWords:
    """Unknown words given a vector from n-grams, in the order they were met: word i is OOV row i."""

    def __init__(self, subwords: SubwordTable | None, words: Sequence[str] = ()) -> None:
        self.subwords = subwords  # None: no n-grams (or dropped), so new words get no row
        self.words = list(words)
        self._rows = {word: i for i, word in enumerate(self.words)}
        self._pending: list[np.ndarray] = []

    def row(self, key: str) -> int | None:
        """The word's row, computing its vector the first time it is met; None when it cannot have one."""
        row = self._rows.get(key)
        if row is None and self.subwords is not None:
            row = self._rows[key] = len(self.words)
            self.words.append(key)
            self._pending.append(self.subwords.vector(key))
        return row

    def take_new_vectors(self) -> np.ndarray | None:
        """(k, D) vectors of the words added since the last call, for the encoder's ``oov_vectors``."""
        if not self._pending:
            return None
        new, self._pending = np.stack(self._pending), []
        return new
