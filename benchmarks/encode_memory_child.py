"""One MiniLM ``encode`` of short SST-2 sentences plus very long texts in a fresh process (case encode_memory).

Prints one JSON line: peak RSS (ru_maxrss, VmHWM as a cross-check), RSS before encoding (imports,
the model and the texts themselves), seconds, and whether each long text's embedding equals that
of its first 300 words (it should: rows hold at most max_length tokens).
On its own: ``python benchmarks/encode_memory_child.py --short 5000 --long 200``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from harness import DEFAULT_DATA_DIR, ENCODE_BATCH_SIZE, MAX_LENGTH, read_sst2, silence_libraries  # noqa: E402
from memory_child import max_rss_bytes, vm_hwm_bytes  # noqa: E402


def long_texts(sentences: list[str], count: int, words: int) -> list[str]:
    """``count`` different texts of ``words`` words each: SST-2 sentences run together from spread-out starts."""
    pool = " ".join(sentences).split()
    if len(pool) < words + count:
        raise ValueError(f"SST-2 train has {len(pool)} words; cannot cut {count} texts of {words} words")
    step = (len(pool) - words) // max(count, 1)
    return [" ".join(pool[i * step : i * step + words]) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, required=True, help="first N SST-2 training sentences")
    parser.add_argument("--long", type=int, required=True, help="texts of --words words each")
    parser.add_argument("--words", type=int, default=10_000)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    silence_libraries()
    import nlptl
    from nlptl.assets import minilm_path

    sentences, _ = read_sst2(args.data_dir / "sst2" / "train.tsv")
    if args.short > len(sentences):
        raise SystemExit(f"--short {args.short} is more than the {len(sentences)} SST-2 training sentences")
    texts = sentences[: args.short] + long_texts(sentences, args.long, args.words)
    encoder = nlptl.load_encoder(minilm_path(), max_length=MAX_LENGTH).to(args.device)
    encoder.encode(sentences[:ENCODE_BATCH_SIZE], batch_size=ENCODE_BATCH_SIZE)  # warm-up
    before = max_rss_bytes()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every long text is truncated, as it should be
        out = encoder.encode(texts, batch_size=ENCODE_BATCH_SIZE)
    seconds = time.perf_counter() - started
    peak, hwm = max_rss_bytes(), vm_hwm_bytes()
    check = min(args.long, 8)  # a few long texts against their first 300 words: truncation, not a cut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads = encoder.encode([" ".join(t.split()[:300]) for t in texts[args.short : args.short + check]]) \
            if check else np.zeros((0, out.shape[1]))
    same = bool(np.allclose(out[args.short : args.short + check], heads, atol=1e-5))
    print(json.dumps({"peak_rss_bytes": peak, "peak_vm_hwm_bytes": hwm, "rss_before_encode_bytes": before,
                      "rss_added_by_encode_bytes": peak - before, "seconds": round(seconds, 3),
                      "samples_per_s": round(len(texts) / seconds, 2),
                      "input_characters": sum(map(len, texts)), "long_equal_first_words": same}))


if __name__ == "__main__":
    main()
