"""A tiny offline text encoder for head tests, independent of the real encoder kinds.

Words and punctuation are tokens (vocabulary built from the texts given), rows look like
BERT's ``[CLS] first [SEP] second [SEP]``, and a small Transformer layer makes features depend
on context, which extractive QA needs to tell an answer from the same word elsewhere.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from nlptl.encoders.base import EncoderOutput, ModelInput, TextEncoder, TokenizedText, check_texts

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
PAD, CLS, SEP, UNK = range(4)
TOKEN = re.compile(r"\w+|[^\w\s]")


class WordEncoder(TextEncoder):
    """Word embeddings + learned positions + one Transformer layer over a word-level vocabulary."""

    kind = "fake_words"

    def __init__(self, vocab: list[str], dim: int = 32, max_length: int = 24, heads: int = 2, seed: int = 0):
        super().__init__()
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.dim, self.max_length, self.heads = dim, max_length, heads
        with torch.random.fork_rng():  # seeded weights without touching the caller's RNG
            torch.manual_seed(seed)
            self.embed = nn.Embedding(len(self.vocab), dim, padding_idx=PAD)
            self.position = nn.Embedding(max_length, dim)
            self.type_embed = nn.Embedding(2, dim)
            self.layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True)

    @classmethod
    def from_texts(cls, texts: Sequence[str], **options: Any) -> "WordEncoder":
        words = sorted({m.group().lower() for t in texts for m in TOKEN.finditer(t)})
        return cls(SPECIALS + words, **options)

    @property
    def num_features(self) -> int:
        return self.dim

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        out = []
        for text in check_texts(texts):
            matches = list(TOKEN.finditer(text))
            ids = [self.index.get(m.group().lower(), UNK) for m in matches]
            out.append(TokenizedText(ids, [m.span() for m in matches]))
        return out

    def build_inputs(self, first: TokenizedText, second: TokenizedText | None = None) -> ModelInput:
        ids = [CLS, *first.ids, SEP]
        seq: list[int | None] = [None, *[0] * len(first.ids), None]
        offsets = [(0, 0), *first.offsets, (0, 0)]
        type_ids = [0] * len(ids)
        if second is not None:
            ids += [*second.ids, SEP]
            seq += [*[1] * len(second.ids), None]
            offsets += [*second.offsets, (0, 0)]
            type_ids += [1] * (len(second.ids) + 1)
        return ModelInput(ids, type_ids, seq, offsets)

    def collate(self, rows: Sequence[ModelInput]) -> dict[str, torch.Tensor]:
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), PAD, dtype=torch.long)
        types = torch.zeros((len(rows), length), dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r.ids, dtype=torch.long)
            types[i, : len(r)] = torch.tensor(r.type_ids, dtype=torch.long)
            mask[i, : len(r)] = True
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()  # (B, L)
        positions = torch.arange(ids.shape[1], device=ids.device)  # (L,)
        x = self.embed(ids) + self.position(positions) + self.type_embed(batch["token_type_ids"])  # (B, L, D)
        x = self.layer(x, src_key_padding_mask=~mask)  # (B, L, D)
        return EncoderOutput(features=x * mask.unsqueeze(-1), mask=mask)

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        return [("embeddings", [self.embed, self.position, self.type_embed]), ("layer.0", [self.layer])]

    def config(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "dim": self.dim, "max_length": self.max_length, "heads": self.heads}

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> "WordEncoder":
        encoder = cls(**config)
        encoder._load_weights(directory)
        return encoder

