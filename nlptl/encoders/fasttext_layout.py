"""Check a Facebook fastText ``.bin`` file's layout before gensim reads it.

Why: gensim reads each vocabulary word byte by byte until a NUL, and at the end of a file cut
short ``read(1)`` returns ``b""`` forever, so a truncated download hangs the process. Walking
the layout here (header, dictionary, two matrices) with ``mmap`` finds the exact size the file
must have, in about a second for a 2M-word model, and names what is wrong instead.

Layout (fastText ``FastText::saveModel``, little-endian on every platform fastText ships for):
magic, version (int32); 12 int32 arguments and one float64 (``t``); dictionary: size, nwords,
nlabels (int32), ntokens, pruneidx_size (int64), then ``size`` entries of NUL-terminated word,
int64 count, int8 type, then ``pruneidx_size`` pairs of int32; then for the input and the output
matrix: a bool ``quant`` byte, rows and columns (int64) and rows x columns float32.
"""
from __future__ import annotations

import mmap
import struct
from pathlib import Path

# dim, ws, epoch, minCount, neg, wordNgrams, loss, model, bucket, minn, maxn, lrUpdateRate (int32); t (float64)
_ARGS = struct.Struct("<12id")
_DICT = struct.Struct("<3i2q")
_MATRIX = struct.Struct("<?2q")
_HEADER_BYTES = 8


def check_fasttext_layout(path: Path) -> None:
    """Raise a ValueError naming ``path`` when it is not exactly one complete fastText model."""
    size = path.stat().st_size
    if size < _HEADER_BYTES + _ARGS.size + _DICT.size:
        raise _damaged(path, f"it is only {size} bytes, shorter than fastText's header")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        args = _ARGS.unpack_from(data, _HEADER_BYTES)
        dim, bucket = args[0], args[8]
        pos = _HEADER_BYTES + _ARGS.size
        vocab_size, nwords, nlabels, _, prune_size = _DICT.unpack_from(data, pos)
        pos += _DICT.size
        if dim < 1 or vocab_size < 0 or nwords < 0 or prune_size < -1 or bucket < 0:
            raise _damaged(path, f"its header holds impossible sizes (dim={dim}, words={vocab_size}, bucket={bucket})")
        for i in range(vocab_size):
            end = data.find(b"\0", pos)
            if end < 0 or end + 10 > size:
                raise _damaged(path, f"it ends inside the vocabulary, at word {i + 1} of {vocab_size}: cut short")
            pos = end + 10  # NUL, int64 count, int8 type
        pos += 8 * max(prune_size, 0)
        for name in ("input", "output"):
            if pos + _MATRIX.size > size:
                raise _damaged(path, f"it ends before the {name} matrix: cut short")
            quantized, rows, cols = _MATRIX.unpack_from(data, pos)
            if quantized:
                raise ValueError(f"{str(path)!r} is a quantized fastText model (.ftz), which gensim cannot read; "
                                 "use the full .bin model")
            if rows < 0 or cols != dim:
                raise _damaged(path, f"its {name} matrix is {rows} x {cols} but the model dimension is {dim}")
            pos += _MATRIX.size + 4 * rows * cols
    if pos != size:
        how = "cut short" if pos > size else "it has extra bytes at the end"
        raise _damaged(path, f"its layout needs {pos} bytes but the file has {size}: {how}")


def _damaged(path: Path, why: str) -> ValueError:
    return ValueError(f"{str(path)!r} starts like a fastText .bin model but {why}; download or copy it again")
