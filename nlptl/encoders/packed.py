"""Token id rows stored flat for ``encode``: 4 bytes a kept token instead of Python lists and ModelInputs."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class PackedRows:
    """Row i is ``ids[starts[i] : starts[i] + lengths[i]]``."""

    ids: np.ndarray  # (T,) int32, every row's ids one after another
    starts: np.ndarray  # (N,) int64
    lengths: np.ndarray  # (N,) int64

    @classmethod
    def from_chunks(cls, chunks: Iterable[Sequence[Sequence[int]]]) -> "PackedRows":
        """Pack rows that arrive a chunk at a time, so only one chunk is ever held as Python lists."""
        parts, lengths = [np.zeros(0, np.int32)], [np.zeros(0, np.int64)]
        for rows in chunks:
            n = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))  # (n_rows,)
            parts.append(np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(n.sum())))
            lengths.append(n)
        all_lengths = np.concatenate(lengths)  # (N,)
        starts = np.concatenate([[0], np.cumsum(all_lengths)[:-1]]).astype(np.int64)  # (N,)
        return cls(np.concatenate(parts), starts, all_lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def longest_first(self) -> np.ndarray:
        """Row indices by decreasing length; equal lengths keep their order (as ``base.longest_first``)."""
        return np.argsort(-self.lengths, kind="stable")

    def pad(self, idx: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``idx`` right-padded with ``pad_id``: ids (B, L) int64 and mask (B, L) bool, L at least 1."""
        lengths = self.lengths[idx]  # (B,)
        longest = max(1, int(lengths.max()))
        mask = np.arange(longest) < lengths[:, None]  # (B, L)
        ids = np.full(mask.shape, pad_id, dtype=np.int64)  # (B, L)
        ids[mask] = self.ids[(self.starts[idx][:, None] + np.arange(longest))[mask]]
        return ids, mask
