"""Frozen-encoder feature cache: what is below the freeze line is computed once, not every epoch.

With ``feature_extraction`` the encoder never changes, yet a plain loop recomputes it for every
batch of every epoch. ``FeatureCache`` runs the encoder once per row (eval mode, inference mode,
length-sorted batches), keeps each row's features trimmed to its real length, and the training
loop then feeds the head from the cache. When the head reads the features only through a
parameter-free pooling (``Head.cache_pooling``: a classification head's mean, max or first
pooling), the cache keeps that one pooled vector per row instead: 384 floats per MiniLM sentence
rather than 384 per token.

Storage: in memory, or, when the features would pass ``max_memory_mb``, in memory-mapped files
under ``directory`` (the run directory's ``feature_cache/``). A disk cache is named by a hash of
the encoder's settings and weights, the storage dtype and every row's encoder input (token ids, or
image pixels), so a later ``fit`` on the same encoder and data reuses it, and a changed weight, a
changed preprocessing setting or changed data can never pick up a stale one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .encoders.base import EncoderOutput, ModelInput, pool

CACHED_FEATURES = "cached_features"  # batch keys the cached path adds
CACHED_MASK = "cached_mask"
CACHED_POOLED = "cached_pooled"
CACHED_BOUNDARY = "cached_boundary"  # hidden states at a top_k freeze line, (B, L, D)
BOUNDARY_GROUPS = "cached_boundary_groups"  # (B,) how many bottom groups those states stand for
DTYPES = {"float32": np.float32, "float16": np.float16}


class FeatureCache:
    """Rows' features stored flat: ``features[starts[i] : starts[i] + lengths[i]]`` is row i, (L_i, D)."""

    def __init__(self, features: np.ndarray, masks: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                 pooled: np.ndarray | None, location: Path | None = None, reused: bool = False) -> None:
        self.features, self.masks, self.pooled = features, masks, pooled  # (T, D), (T,), (N, D) or None
        self.starts, self.lengths = starts, lengths  # (N,), (N,)
        self.location, self.reused = location, reused
        self.boundary: int | None = None  # set when the features are hidden states at a top_k freeze line

    @property
    def nbytes(self) -> int:
        return self.features.nbytes + (self.pooled.nbytes if self.pooled is not None else 0)

    @classmethod
    def build(cls, model, rows: Sequence[dict[str, Any]], batch_size: int, device: torch.device,
              dtype: str = "float32", progress: bool = False, directory: str | os.PathLike | None = None,
              max_memory_mb: float = 2048, boundary: int | None = None, head=None,
              precision: str = "no") -> "FeatureCache":
        """Encode every row once; ``boundary=n`` stores the hidden states above the bottom n groups instead.

        ``head`` (default: the model's default head) collates the rows and chooses the pooling.
        ``precision`` names the mixed precision the caller encodes under (``fit`` wraps this call in
        its autocast): it is part of the on-disk cache key, so a bf16 cache never serves a float32 run.
        """
        head = head if head is not None else model.head
        cache = cls._build(model, head, rows, batch_size, device, dtype, progress, directory, max_memory_mb, boundary,
                           precision)
        cache.boundary = boundary
        return cache

    @classmethod
    def _build(cls, model, head, rows, batch_size, device, dtype, progress, directory, max_memory_mb, boundary,
               precision):
        if dtype not in DTYPES:
            raise ValueError(f"cache dtype {dtype!r} is not one of {sorted(DTYPES)}")
        encoder = model.encoder
        width = encoder.num_features
        pooling = head.cache_pooling() if boundary is None else None  # one vector per row, not L
        positions = len(rows) if pooling else sum(len(r["input"]) for r in rows if isinstance(r["input"], ModelInput))
        estimated_mb = positions * width * np.dtype(DTYPES[dtype]).itemsize / 2**20
        encoded = _encode_rows(model.encoder, head, rows, batch_size, device, progress, boundary, pooling)
        if directory is None or estimated_mb <= max_memory_mb:
            return cls._in_memory(encoded, len(rows), width, dtype, max(positions, 1))
        path = Path(directory) / cache_key(encoder, rows, f"{dtype}-boundary{boundary}-pooling{pooling}"
                                                  + (f"-{precision}" if precision != "no" else ""))
        if not (path / "index.json").is_file():
            _write_to_disk(path, encoded, len(rows), width, dtype)
            return cls.load(path, reused=False)
        return cls.load(path, reused=True)

    @classmethod
    def _in_memory(cls, encoded: Iterator, n_rows: int, width: int, dtype: str, capacity: int) -> "FeatureCache":
        """Copy each row into one preallocated array as it is encoded.

        ``capacity`` is the expected number of positions (the rows' token counts; a row is trimmed to
        its last real position, never longer); inputs without a token count grow the array. Filling
        in place holds the features once plus one batch, where collecting the batches and
        concatenating them held the features twice.
        """
        features = np.empty((capacity, width), dtype=DTYPES[dtype])
        masks = np.zeros(capacity, dtype=np.bool_)
        lengths, starts = np.zeros(n_rows, dtype=np.int64), np.zeros(n_rows, dtype=np.int64)
        pooled, position = None, 0
        for i, feats, mask, row_pooled in encoded:
            n = len(feats)
            if position + n > capacity:  # inputs without a token count (images): grow by doubling
                capacity = max(2 * capacity, position + n)
                features = np.concatenate([features[:position], np.empty((capacity - position, width), features.dtype)])
                masks = np.concatenate([masks[:position], np.zeros(capacity - position, np.bool_)])
            features[position : position + n], masks[position : position + n] = feats, mask
            starts[i], lengths[i] = position, n
            position += n
            if row_pooled is not None:
                if pooled is None:
                    pooled = np.zeros((n_rows, width), dtype=DTYPES[dtype])
                pooled[i] = row_pooled
        return cls(features[:position], masks[:position], starts, lengths, pooled)

    @classmethod
    def load(cls, path: Path, reused: bool = True) -> "FeatureCache":
        index = json.loads((path / "index.json").read_text())
        dtype, total, width = DTYPES[index["dtype"]], index["total"], index["width"]
        features = np.memmap(path / "features.bin", dtype=dtype, mode="r", shape=(total, width))
        masks = np.memmap(path / "masks.bin", dtype=np.bool_, mode="r", shape=(total,))
        pooled = np.load(path / "pooled.npy", mmap_mode="r", allow_pickle=False) if index["pooled"] else None
        starts = np.load(path / "starts.npy", allow_pickle=False)
        lengths = np.load(path / "lengths.npy", allow_pickle=False)
        return cls(features, masks, starts, lengths, pooled, location=path, reused=reused)

    def collate(self, head, encoder, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The head's batch (targets) plus the cached features, padded to the longest row."""
        batch = head.collate(encoder, rows)
        index = np.fromiter((r["row_index"] for r in rows), dtype=np.int64, count=len(rows))  # (B,)
        lengths = self.lengths[index]  # (B,)
        length = max(1, int(lengths.max()))
        length = encoder.padded_length(length)  # the same padded length head.collate gave the token ids
        real = np.arange(length) < lengths[:, None]  # (B, L)
        # One gather for the whole batch (memory-mapped caches too); padding positions repeat a real one, then zero.
        positions = self.starts[index][:, None] + np.minimum(np.arange(length), np.maximum(lengths - 1, 0)[:, None])
        features = np.asarray(self.features[positions.ravel()], dtype=np.float32).reshape(len(rows), length, -1)
        features[~real] = 0.0
        features = torch.from_numpy(features)  # (B, L, D)
        mask = torch.from_numpy(np.asarray(self.masks[positions.ravel()]).reshape(real.shape) & real)  # (B, L)
        if self.boundary is not None:  # the encoder still runs its top groups on these
            batch[CACHED_BOUNDARY] = features
            batch[BOUNDARY_GROUPS] = torch.full((len(rows),), self.boundary, dtype=torch.long)
            return batch
        batch[CACHED_FEATURES], batch[CACHED_MASK] = features, mask
        if self.pooled is not None:
            batch[CACHED_POOLED] = torch.from_numpy(np.array(self.pooled[index], dtype=np.float32))  # (B, D)
        return batch


@torch.inference_mode()
def _encode_rows(encoder, head, rows, batch_size, device, progress, boundary=None, pooling=None) -> Iterator[tuple]:
    """Yield (row index, features (L_i, D), mask (L_i,), pooled (D,) or None), longest rows first.

    With ``pooling`` each row's features are that pooling of them, one position: (1, D).
    """
    from .encoders.boundary import boundary_states

    was_training = encoder.training
    encoder.eval()
    lengths = [len(r["input"]) if isinstance(r["input"], ModelInput) else 0 for r in rows]
    order = np.argsort(lengths, kind="stable")[::-1]  # longest first: little padding per batch
    starts = range(0, len(rows), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="caching frozen features", unit="batch", leave=False)
    try:
        for start in starts:
            idx = order[start : start + batch_size]
            batch = head.collate(encoder, [rows[i] for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            out: EncoderOutput = encoder(batch) if boundary is None else boundary_states(encoder, batch, boundary)
            if pooling is not None:
                out = _pooled_output(out, pooling)
            features, mask = out.features.float().cpu().numpy(), out.mask.cpu().numpy()
            pooled = out.pooled.float().cpu().numpy() if out.pooled is not None else None
            for j, i in enumerate(idx):
                real = np.flatnonzero(mask[j])
                end = int(real[-1]) + 1 if len(real) else 1  # keep up to the last real position
                yield int(i), features[j, :end], mask[j, :end], (pooled[j] if pooled is not None else None)
    finally:
        encoder.train(was_training)


def _pooled_output(out: EncoderOutput, pooling: str) -> EncoderOutput:
    """A one-position output whose mean, max, first and pooled poolings all give ``pool(out, pooling)``."""
    pooled = pool(out, pooling)  # (B, D)
    mask = torch.ones(pooled.shape[0], 1, dtype=torch.bool, device=pooled.device)  # (B, 1)
    return EncoderOutput(pooled.unsqueeze(1), mask, out.pooled)


def _write_to_disk(path: Path, encoded: Iterator, n_rows: int, width: int, dtype: str) -> None:
    """Stream rows to files in a temporary directory, then rename it into place (never half-written)."""
    staging = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    starts, lengths = np.zeros(n_rows, dtype=np.int64), np.zeros(n_rows, dtype=np.int64)
    position, has_pooled = 0, False
    try:
        with open(staging / "features.bin", "wb") as f, open(staging / "masks.bin", "wb") as m:
            pooled = np.lib.format.open_memmap(staging / "pooled.npy", mode="w+", dtype=DTYPES[dtype],
                                               shape=(n_rows, width))
            for i, feats, mask, row_pooled in encoded:
                f.write(feats.astype(DTYPES[dtype]).tobytes())
                m.write(mask.astype(np.bool_).tobytes())
                starts[i], lengths[i] = position, len(feats)
                position += len(feats)
                if row_pooled is not None:
                    pooled[i], has_pooled = row_pooled, True
            pooled.flush()
        del pooled
        if not has_pooled:
            (staging / "pooled.npy").unlink()
        np.save(staging / "starts.npy", starts)
        np.save(staging / "lengths.npy", lengths)
        index = {"rows": n_rows, "total": position, "width": width, "dtype": dtype, "pooled": has_pooled}
        (staging / "index.json").write_text(json.dumps(index))  # written last: marks a complete cache
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cache_key(encoder, rows: Sequence[dict[str, Any]], dtype: str) -> str:
    """sha256 of the encoder's kind, settings and weights, the dtype, and every row's encoder input."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"kind": encoder.kind, "config": encoder.config(), "dtype": dtype},
                             sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    for row in rows:
        value = row["input"]
        if isinstance(value, ModelInput):
            digest.update(np.asarray(value.ids, dtype=np.int64).tobytes())
            digest.update(np.asarray(value.type_ids, dtype=np.int64).tobytes())
        else:  # an image
            digest.update(np.asarray(value).tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:24]


def cached_output(encoder, batch: dict[str, torch.Tensor]) -> EncoderOutput | None:
    """The encoder output for a cached batch (run from the freeze line for top_k), or None for a plain one."""
    if CACHED_BOUNDARY in batch:
        from .encoders.boundary import forward_from_boundary

        n_frozen = int(batch[BOUNDARY_GROUPS][0])
        return forward_from_boundary(encoder, batch, batch[CACHED_BOUNDARY], n_frozen)
    if CACHED_FEATURES not in batch:
        return None
    return EncoderOutput(batch[CACHED_FEATURES], batch[CACHED_MASK], batch.get(CACHED_POOLED))
