"""Static word vectors (word2vec, GloVe, fastText, any gensim KeyedVectors) behind the text encoder contract.

Tokens are words. A text is split on whitespace (what ``str.split()`` counts as whitespace), and a
piece that is not itself a vocabulary word ("u.s.", "e-mail" and "3.5" are GloVe words) is split
again at punctuation with the ``tokenizers`` Punctuation pre-tokenizer. Offsets always index the
original text; lower-casing only changes the lookup key. Nothing is added around a text: static
vectors have no special tokens. ``encode`` and ``preprocess`` take a shortcut to the same ids:
when every piece of a text is a word, they look the pieces up without building offsets.

Ids: ``0..V-1`` are vocabulary rows (``embeddings``), ``V`` is the unknown/padding id and
``V+1..`` index ``oov_vectors``. Unknown words stay real positions (mask True); ``unknown`` says
what vector they get:

* ``"zero"``: a zero vector (default for word2vec, GloVe and plain KeyedVectors).
* ``"learned"``: one trainable vector, in its own layer group ``"unknown"``.
* ``"subword"``: fastText only (default there): the mean of the word's character n-gram vectors,
  computed exactly as fastText and gensim do (gensim's ``ft_ngram_hashes``).

Unknown words' fastText vectors are computed once, when tokenizing first meets them, and kept
in the ``oov_vectors`` buffer under fixed ids (``subwords.py`` says why). OOV vectors stay frozen
even with ``trainable=True``.

The files themselves are read by ``vector_files`` (numpy text parsing, gensim for binary formats).

Builder options (``load_encoder(path, kind, **options)``): ``lowercase`` (default: when the
vocabulary looks lowercased), ``unknown``, ``trainable`` (default False: the table is frozen),
``max_length`` (default 512), ``vocab_from`` (texts: keep only the words they use, see
``trim_vocabulary``) and ``limit`` (read only the first N vectors of a file).
"""
from __future__ import annotations

import os
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tokenizers.pre_tokenizers import Punctuation
from torch import nn

from .base import EncoderOutput, ModelInput, TextEncoder, TokenizedText, longest_first, check_texts
from .subwords import SubwordTable, UnknownWords
from .vector_files import read_fasttext, read_text_vectors, read_word2vec

UNKNOWN_POLICIES = ("zero", "learned", "subword")
_PUNCTUATION = Punctuation()  # built once: _split_unknown runs for every piece that is not a word


class StaticEncoder(TextEncoder):
    """A frozen (by default) table of word vectors; features are the vectors of the words, unpooled."""

    kind = "static"
    encode_batch_size = 1024  # a batch is a table lookup: (1024, L, D) floats, a few MB

    def __init__(
        self,
        words: Sequence[str],
        vectors: np.ndarray | torch.Tensor,
        *,
        lowercase: bool | None = None,
        unknown: str = "zero",
        trainable: bool = False,
        max_length: int = 512,
        subwords: SubwordTable | None = None,
        oov_words: Sequence[str] = (),
        oov_vectors: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        vectors = torch.as_tensor(vectors, dtype=torch.float32)  # (V, D), shares memory with numpy
        if vectors.ndim != 2 or vectors.shape[0] != len(words) or vectors.shape[0] == 0:
            raise ValueError(f"vectors has shape {tuple(vectors.shape)} for {len(words)} words; "
                             f"expected ({len(words)}, D)")
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown={unknown!r}; choose one of {UNKNOWN_POLICIES}")
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length={max_length!r}; pass a positive int")
        dim = vectors.shape[1]
        self.words = list(words)
        self._index = _first_index(self.words)
        self.lowercase = _looks_lowercased(self.words) if lowercase is None else bool(lowercase)
        self.unknown = unknown
        self.trainable = bool(trainable)
        self.max_length = max_length
        self.embeddings = nn.Embedding.from_pretrained(vectors, freeze=not self.trainable)
        self.unknown_vector = (nn.Embedding.from_pretrained(torch.zeros(1, dim), freeze=False)
                               if unknown == "learned" else None)
        self.unknown_words = UnknownWords(subwords, oov_words)
        oov = torch.zeros(0, dim) if oov_vectors is None else torch.as_tensor(oov_vectors, dtype=torch.float32)
        self.register_buffer("oov_vectors", oov.reshape(len(oov_words), dim))  # (K, D)

    # ----- builders (the registry calls these as builder(source, **options)) ---------------------

    @classmethod
    def from_word2vec(cls, path: str | os.PathLike, *, limit: int | None = None, **options: Any) -> "StaticEncoder":
        """A word2vec file with a 'count dim' header; binary or text is detected from the body."""
        return cls._build(*read_word2vec(path, limit), **options)

    @classmethod
    def from_glove(cls, path: str | os.PathLike, *, limit: int | None = None, **options: Any) -> "StaticEncoder":
        """A GloVe text file: one 'word float float ...' line per word, no header."""
        return cls._build(*read_text_vectors(path, header=False, limit=limit, kind="glove"), **options)

    @classmethod
    def from_fasttext(cls, path: str | os.PathLike, **options: Any) -> "StaticEncoder":
        """A Facebook fastText .bin model; its character n-grams give vectors to unknown words."""
        return cls._from_gensim(read_fasttext(path), copy=False, **options)

    @classmethod
    def from_keyedvectors(cls, vectors: Any, **options: Any) -> "StaticEncoder":
        """In-memory gensim KeyedVectors, or a model with ``.wv`` (Word2Vec, FastText)."""
        return cls._from_gensim(vectors, copy=True, **options)

    @classmethod
    def _from_gensim(cls, vectors: Any, copy: bool, **options: Any) -> "StaticEncoder":
        from gensim.models import KeyedVectors

        kv = getattr(vectors, "wv", vectors)
        if not isinstance(kv, KeyedVectors):
            raise TypeError(f"expected gensim KeyedVectors or a model with .wv, got {type(vectors).__name__}")
        if len(kv.index_to_key) == 0:
            raise ValueError("the KeyedVectors are empty: train or load some vectors first")
        table = np.asarray(kv.vectors, dtype=np.float32)  # (V, D)
        if copy and options.get("vocab_from") is None:  # never share memory with a model that may keep training
            table = table.copy()
        subwords = None
        if getattr(kv, "bucket", 0) and getattr(kv, "vectors_ngrams", None) is not None:
            ngrams = np.asarray(kv.vectors_ngrams, dtype=np.float32)  # (bucket, D)
            subwords = SubwordTable(ngrams.copy() if copy else ngrams, int(kv.min_n), int(kv.max_n))
        return cls._build(list(kv.index_to_key), table, subwords=subwords, **options)

    @classmethod
    def _build(cls, words, vectors, *, subwords=None, unknown=None, vocab_from=None, **options) -> "StaticEncoder":
        if unknown == "subword" and subwords is None:
            raise ValueError("unknown='subword' needs fastText character n-grams and these vectors have none; "
                             "use unknown='zero' or 'learned'")
        unknown = unknown or ("subword" if subwords is not None else "zero")
        encoder = cls(words, vectors, unknown=unknown, subwords=subwords, **options)
        if vocab_from is not None:
            encoder.trim_vocabulary(vocab_from)
        return encoder

    # ----- tokenization --------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @property
    def unk_id(self) -> int:
        """Id of unknown words without their own vector; padding uses it too (masked out)."""
        return len(self.words)

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        return self._tokenize(check_texts(texts), None)

    def tokenize_truncated(self, texts: Sequence[str], max_tokens: int) -> list[TokenizedText]:
        """The first ``max_tokens`` tokens of each text: only its first ``max_tokens`` pieces are split off."""
        return self._tokenize(check_texts(texts), max_tokens)

    def _tokenize(self, texts: list[str], max_tokens: int | None) -> list[TokenizedText]:
        index, lowercase, out = self._index, self.lowercase, []
        for text in texts:
            ids, offsets, end = [], [], 0
            for piece in _pieces(text, max_tokens):  # Python's whitespace; find() recovers the offsets in C
                start = text.find(piece, end)
                end = start + len(piece)
                whole = index.get(piece.lower() if lowercase else piece)
                if whole is not None:  # the common case, kept fast
                    ids.append(whole)
                    offsets.append((start, end))
                else:
                    self._split_unknown(piece, start, ids, offsets)
            if max_tokens is not None and len(ids) > max_tokens:
                del ids[max_tokens:], offsets[max_tokens:]
            out.append(TokenizedText(ids, offsets))
        self._flush_oov()
        return out

    def preprocess(self, inputs: Sequence[str], text_pairs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        if text_pairs is not None:
            return super().preprocess(inputs, text_pairs)
        return self._pad(self._ids(check_texts(inputs)))

    def _encode_plan(self, inputs: Sequence[str]) -> tuple[np.ndarray, Callable[[np.ndarray], dict]]:
        rows = self._ids(inputs)
        return longest_first(rows), lambda idx: self._pad([rows[i] for i in idx])

    def _ids(self, texts: list[str]) -> list[list[int]]:
        """The ids ``tokenize`` gives (truncated to ``max_length``), without building offsets."""
        index, rows, limit = self._index, [], self.max_length + 1  # one past the limit: enough to warn
        for text in texts:
            # lower() maps no character to or from whitespace, so this splits exactly as tokenize does
            ids = list(map(index.get, _pieces(text.lower() if self.lowercase else text, limit)))
            if None in ids:  # a piece to split at punctuation, or an unknown word: tokenize's slow path
                ids = self._resolve_unknown(_pieces(text, limit), ids)
            if len(ids) > self.max_length:
                ids = self.truncate(TokenizedText(ids, []), None).ids  # warns as tokenize's path does
            rows.append(ids)
        self._flush_oov()
        return rows

    def _resolve_unknown(self, pieces: list[str], ids: list[int | None]) -> list[int]:
        out: list[int] = []
        for piece, found in zip(pieces, ids):
            if found is None:
                self._split_unknown(piece, 0, out, [])
            else:
                out.append(found)
        return out

    def _split_unknown(self, piece: str, start: int, ids: list[int], offsets: list[tuple[int, int]]) -> None:
        """A piece that is not a word ("bears," or "(yes"): split at punctuation and look up each part."""
        for part, (s, e) in _PUNCTUATION.pre_tokenize_str(piece):
            ids.append(self._token_id(part))
            offsets.append((start + s, start + e))

    def _key(self, word: str) -> str:
        return word.lower() if self.lowercase else word

    def _token_id(self, word: str) -> int:
        key = self._key(word)
        index = self._index.get(key)
        if index is not None:
            return index
        row = self.unknown_words.row(key) if self.unknown == "subword" else None
        return self.unk_id if row is None else self.unk_id + 1 + row

    def _flush_oov(self) -> None:
        new = self.unknown_words.take_new_vectors()  # (k, D) or None
        if new is None:
            return
        # encode() tokenizes under inference_mode; the buffer must stay a normal tensor for training.
        with torch.inference_mode(False), torch.no_grad():
            self.oov_vectors = torch.cat([self.oov_vectors, torch.from_numpy(new).to(self.oov_vectors)])  # (K + k, D)

    @property
    def subwords(self) -> SubwordTable | None:
        return self.unknown_words.subwords

    @property
    def oov_words(self) -> list[str]:
        return self.unknown_words.words

    def build_inputs(self, first: TokenizedText, second: TokenizedText | None = None) -> ModelInput:
        second = second or TokenizedText([], [])
        n_a, n_b = len(first.ids), len(second.ids)
        return ModelInput(
            ids=first.ids + second.ids,
            type_ids=[0] * n_a + [1] * n_b,
            sequence_ids=[0] * n_a + [1] * n_b,
            offsets=list(first.offsets) + list(second.offsets),
        )

    def collate(self, rows: Sequence[ModelInput]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("rows is empty: pass at least one ModelInput")
        return self._pad([row.ids for row in rows])

    def _pad(self, rows: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Right-pad id lists with the unknown id into (B, L) ids and mask, L at least 1."""
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))  # (B,)
        longest = max(1, int(lengths.max()))  # at least one column: an all-empty batch still pools
        if longest > self.max_length:
            raise ValueError(f"a row has {longest} tokens but max_length is {self.max_length}; "
                             "cut the texts with encoder.truncate(first, second) before build_inputs")
        mask = np.arange(longest) < lengths[:, None]  # (B, L)
        ids = np.full(mask.shape, self.unk_id, dtype=np.int64)  # (B, L)
        ids[mask] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask).long()}

    # ----- model ---------------------------------------------------------------------------------

    @property
    def num_features(self) -> int:
        return self.embeddings.embedding_dim

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        ids = batch["input_ids"]  # (B, L)
        mask = batch["attention_mask"].bool()  # (B, L)
        V, n_ids = self.vocab_size, self.vocab_size + 1 + self.oov_vectors.shape[0]
        if ids.numel():
            low, high = torch.stack(torch.aminmax(ids)).tolist()  # one device sync, not two
            if low < 0 or high >= n_ids:
                raise ValueError(f"input_ids holds id {high if high >= n_ids else low} but this encoder has ids "
                                 f"0..{n_ids - 1}; tokenize again after trim_vocabulary, with this encoder")
        in_vocab = (ids < V).unsqueeze(-1)  # (B, L, 1)
        features = torch.where(in_vocab, self.embeddings(ids.clamp(max=V - 1)), 0.0)  # (B, L, D)
        if self.unknown_vector is not None:
            features = features + (ids == V).unsqueeze(-1) * self.unknown_vector.weight[0]  # (B, L, D)
        if self.oov_vectors.shape[0]:
            oov_row = (ids - V - 1).clamp(min=0)  # (B, L)
            features = torch.where((ids > V).unsqueeze(-1), self.oov_vectors[oov_row], features)  # (B, L, D)
        features = features * mask.unsqueeze(-1)  # padding is exactly zero
        return EncoderOutput(features=features, mask=mask)

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        groups = [("embeddings", [self.embeddings])]
        if self.unknown_vector is not None:
            groups.append(("unknown", [self.unknown_vector]))
        return groups

    # ----- vocabulary trimming -------------------------------------------------------------------

    def trim_vocabulary(self, texts: Sequence[str], keep_subwords: bool = True) -> dict[str, int]:
        """Keep only the words ``texts`` use, so training holds 20k rows, not 400k; returns sizes before/after.

        Call it before building an optimizer and before tokenizing training rows: ids change. The
        kept words' vectors are unchanged, and ``texts`` tokenize to the same words afterwards.
        For fastText, the unknown words of ``texts`` get their OOV vectors now; with
        ``keep_subwords=False`` the n-gram table is dropped too and later unknown words get zeros.
        """
        before = {"rows_before": self.vocab_size, "bytes_before": self.memory_bytes()}
        used = sorted({i for t in self.tokenize(texts) for i in t.ids if i < self.vocab_size})
        if not used:
            raise ValueError("texts use none of the vocabulary's words; check the texts or the lowercase setting")
        weight = self.embeddings.weight.detach()[torch.tensor(used, device=self.embeddings.weight.device)]
        frozen = not self.embeddings.weight.requires_grad  # keep what a freezing strategy set
        self.embeddings = nn.Embedding.from_pretrained(weight.clone(), freeze=frozen)
        self.words = [self.words[i] for i in used]
        self._index = _first_index(self.words)
        if not keep_subwords:
            self.unknown_words.subwords = None
        return {**before, "rows_after": self.vocab_size, "bytes_after": self.memory_bytes()}

    def memory_bytes(self) -> int:
        """Bytes held by vectors: vocabulary table, OOV table and fastText n-gram table."""
        tensors = [self.embeddings.weight, self.oov_vectors]
        total = sum(t.numel() * t.element_size() for t in tensors)
        return total + (self.subwords.vectors.nbytes if self.subwords is not None else 0)

    # ----- saving --------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        self._flush_oov()
        subwords = None if self.subwords is None else {"min_n": self.subwords.min_n, "max_n": self.subwords.max_n}
        return {
            "words": self.words, "dim": self.num_features, "lowercase": self.lowercase,
            "unknown": self.unknown, "trainable": self.trainable, "max_length": self.max_length,
            "oov_words": self.oov_words, "subwords": subwords,
        }

    def _write_artifact(self, directory: Path) -> None:
        """Weights and OOV table in encoder.safetensors, fastText n-grams beside them, settings in JSON."""
        self._flush_oov()
        super()._write_artifact(directory)
        if self.subwords is not None:
            self.subwords.save(directory)

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> "StaticEncoder":
        from .weights import load_safetensors

        config = dict(config)
        words, dim, sub = config.pop("words"), config.pop("dim"), config.pop("subwords", None)
        vocab_from = config.pop("vocab_from", None)
        weights_file = directory / "encoder.safetensors"
        state = load_safetensors(weights_file)
        vectors = state.get("embeddings.weight")
        if vectors is None or tuple(vectors.shape) != (len(words), dim):
            shape = "no embeddings.weight" if vectors is None else f"weights of shape {tuple(vectors.shape)}"
            raise ValueError(f"{str(weights_file)!r}: {len(words)} words of width {dim} in the config but {shape}; "
                             "the directory mixes two saves: save the encoder again")
        subwords = None if sub is None else SubwordTable.load(directory, sub["min_n"], sub["max_n"])
        encoder = cls(words, vectors, subwords=subwords, oov_vectors=state["oov_vectors"], **config)
        encoder.load_state_dict(state)
        if vocab_from is not None:
            encoder.trim_vocabulary(vocab_from)
        return encoder


def _pieces(text: str, limit: int | None) -> list[str]:
    """``text.split()``, or its first ``limit`` pieces: each piece is at least one token, so a long text's
    first ``limit`` tokens come from them, and the rest of the text is never split."""
    if limit is None:
        return text.split()
    pieces = text.split(None, limit)
    del pieces[limit:]  # the unsplit remainder
    return pieces


def _first_index(words: list[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, word in enumerate(words):
        index.setdefault(word, i)  # a duplicated word keeps its first vector, as gensim does
    return index


def _looks_lowercased(words: list[str], sample: int = 20_000) -> bool:
    """True when (almost) no word among the most frequent has an upper-case letter (GloVe 6B, uncased models)."""
    head = words[:sample]
    upper = sum(1 for w in head if w != w.lower())
    return upper <= 0.01 * len(head)

