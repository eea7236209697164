"""Shared benchmark machinery: suites, SST-2 loading, timing with peak memory, and the JSON record.

Every case builds its record from ``base_record`` and closes it with ``judge``, so all cases
report the same fields (device, sizes, threads, mixed precision) the same way.
"""
from __future__ import annotations

import contextlib
import logging
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from nlptl.devices import resolve_precision

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
MAX_LENGTH = 64  # tokens, special tokens included, on both sides
BATCH_SIZE = 32  # training batch size, both sides
ENCODE_BATCH_SIZE = 64  # encode() batch size and evaluation batch size, both sides
# Same learning rate on both sides; a head alone needs a much larger one than a fine-tune.
LEARNING_RATES = {"feature_extraction": 1e-3, "top_k": 5e-5, "full": 5e-5}


@dataclass(frozen=True)
class CaseSize:
    n: int  # training sentences (first n of SST-2 train), or sentences to encode
    epochs: int = 1


@dataclass(frozen=True)
class Suite:
    """Sizes per case; ``n_eval=None`` scores on all 872 validation sentences."""

    name: str
    sizes: dict[str, CaseSize]
    n_eval: int | None = None
    glove_limit: int | None = None  # read only the first N GloVe words (smoke: keep load time short)


SUITES = {
    # The README figures. Case 2's N is not fixed by the issue; it uses case 3's 4k sentences.
    "full": Suite("full", {"1": CaseSize(20_000, 5), "2": CaseSize(4_000, 3), "3": CaseSize(4_000, 1),
                           "4": CaseSize(20_000), "5": CaseSize(20_000), "6": CaseSize(4_000, 1)}),
    # Under ~10 minutes on 2 CPU cores: the same cases and epochs on fewer sentences. Case 6 (peak RSS)
    # uses 1,000: at 320 the ~650 MB both processes hold before fitting (imports, data, model) is most
    # of each peak, so the ratio measured the imports rather than the two fits. Case 3 (and
    # full_vs_grouped, which reuses its runs) uses 1,000 too: at 320 sentences one epoch is 10
    # steps, both sides end near chance, and full_vs_grouped's accuracy condition compared noise.
    "quick": Suite("quick", {"1": CaseSize(1_000, 5), "2": CaseSize(320, 3), "3": CaseSize(1_000, 1),
                             "4": CaseSize(3_000), "5": CaseSize(20_000), "6": CaseSize(1_000, 1)}),
    # Seconds per case: checks that every case runs end to end (development and CI), not a figure.
    "smoke": Suite("smoke", {"1": CaseSize(128, 1), "2": CaseSize(64, 1), "3": CaseSize(64, 1),
                             "4": CaseSize(256), "5": CaseSize(2_000), "6": CaseSize(64, 1)},
                   n_eval=64, glove_limit=50_000),
}


@dataclass
class Data:
    train_texts: list[str]
    train_labels: list[int]
    eval_texts: list[str]
    eval_labels: list[int]

    def train(self, n: int) -> dict[str, list]:
        if n > len(self.train_texts):
            raise ValueError(f"n={n} is more than the {len(self.train_texts)} SST-2 training sentences")
        return {"text": self.train_texts[:n], "label": self.train_labels[:n]}

    def eval(self) -> dict[str, list]:
        return {"text": self.eval_texts, "label": self.eval_labels}


@dataclass
class Context:
    """What every case needs: sizes, data, and the settings both sides share."""

    suite: Suite
    data: Data
    data_dir: Path
    device: str  # "cuda" or "cpu"
    mixed_precision: str  # "default" (each side's own default), or "no" / "bf16" forced on both sides
    threads: int
    seed: int = 0
    shared: dict[str, Any] = field(default_factory=dict)  # results a later case may reuse (flops reuses encode)

    @property
    def cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def nlptl_precision(self) -> str:
        """nlptl's setting: its default "auto" (bf16 where the hardware has it natively) unless one is forced."""
        return "auto" if self.mixed_precision == "default" else self.mixed_precision

    @property
    def peer_bf16(self) -> bool:
        """Trainer and sentence-transformers default to float32; they run bf16 only when it is forced on both."""
        return self.mixed_precision == "bf16"


def read_sst2(path: Path) -> tuple[list[str], list[int]]:
    """SST-2 TSV with a ``sentence<TAB>label`` header; no quoting in these files."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass --data-dir pointing at the folder that holds sst2/")
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["sentence", "label"]:
            raise ValueError(f"{path}: header is {header}, expected ['sentence', 'label']")
        for line in f:
            sentence, label = line.rstrip("\n").rsplit("\t", 1)
            texts.append(sentence)
            labels.append(int(label))
    return texts, labels


def load_data(data_dir: Path, n_eval: int | None) -> Data:
    train_texts, train_labels = read_sst2(data_dir / "sst2" / "train.tsv")
    eval_texts, eval_labels = read_sst2(data_dir / "sst2" / "validation.tsv")
    return Data(train_texts, train_labels, eval_texts[:n_eval], eval_labels[:n_eval])


# ----- timing and memory ---------------------------------------------------------------------------


def current_rss() -> int | None:
    """Resident set size of this process in bytes (Linux /proc), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _RssSampler(threading.Thread):
    """Samples RSS every ``interval`` seconds; the peak minus the start is what a call added."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval, self.start_rss = interval, current_rss()
        self.peak = self.start_rss
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            rss = current_rss()
            if rss is not None and self.peak is not None:
                self.peak = max(self.peak, rss)

    def stop(self) -> int | None:
        self._done.set()
        self.join()
        rss = current_rss()
        if rss is None or self.peak is None:
            return None
        return max(self.peak, rss) - self.start_rss


@dataclass
class Measurement:
    result: Any
    seconds: float
    rss_added_bytes: int | None  # peak RSS during the call minus RSS before it (shared process)
    cuda_peak_bytes: int | None


def measure(fn: Callable[[], Any], device: str) -> Measurement:
    """Wall time of ``fn()`` (GPU work synchronised), the RSS it added, and its peak GPU memory."""
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sampler = _RssSampler()
    sampler.start()
    started = time.perf_counter()
    result = fn()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    rss_added = sampler.stop()
    return Measurement(result, seconds, rss_added, torch.cuda.max_memory_allocated() if cuda else None)


def measure_best(sides: dict[str, Callable[[], Any]], device: str, repeats: int) -> dict[str, Measurement]:
    """Each side's fastest of ``repeats`` calls, the sides taking turns so both see the same machine noise.

    For sub-second cases, where one call's time is mostly the allocator's first-touch page faults
    and the scheduler: the best of a few is what timeit reports, and both sides get it alike.
    """
    best: dict[str, Measurement] = {}
    for _ in range(repeats):
        for side, fn in sides.items():
            run = measure(fn, device)
            if side not in best or run.seconds < best[side].seconds:
                best[side] = run
    return best


# ----- records -------------------------------------------------------------------------------------


def device_description(device: str) -> str:
    if device == "cuda":
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu ({os.cpu_count()} cores)"


def base_record(ctx: Context, case: str, name: str, peer: str, size: CaseSize | None = None,
                batch_size: int = BATCH_SIZE) -> dict[str, Any]:
    record = {"case": case, "name": name, "peer": peer, "suite": ctx.suite.name,
              "device": device_description(ctx.device), "mixed_precision": ctx.mixed_precision,
              "nlptl_precision_applied": resolve_precision(ctx.nlptl_precision, ctx.device),
              "peer_precision": "bf16" if ctx.peer_bf16 else "float32",
              "torch_threads": ctx.threads, "seed": ctx.seed, "max_length": MAX_LENGTH, "batch_size": batch_size}
    if size is not None:
        record.update(n=size.n, epochs=size.epochs)
    return record


def judge(record: dict[str, Any], nlptl_value: float, peer_value: float, target: float,
          higher_is_better: bool = True) -> dict[str, Any]:
    """Fill ``ratio`` (nlptl / peer), ``target`` and ``met``."""
    ratio = nlptl_value / peer_value if peer_value else float("nan")
    met = ratio >= target if higher_is_better else ratio <= target
    record.update(ratio=round(ratio, 4), target=target, target_direction=">=" if higher_is_better else "<=",
                  met=bool(met))
    return record


@contextlib.contextmanager
def quiet_stdout():
    """Send library prints (accelerate's cache message, progress) to stderr: stdout carries only JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def silence_libraries() -> None:
    """Progress bars and load reports off; warnings still reach stderr."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)


def run_fresh_process(command: list[str], what: str) -> dict[str, Any]:
    """Run ``command`` (a Python child) so its ru_maxrss is its own peak; returns its last stdout line as JSON.

    Not started straight from this process: Linux carries a parent's RSS into a child's ru_maxrss
    (exec records the forked or vforked memory it replaces), so this 1+ GB process would set the
    floor. A small shell forks the child instead, and its ru_maxrss counts only the child's memory.
    """
    if os.name == "posix":
        command = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *command]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
