"""The one contract every pretrained source plugs into.

An :class:`Encoder` turns raw inputs (texts or images) into *unpooled* features plus a mask, and
names its layer groups from input to output so freezing strategies can address them. Heads pool;
encoders never do (except for the optional ``pooled`` output a backbone already computes).

Text encoders share one more layer of contract, so task code (classification with text pairs,
extractive QA with windows over long contexts) is written once for every text encoder:

    tokenize(texts)            -> [TokenizedText]   words/sub-words with character offsets
    build_inputs(first, second)-> ModelInput        adds the encoder's special tokens
    collate([ModelInput])      -> dict of tensors   dynamic padding to the longest row

``build_rows(texts, text_pairs)`` chains the first two for pooled, one-row-per-text tasks
(classification, ``encode``): it tokenizes each text only as far as ``max_length`` reaches
(``tokenize_truncated``), so a huge text costs what its first tokens cost. Tasks that window a
long text with a stride (token classification, QA) call ``tokenize`` and see every token.
"""
from __future__ import annotations

import json
import os
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence, Sized

import numpy as np
import torch
from torch import nn

from ..devices import resolve_precision

ENCODER_CONFIG_NAME = "nlptl_encoder.json"
POOLINGS = ("mean", "max", "first", "pooled")
#: texts tokenized at a time when ``encode`` plans its batches (the whole input is still sorted by length)
ENCODE_CHUNK = 4096


@dataclass
class EncoderOutput:
    """What every encoder returns: unpooled features, which of them are real, and an optional pooled vector."""

    features: torch.Tensor  # (B, L, D)
    mask: torch.Tensor  # (B, L) bool, True at real positions
    pooled: torch.Tensor | None = None  # (B, D) when the backbone computes one


@dataclass
class TokenizedText:
    """One text split into vocabulary ids, without special tokens; offsets index the original string."""

    ids: list[int]
    offsets: list[tuple[int, int]]


@dataclass
class ModelInput:
    """One encoder input row: ids with special tokens added.

    ``sequence_ids[i]`` is 0 or 1 for a position that came from the first or second text and
    ``None`` for a special token; ``offsets[i]`` is the character span in that text ((0, 0) for
    specials). QA code uses both to map predicted token spans back to characters.
    """

    ids: list[int]
    type_ids: list[int]
    sequence_ids: list[int | None]
    offsets: list[tuple[int, int]]
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def check_texts(texts: Any, name: str = "texts") -> list[str]:
    """Validate a batch of texts: a non-empty list of strings (empty strings are allowed)."""
    if texts is None:
        raise TypeError(f"{name} is None: pass a list of strings, e.g. ['a sentence', 'another']")
    if isinstance(texts, str):
        raise TypeError(f"{name} is a single string: wrap it in a list, e.g. [{texts[:30]!r}]")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}") from None
    if not texts:
        raise ValueError(f"{name} is empty: pass at least one string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is {type(text).__name__} ({text!r:.40}), expected str")
    return texts


def pool(output: EncoderOutput, pooling: str) -> torch.Tensor:
    """Pool unpooled features over real positions; fully masked rows give zeros, never NaN."""
    mask = output.mask.unsqueeze(-1).to(output.features.dtype)  # (B, L, 1)
    if pooling == "mean":
        summed = (output.features * mask).sum(1)  # (B, D)
        return summed / mask.sum(1).clamp(min=1.0)
    if pooling == "max":
        filled = output.features.masked_fill(~output.mask.unsqueeze(-1), float("-inf"))
        pooled = filled.max(1).values  # (B, D)
        return torch.where(output.mask.any(1, keepdim=True), pooled, torch.zeros_like(pooled))
    if pooling == "first":
        return output.features[:, 0] * mask[:, 0]  # (B, D)
    if pooling == "pooled":
        if output.pooled is None:
            raise ValueError("pooling='pooled' needs an encoder with a pooled output; use 'mean' instead")
        return output.pooled
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


class Encoder(nn.Module, ABC):
    """Base class of every encoder kind.

    Subclasses set ``kind`` (the registry name), implement ``preprocess``, ``forward``,
    ``num_features``, ``layer_groups``, ``config`` and ``_from_saved``, and may override
    ``save_pretrained`` when their weights live in another format.
    """

    kind: ClassVar[str] = ""
    modality: ClassVar[str] = "text"  # "text" or "image"
    #: ``encode``'s batch size when none is given: cheap encoders (word vectors) take bigger batches
    encode_batch_size: ClassVar[int] = 64

    @property
    @abstractmethod
    def num_features(self) -> int:
        """Width D of ``EncoderOutput.features``."""

    @abstractmethod
    def preprocess(self, inputs: Sequence[Any], text_pairs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Raw inputs (texts or images) -> a dict of batched tensors for ``forward``."""

    @abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Batched tensors -> unpooled features and mask.

        Reads only the keys ``preprocess``/``collate`` made and ignores any other key: heads put
        their targets ("label", "row_index", ...) in the same batch dict.
        """

    @abstractmethod
    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        """Named groups of modules, ordered input -> output, covering every parameter exactly once."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings that, with the saved weights, rebuild this encoder."""

    @classmethod
    @abstractmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> "Encoder":
        """Rebuild from a directory written by ``save_pretrained``."""

    # ----- shared behaviour -------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def group_names(self) -> list[str]:
        return [name for name, _ in self.layer_groups()]

    def padded_length(self, longest: int) -> int:
        """The length ``collate`` pads a batch whose longest row is ``longest`` to (here: that length)."""
        return longest

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write config JSON plus safetensors weights; ``nlptl.load_encoder(directory)`` restores it.

        The directory is replaced atomically and only when it is empty or holds an earlier save
        (see ``nlptl.artifacts.save_directory``): the user's other files are never deleted.
        """
        from ..artifacts import save_directory

        save_directory(directory, self._write_artifact, ENCODER_CONFIG_NAME)

    def _write_artifact(self, directory: Path) -> None:
        """Fill a fresh, empty ``directory`` with this encoder's files; subclasses with other formats override it."""
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "encoder.safetensors"))
        self._write_config(directory)

    def _write_config(self, directory: Path) -> None:
        payload = {"kind": self.kind, "config": self.config()}
        (directory / ENCODER_CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True))

    def _load_weights(self, directory: Path) -> None:
        from .weights import load_safetensors

        path = Path(directory) / "encoder.safetensors"
        state = load_safetensors(path)
        try:
            self.load_state_dict(state)
        except RuntimeError as exc:  # missing/unexpected keys or shapes: the file belongs to another encoder
            raise ValueError(f"{str(path)!r} does not fit the encoder its {ENCODER_CONFIG_NAME} describes ({exc}); "
                             "the directory mixes two saves: save the encoder again") from None

    @torch.inference_mode()
    def encode(
        self,
        inputs: Sequence[Any],
        batch_size: int | None = None,
        pooling: str = "mean",
        show_progress: bool = False,
        mixed_precision: str = "no",
    ) -> np.ndarray:
        """Pooled features for feature extraction: numpy (N, D) float32 in input order.

        Texts are tokenized once, up front and only as far as ``max_length`` reaches, then encoded
        in order of token count (longest first) so each batch pads little; the result is put back
        into the caller's order. ``batch_size`` defaults to the encoder's ``encode_batch_size``.
        ``mixed_precision="bf16"`` runs the encoder under bf16 autocast (on a GPU, or a CPU with
        native bf16: see ``nlptl.devices.cpu_has_native_bf16``); features agree with float32 to a
        cosine of about 0.9999. ``"auto"`` is bf16 where this device has native bf16, as in ``fit``.
        """
        if self.modality == "text":
            inputs = check_texts(inputs)
        elif inputs is None or isinstance(inputs, (str, os.PathLike)):
            raise TypeError(f"inputs is {inputs!r}: pass a list of images (PIL images, arrays or file paths)")
        elif not len(inputs):
            raise ValueError("inputs is empty: pass at least one image")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        batch_size = self.encode_batch_size if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; pass a positive int")
        if mixed_precision not in ("no", "bf16", "auto"):
            raise ValueError(f"mixed_precision={mixed_precision!r}: encode takes 'no', 'bf16' or 'auto' "
                             "(bf16 where this device has native bf16)")
        mixed_precision = resolve_precision(mixed_precision, self.device.type)
        was_training = self.training
        self.eval()
        order, make_batch = self._encode_plan(inputs)
        out = np.zeros((len(inputs), self.num_features), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", unit="batch")
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=mixed_precision == "bf16")
        try:
            with autocast:
                for start in starts:
                    idx = order[start : start + batch_size]
                    batch = {k: v.to(self.device) for k, v in make_batch(idx).items()}
                    out[idx] = pool(self(batch), pooling).float().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def _encode_plan(self, inputs: Sequence[Any]) -> tuple[np.ndarray, Callable[[np.ndarray], dict]]:
        """(the order to encode inputs in, a function from a slice of that order to a batch)."""
        return np.arange(len(inputs)), lambda idx: self.preprocess([inputs[i] for i in idx])


class TextEncoder(Encoder):
    """An encoder of text: tokenize -> build_inputs -> collate, shared by every task."""

    modality: ClassVar[str] = "text"
    #: longest ModelInput the encoder accepts (special tokens included)
    max_length: int

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        """Split texts into vocabulary ids with character offsets, no special tokens."""

    @abstractmethod
    def build_inputs(self, first: TokenizedText, second: TokenizedText | None = None) -> ModelInput:
        """Add this encoder's special tokens around one text or a pair."""

    @abstractmethod
    def collate(self, rows: Sequence[ModelInput]) -> dict[str, torch.Tensor]:
        """Pad rows to the longest one (right padding) and stack into tensors for ``forward``."""

    def num_special_tokens(self, pair: bool = False) -> int:
        """How many special tokens ``build_inputs`` adds (fixed per encoder, so computed once)."""
        counts = self.__dict__.setdefault("_special_token_counts", {})
        if pair not in counts:
            probe = TokenizedText([], [])
            counts[pair] = len(self.build_inputs(probe, probe if pair else None))
        return counts[pair]

    def tokenize_truncated(self, texts: Sequence[str], max_tokens: int) -> list[TokenizedText]:
        """``tokenize``, keeping at most the first ``max_tokens`` tokens of each text.

        Kinds that can stop early (transformers, static vectors) override this so that a long text
        is never tokenized in full; this default tokenizes everything and cuts.
        """
        return [_cut(t, max_tokens) for t in self.tokenize(texts)]

    def build_rows(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list[ModelInput]:
        """One ``ModelInput`` per text (or pair), cut to ``max_length`` like ``truncate`` (with its warning).

        Each text is tokenized only as far as a row can use: one token past the budget, which is
        enough to tell that it was cut and to split a pair's budget as ``truncate`` does.
        """
        texts = check_texts(texts)
        if text_pairs is None:
            limit = self.max_length - self.num_special_tokens(False) + 1
            return [self.build_inputs(self.truncate(t, None)) for t in self.tokenize_truncated(texts, limit)]
        pairs = check_texts(text_pairs, "text_pairs")
        if len(pairs) != len(texts):
            raise ValueError(f"text_pairs has {len(pairs)} items but texts has {len(texts)}; they must match")
        limit = self.max_length - self.num_special_tokens(True) + 1
        firsts, seconds = self.tokenize_truncated(texts, limit), self.tokenize_truncated(pairs, limit)
        return [self.build_inputs(*self.truncate(a, b)) for a, b in zip(firsts, seconds)]

    def _encode_plan(self, inputs: Sequence[str]) -> tuple[np.ndarray, Callable[[np.ndarray], dict]]:
        inputs = check_texts(inputs)
        rows = [row for first in range(0, len(inputs), ENCODE_CHUNK)  # one chunk's tokenizer output at a time
                for row in self.build_rows(inputs[first : first + ENCODE_CHUNK])]
        return longest_first(rows), lambda idx: self.collate([rows[i] for i in idx])

    def preprocess(self, inputs: Sequence[str], text_pairs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        return self.collate(self.build_rows(inputs, text_pairs))

    def truncate(self, first: TokenizedText, second: TokenizedText | None):
        """Cut the longer text so the row fits ``max_length``, with a warning; never crash."""
        budget = self.max_length - self.num_special_tokens(second is not None)
        total = len(first.ids) + (len(second.ids) if second is not None else 0)
        if total <= budget:
            return first if second is None else (first, second)
        _warn_truncation(self.max_length)
        if second is None:
            return _cut(first, budget)
        keep_a, keep_b = len(first.ids), len(second.ids)
        while keep_a + keep_b > budget:  # trim the longer one, one token at a time
            if keep_a >= keep_b:
                keep_a -= 1
            else:
                keep_b -= 1
        return _cut(first, keep_a), _cut(second, keep_b)


def longest_first(rows: Sequence[Sized]) -> np.ndarray:
    """Indices of rows by decreasing length; equal lengths keep their order."""
    return np.argsort([-len(r) for r in rows], kind="stable")


def _cut(text: TokenizedText, n: int) -> TokenizedText:
    return TokenizedText(text.ids[:n], text.offsets[:n])


def _warn_truncation(max_length: int) -> None:
    # Python's default filter shows this once per call site, so a training loop does not spam.
    warnings.warn(
        f"input longer than the encoder's maximum of {max_length} tokens was truncated to fit",
        UserWarning,
        stacklevel=4,
    )
