"""Case ``lora``: LoRA against full fine-tuning, both nlptl, same MiniLM, SST-2 rows, batch and epochs.

Each fit runs in a fresh process (as case 6 does), so each peak RSS (ru_maxrss) is that fit's
alone; the target is LoRA's peak RSS <= 0.8x full fine-tuning's, and the accuracy goal is LoRA
within 1 point of full fine-tuning. Both sides train with length-grouped batches (nlptl's
recommended setting) and each at the learning rate that suits it: 5e-5 for full fine-tuning (the
rate every other case uses), ``LORA_LEARNING_RATE`` for the adapters (B starts at zero and the
updates are low-rank, so they need a far higher rate), the head 1e-3 on both.

LoRA sits on the top 3 of MiniLM's 6 layers (``top_k=3``; rank 8 on query and value, nlptl's
defaults): the frozen embeddings and bottom 3 layers are then computed once and cached at the
freeze line, so neither their activations nor a backward pass through them is ever held. Chosen
on the quick size (1,000 sentences, 1 epoch), from LoRA on all layers at 1e-3 (accuracy 0.607),
top 3 at 1e-3 (0.604), top 3 at 3e-3 (0.747) and top 3 on every linear at 3e-3 (0.778, but peak
RSS 0.84x): full fine-tuning scored 0.732 there. Both sides pad batches to a multiple of 8 tokens
(``PAD_TO_MULTIPLE_OF`` below says why).

    python benchmarks/run.py --suite quick --cases lora
    python benchmarks/lora_case.py --strategy lora --n 500     # one side on its own (one JSON line)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (BATCH_SIZE, LEARNING_RATES, CaseSize, Context, base_record, judge, measure,  # noqa: E402
                     quiet_stdout, run_fresh_process)

# Sizes per suite, kept here rather than in harness.SUITES: (training sentences, epochs), the same on both sides.
SIZES = {"smoke": CaseSize(64, 1), "quick": CaseSize(1_000, 1), "full": CaseSize(4_000, 1)}
LORA = dict(top_k=3, lora_rank=8, lora_alpha=16.0, lora_dropout=0.1)  # rank etc.: nlptl's defaults
LORA_LEARNING_RATE = 3e-3
HEAD_LEARNING_RATE = 1e-3
TARGET = 0.8  # LoRA peak RSS / full fine-tune peak RSS
# Both sides pad each batch to a multiple of 8 tokens: length-grouped batches otherwise come in ~35
# lengths, and on CPU each new shape costs oneDNN a kernel and a cache entry. Measured on the full
# size: LoRA peak 1,068 MB with it, ~1,300 MB without; full fine-tuning 1,504 MB, ~1,620 MB without.
PAD_TO_MULTIPLE_OF = 8


def fit_side(ctx: Context, model, size: CaseSize, strategy: str, **lora: object) -> dict:
    """One timed nlptl fit of ``strategy`` ("lora" or "full"); ``lora`` overrides the LoRA settings."""
    import nlptl

    options = {**LORA, **{k: v for k, v in lora.items() if v is not None}} if strategy == "lora" else {}
    rate = options.pop("learning_rate", LORA_LEARNING_RATE) if strategy == "lora" else LEARNING_RATES["full"]
    run = measure(lambda: nlptl.fit(
        model, ctx.data.train(size.n), strategy=strategy, epochs=size.epochs, batch_size=BATCH_SIZE,
        learning_rate=rate, head_learning_rate=HEAD_LEARNING_RATE, weight_decay=0.01, warmup_ratio=0.1,
        max_grad_norm=1.0, mixed_precision=ctx.nlptl_precision, seed=ctx.seed, cpu=ctx.cpu, progress=False,
        group_by_length=True, **options), ctx.device)
    return {"seconds": round(run.seconds, 3), "samples_per_s": round(size.n * size.epochs / run.seconds, 2),
            "trainable_parameters": run.result.trainable_parameters, "total_parameters": run.result.total_parameters,
            "learning_rate": rate, "cuda_peak_bytes": run.cuda_peak_bytes}


def run_child(ctx: Context, size: CaseSize, strategy: str) -> dict:
    """One side in a fresh Python process (started through a small shell, as ``run_memory_child`` explains)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--strategy", strategy, "--n", str(size.n),
               "--epochs", str(size.epochs), "--data-dir", str(ctx.data_dir), "--threads", str(ctx.threads),
               "--seed", str(ctx.seed), "--device", ctx.device, "--mixed-precision", ctx.mixed_precision,
               "--n-eval", str(len(ctx.data.eval_texts))]
    return run_fresh_process(command, f"lora case child for strategy={strategy!r}")


def case_lora(ctx: Context) -> dict:
    """Peak RSS and accuracy of a LoRA fit against a full fine-tune, each in its own process."""
    size = SIZES[ctx.suite.name]
    record = base_record(ctx, "lora", "LoRA (rank 8, query+value, top 3 layers) vs full fine-tune: peak RSS "
                         "(both nlptl)",
                         "nlptl fit(strategy='full')", size)
    lora = run_child(ctx, size, "lora")
    full = run_child(ctx, size, "full")
    for side, run in (("nlptl", lora), ("peer", full)):
        record.update({f"{side}_{key}": value for key, value in run.items() if value is not None})
    record["lora_settings"] = {**LORA, "target_modules": "MiniLM default (query, value)",
                               "learning_rate": LORA_LEARNING_RATE}
    record["pad_to_multiple_of"] = PAD_TO_MULTIPLE_OF  # both sides
    record["accuracy_difference_points"] = round(100 * (lora["accuracy"] - full["accuracy"]), 2)
    record["accuracy_goal_met"] = record["accuracy_difference_points"] >= -1.0  # goal: within 1 point
    record["trainable_parameter_ratio"] = round(lora["trainable_parameters"] / full["trainable_parameters"], 5)
    added = [run["peak_rss_bytes"] - run["rss_before_fit_bytes"] for run in (lora, full)]
    record["ratio_rss_added_by_fit"] = round(added[0] / added[1], 4) if added[1] > 0 else None
    if lora.get("cuda_peak_bytes") and full.get("cuda_peak_bytes"):
        record["ratio_cuda_peak"] = round(lora["cuda_peak_bytes"] / full["cuda_peak_bytes"], 4)
    return judge(record, lora["peak_rss_bytes"], full["peak_rss_bytes"], target=TARGET, higher_is_better=False)


def main() -> None:
    from memory_child import child_arguments, child_context, max_rss_bytes, vm_hwm_bytes
    from training_cases import build_nlptl_model, nlptl_accuracy

    parser = child_arguments("One side of case lora in this process; prints one JSON line.", ["lora", "full"])
    parser.add_argument("--lora-top-k", type=int, help="override: adapters on the top k layer groups only")
    parser.add_argument("--lora-targets", help="override: comma-separated linears to adapt")
    parser.add_argument("--lora-rank", type=int, help="override: rank")
    parser.add_argument("--lora-lr", type=float, help="override: the adapters' learning rate")
    args = parser.parse_args()
    ctx = child_context(args)
    with quiet_stdout():
        import accelerate  # noqa: F401  (fit imports them: load them before the baseline, like the model)
        import peft  # noqa: F401

        model = build_nlptl_model(ctx)
        model.encoder.pad_to_multiple_of = PAD_TO_MULTIPLE_OF  # both sides alike
        before = max_rss_bytes()  # imports, data and the loaded model: what the fit adds comes after
        result = fit_side(ctx, model, CaseSize(args.n, args.epochs), args.strategy, top_k=args.lora_top_k,
                          lora_target_modules=args.lora_targets, lora_rank=args.lora_rank,
                          learning_rate=args.lora_lr)
        result.update(peak_rss_bytes=max_rss_bytes(), peak_vm_hwm_bytes=vm_hwm_bytes(), rss_before_fit_bytes=before)
        result["accuracy"] = nlptl_accuracy(ctx, model)  # after the peak is read: scoring is not the run
    print(json.dumps(result))


if __name__ == "__main__":
    main()
