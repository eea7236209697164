"""One nlptl fit in a fresh process, for case 6: prints its peak RSS (ru_maxrss) as one JSON line.

Run by ``run.py --cases 6``; on its own: ``python benchmarks/memory_child.py --strategy full --n 500``.
A fresh process per run matters: ru_maxrss only grows, so a shared process would report the
largest run for every run after it.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from harness import DEFAULT_DATA_DIR, SUITES, CaseSize, Context, load_data, quiet_stdout, silence_libraries  # noqa: E402
from training_cases import build_nlptl_model, fit_nlptl, nlptl_accuracy  # noqa: E402


def max_rss_bytes() -> int:
    # Linux reports KiB; macOS reports bytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def vm_hwm_bytes() -> int | None:
    """The kernel's high-water RSS of this process image (Linux), a cross-check of ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return None


def child_arguments(description: str, strategies: list[str]) -> argparse.ArgumentParser:
    """The flags every fresh-process fit child takes (this one and lora_case.py's)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--strategy", required=True, choices=strategies)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--mixed-precision", default="no")
    parser.add_argument("--n-eval", type=int, default=None, help="validation sentences to score (default: all)")
    return parser


def child_context(args: argparse.Namespace) -> Context:
    """Threads set, libraries quiet, data loaded: the context a child's fit runs in."""
    torch.set_num_threads(args.threads)
    silence_libraries()
    return Context(SUITES["full"], load_data(args.data_dir, args.n_eval), args.data_dir, args.device,
                   args.mixed_precision, args.threads, args.seed)


def main() -> None:
    args = child_arguments(__doc__.splitlines()[0], ["feature_extraction", "full"]).parse_args()
    ctx = child_context(args)
    with quiet_stdout():
        import accelerate  # noqa: F401  (fit imports it: load it before the baseline like the model)

        model = build_nlptl_model(ctx)
        before = max_rss_bytes()  # imports, data and the loaded model: what the fit adds comes after
        run = fit_nlptl(ctx, model, CaseSize(args.n, args.epochs), args.strategy)
        peak = max_rss_bytes()
        result = {"peak_rss_bytes": peak, "peak_vm_hwm_bytes": vm_hwm_bytes(), "rss_before_fit_bytes": before,
                  "seconds": round(run.seconds, 3), "samples_per_s": round(run.samples_per_s, 2),
                  "trainable_parameters": run.trainable_parameters}
        if run.cuda_peak_bytes is not None:
            result["cuda_peak_bytes"] = run.cuda_peak_bytes
        result["accuracy"] = nlptl_accuracy(ctx, model)  # after the peak is read: scoring is not the run
    print(json.dumps(result))


if __name__ == "__main__":
    main()
