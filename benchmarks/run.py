"""nlptl against its peers, side by side in one process: same MiniLM, same SST-2 rows, same settings.

    python benchmarks/run.py --suite quick            # a few minutes on 2 CPU cores
    python benchmarks/run.py --suite full             # the README figures
    python benchmarks/run.py --suite smoke --cases 1,4

Prints one JSON object per case on stdout (one line each; everything else goes to stderr) and
writes them all to ``--output`` (default ``benchmarks/results-<suite>.json``, or
``results-<suite>-<cases>.json`` when only some cases run, so a partial run never overwrites a
whole one). See benchmarks/README.md for the cases, the fairness rules and the field names.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however this is started

import torch  # noqa: E402

from nlptl.artifacts import write_text_atomically  # noqa: E402
from nlptl.devices import cpu_has_native_bf16  # noqa: E402

from encoding_cases import case_encode, case_flops, case_glove  # noqa: E402
from fe_cases import case_encode_memory, case_fe_vs_sklearn  # noqa: E402
from lora_case import case_lora  # noqa: E402
from harness import (BATCH_SIZE, DEFAULT_DATA_DIR, ENCODE_BATCH_SIZE, MAX_LENGTH, SUITES, Context,  # noqa: E402
                     device_description, load_data, quiet_stdout, silence_libraries)
from training_cases import (case_feature_extraction, case_full, case_full_vs_grouped, case_memory,  # noqa: E402
                            case_top_k, warm_up)

CASES: dict[str, Callable[[Context], dict]] = {
    "1": case_feature_extraction,
    "2": case_top_k,
    "3": case_full,
    "4": case_encode,
    "5": case_glove,
    "6": case_memory,
    "full_vs_grouped": case_full_vs_grouped,
    "fe_vs_sklearn": case_fe_vs_sklearn,
    "encode_memory": case_encode_memory,
    "lora": case_lora,
    "flops": case_flops,
}
TRAINING_CASES = ("1", "2", "3", "full_vs_grouped")  # share this process's warm-up (case 6 runs each fit in a fresh process)


def parse_cases(text: str) -> list[str]:
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CASES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown case(s) {unknown or text!r}; choose from {', '.join(CASES)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description="Benchmark nlptl against transformers.Trainer, "
                                     "sentence-transformers and gensim on SST-2 (see benchmarks/README.md).")
    parser.add_argument("--suite", choices=list(SUITES), default="quick",
                        help="sizes: smoke (a functional check), quick (under ~10 min on 2 CPU cores), full (the README figures)")
    parser.add_argument("--cases", type=parse_cases, default=list(CASES),
                        help=f"comma-separated cases to run, from {','.join(CASES)} (default: all)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder holding sst2/train.tsv and sst2/validation.tsv (default: ../shared/data)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file for all results (default: benchmarks/results-<suite>.json, "
                             "or results-<suite>-<cases>.json for a subset of cases)")
    parser.add_argument("--mixed-precision", choices=["default", "no", "bf16"], default="bf16" if cuda else "default",
                        help="default: each side's own default (nlptl 'auto' = bf16 autocast where the hardware has "
                             "native bf16; Trainer and sentence-transformers float32); no / bf16: forced on both sides "
                             "(Trainer bf16=True, sentence-transformers cast to bf16 in fe_vs_sklearn); bf16 needs a "
                             "GPU or a CPU with native bf16; default: bf16 on a GPU, else default")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads, the same for both sides (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def default_output(suite: str, cases: list[str]) -> Path:
    subset = "" if sorted(cases) == sorted(CASES) else "-" + "-".join(cases)
    return Path(__file__).resolve().parent / f"results-{suite}{subset}.json"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.mixed_precision == "bf16" and device == "cpu" and not cpu_has_native_bf16():
        raise SystemExit(f"--mixed-precision {args.mixed_precision} needs a GPU or a CPU with native bf16 "
                         "(avx512_bf16 or amx_bf16); this machine has neither (use 'no')")
    torch.set_num_threads(args.threads)
    silence_libraries()
    suite = SUITES[args.suite]
    output = args.output or default_output(suite.name, args.cases)
    ctx = Context(suite, load_data(args.data_dir, suite.n_eval), args.data_dir, device, args.mixed_precision,
                  args.threads, args.seed)
    sizes = {case: vars(size) for case, size in suite.sizes.items()}
    print(f"suite {suite.name} on {device_description(device)}, {args.threads} torch threads, mixed precision "
          f"{args.mixed_precision}; batch {BATCH_SIZE} (encode {ENCODE_BATCH_SIZE}), max length {MAX_LENGTH}, "
          f"{len(ctx.data.eval_texts)} validation sentences; sizes per case: {json.dumps(sizes)}", file=sys.stderr)

    report = {"suite": suite.name, "cases": args.cases, "sizes": sizes, "n_eval": len(ctx.data.eval_texts),
              "environment": environment(device, args.threads), "results": [], "errors": []}
    started = time.perf_counter()
    if any(case in TRAINING_CASES for case in args.cases):
        print("warming up: one untimed training step on each side", file=sys.stderr)
        with quiet_stdout():
            warm_up(ctx)
    for case in args.cases:
        case_started = time.perf_counter()
        try:
            with quiet_stdout():
                record = CASES[case](ctx)
        except Exception as exc:  # one broken case must not hide the others' figures
            traceback.print_exc()
            report["errors"].append({"case": case, "error": f"{type(exc).__name__}: {exc}"})
            continue
        record["case_wall_seconds"] = round(time.perf_counter() - case_started, 1)
        print(json.dumps(record), flush=True)
        report["results"].append(record)
        write(output, report)  # after every case, so an interrupted run keeps what it measured
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    write(output, report)
    print(f"wrote {output} ({report['total_seconds']} s)", file=sys.stderr)
    return 1 if report["errors"] else 0


def environment(device: str, threads: int) -> dict:
    import gensim
    import sentence_transformers
    import transformers

    import nlptl

    return {"device": device_description(device), "torch_threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__, "gensim": gensim.__version__, "nlptl": nlptl.__version__,
            "platform": platform.platform(), "cpu_native_bf16": cpu_has_native_bf16()}


def write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
