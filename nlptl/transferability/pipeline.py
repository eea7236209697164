"""Rank sources for a labelled text set end to end: sample, compute features once, score, advise.

``rank_texts`` is what ``nlptl rank`` prints and writes as rank.json, and what ``nlptl auto``
builds on; the validation recipe calls its two halves (``sample_candidates`` then ``rank_sample``)
so it can score the same features twice. Every candidate is scored on the same seeded sample.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from .features import TFIDF, load_source, source_candidates
from .ranking import Candidate, advise_freeze_depth, rank_candidates

__all__ = ["thread_limit", "seeded_sample", "sample_candidates", "rank_sample", "rank_texts", "classifier_scores",
           "format_table", "recommend"]


def seeded_sample(n_rows: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Row indices of a seeded random sample (all rows, shuffled, when ``size`` is None or too big)."""
    order = np.random.default_rng(seed).permutation(n_rows)
    return order if size is None or size >= n_rows else order[:size]


@contextmanager
def thread_limit(threads: int | None) -> Iterator[int | None]:
    """Cap torch and BLAS threads for a ranking; ``None``: 1 thread when the machine is oversubscribed.

    On a shared CPU whose 1-minute load average is at or above its core count, extra threads only
    wait for each other: measured here under load 7 on 2 cores, a (2000, 384) SVD took 4 s on 2
    BLAS threads and 0.1 s on 1, and MiniLM encoded 400 texts in 8.1 s on 2 torch threads and
    5.6 s on 1. On an idle machine ``None`` changes nothing.
    """
    import torch
    from threadpoolctl import threadpool_limits

    if threads is None and os.getloadavg()[0] >= (os.cpu_count() or 1):
        threads = 1
    if threads is None:
        yield None
        return
    if threads < 1:
        raise ValueError(f"threads={threads}; pass a positive number (or None to decide from the load)")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield threads
    finally:
        torch.set_num_threads(before)


def sample_candidates(
    texts: Sequence[str],
    labels: Sequence[int],
    sources: Sequence[str] = ("minilm", "glove-6b-50d", TFIDF),
    layers: Sequence[str] | str = "all",
    sample: int | None = 2000,
    seed: int = 0,
    max_length: int | None = None,
    batch_size: int = 64,
) -> tuple[list[Candidate], np.ndarray, dict[str, float]]:
    """Every source's candidates on one seeded sample: (candidates, the sample's labels, load seconds per source)."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if sample is not None and sample < 10:
        raise ValueError(f"sample={sample} is too small to score features; use at least a few hundred")
    rows = seeded_sample(len(texts), sample, seed)
    texts = [texts[i] for i in rows]
    candidates, load_seconds = [], {}
    for name in sources:
        loading = time.perf_counter()
        source = load_source(name, vocab_texts=texts, layers=layers, max_length=max_length,
                             batch_size=batch_size, seed=seed)
        load_seconds[name] = time.perf_counter() - loading
        candidates += source_candidates(source, texts)
    return candidates, np.asarray(labels)[rows], load_seconds


def rank_sample(
    candidates: list[Candidate],
    labels: np.ndarray,
    load_seconds: dict[str, float] | None = None,
    primary: str = "logme",
    scores: Sequence[str] = ("logme", "h_score", "knn_accuracy"),
    standardize: bool = True,
    tolerance: float = 0.05,
) -> dict[str, Any]:
    """Rank candidates computed by :func:`sample_candidates`; a rank.json-shaped dict (without total seconds)."""
    load_seconds = load_seconds or {}
    ranked = rank_candidates(candidates, labels, scores=scores, primary=primary, standardize=standardize)
    for row in ranked:  # a source's load time is part of what its candidates cost
        share = load_seconds.get(row["source"], 0.0) / sum(r["source"] == row["source"] for r in ranked)
        row["seconds"] += share
    sources = list(dict.fromkeys(c.source for c in candidates))
    advice = {}
    for name in sources:
        layered = sorted((r for r in ranked if r["source"] == name and r["depth"] is not None),
                         key=lambda r: r["depth"])
        groups = next((c.num_groups for c in candidates if c.source == name), None)
        if len(layered) > 1 and len(layered) == groups:  # a freeze line needs the whole curve
            advice[name] = advise_freeze_depth([r[primary] for r in layered], [r["group"] for r in layered],
                                               tolerance=tolerance).to_dict()
    return {"sample": len(labels), "primary": primary, "standardize": standardize, "sources": sources,
            "candidates": ranked, "freeze_advice": advice, "recommendation": recommend(ranked, advice),
            "load_seconds": load_seconds}


def rank_texts(
    texts: Sequence[str],
    labels: Sequence[int],
    sources: Sequence[str] = ("minilm", "glove-6b-50d", TFIDF),
    layers: Sequence[str] | str = "all",
    sample: int | None = 2000,
    seed: int = 0,
    primary: str = "logme",
    scores: Sequence[str] = ("logme", "h_score", "knn_accuracy"),
    standardize: bool = True,
    tolerance: float = 0.05,
    max_length: int | None = None,
    batch_size: int = 64,
    threads: int | None = None,
) -> dict[str, Any]:
    """Rank every (source, depth) candidate on a seeded sample of ``texts``; a rank.json-shaped dict.

    ``seconds`` is the whole ranking's wall time: loading the sources, features, scores.
    ``threads`` caps torch and BLAS threads meanwhile (see :func:`thread_limit`).
    """
    started = time.perf_counter()
    with thread_limit(threads) as used:
        candidates, y, load_seconds = sample_candidates(texts, labels, sources, layers, sample, seed, max_length,
                                                        batch_size)
        result = rank_sample(candidates, y, load_seconds, primary=primary, scores=scores, standardize=standardize,
                             tolerance=tolerance)
    return {**result, "seed": seed, "threads": used, "seconds": time.perf_counter() - started}


def classifier_scores(run_dirs: Sequence[str], texts: Sequence[str], labels: Sequence[int],
                      batch_size: int = 64) -> list[dict[str, Any]]:
    """LEEP of trained source classifiers (nlptl run or model directories) on the target sample.

    A source classifier predicts its own labels (say SST-2's) on the target texts; LEEP says how
    well those predictions carry the target labels. It ranks source *classifiers* among
    themselves: its scale is not LogME's, so these rows are kept apart from the feature ranking.
    """
    from pathlib import Path

    from ..model import TransferModel
    from .scores import leep

    rows = []
    for run_dir in run_dirs:
        started = time.perf_counter()
        directory = Path(run_dir) / "model" if (Path(run_dir) / "model").is_dir() else Path(run_dir)
        model = TransferModel.from_pretrained(directory)
        _, probabilities = model.predict(list(texts), batch_size=batch_size, return_probabilities=True)
        rows.append({"name": str(run_dir), "source_labels": list(model.labels or []),
                     "leep": leep(probabilities, np.asarray(labels)), "seconds": time.perf_counter() - started})
    rows.sort(key=lambda row: -row["leep"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def recommend(ranked: list[dict[str, Any]], advice: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What to train, from the best candidate: its source, strategy and freeze line, in plain words."""
    best = ranked[0]
    source = best["source"] or best["name"]
    if best["kind"] == TFIDF:
        return {"encoder": None, "baseline": "tfidf_lr", "strategy": None, "top_k": None,
                "reason": "TF-IDF scores above every pretrained candidate: transfer is likely to lose to the "
                          "classical baseline here (negative transfer); train tfidf_lr"}
    if source in advice:
        line = advice[source]
        return {"encoder": source, "baseline": None, "strategy": line["strategy"], "top_k": line["top_k"],
                "freeze_depth": line["depth"], "best_candidate": best["name"],
                "reason": f"{best['name']} scores best of {len(ranked)} candidates; " + line["reason"]}
    return {"encoder": source, "baseline": None, "strategy": "feature_extraction", "top_k": 0,
            "best_candidate": best["name"],
            "reason": f"{best['name']} scores best of {len(ranked)} candidates; no layer curve to read a "
                      "freeze line from, so train a head on its frozen features"}


def format_table(result: dict[str, Any]) -> str:
    """The ranking as a fixed-width text table, best first, then the recommended freeze line."""
    primary = result["primary"]
    width = max(len("candidate"), *(len(r["name"]) for r in result["candidates"]))
    lines = [f"{'rank':>4}  {'candidate':<{width}}  {'dims':>5}  {'logme':>8}  {'h_score':>8}  "
             f"{'knn_acc':>7}  {'seconds':>7}"]
    for r in result["candidates"]:
        lines.append(f"{r['rank']:>4}  {r['name']:<{width}}  {r['dims']:>5}  {r.get('logme', float('nan')):>8.4f}  "
                     f"{r.get('h_score', float('nan')):>8.4f}  {r.get('knn_accuracy', float('nan')):>7.3f}  "
                     f"{r['seconds']:>7.2f}")
    if result.get("source_classifiers"):
        lines.append("source classifiers by LEEP (a separate scale):")
        lines += [f"{r['rank']:>4}  {r['name']}  leep {r['leep']:.4f}  ({r['seconds']:.1f} s)"
                  for r in result["source_classifiers"]]
    rec = result["recommendation"]
    lines.append(f"ranked {len(result['candidates'])} candidates by {primary} on {result['sample']} rows "
                 f"in {result['seconds']:.1f} s")
    lines.append("recommended: " + (f"baseline {rec['baseline']}" if rec["baseline"] else
                                    f"--encoder {rec['encoder']} --strategy {rec['strategy']}"
                                    + (f" --top-k {rec['top_k']}" if rec["strategy"] == "top_k" else "")))
    lines.append("why: " + rec["reason"])
    return "\n".join(lines)
