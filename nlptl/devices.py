"""What this machine's hardware can do, asked once: native bf16 on the CPU or the GPU."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # instructions that make bf16 matmuls fast rather than emulated


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU reports avx512_bf16 or amx_bf16 (Linux /proc/cpuinfo); False where it cannot tell.

    Without them bf16 autocast on CPU still runs, but slower than float32 (every matmul is emulated).
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def default_device_type(cpu: bool = False) -> str:
    """The device type a run lands on: "cuda" when a GPU is visible and ``cpu`` is not asked for, else "cpu"."""
    return "cuda" if torch.cuda.is_available() and not cpu else "cpu"


def native_bf16(device_type: str) -> bool:
    """Whether bf16 autocast is fast on this device type ("cpu" or "cuda"): native bf16 matmuls."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device_type == "cpu" and cpu_has_native_bf16()


def resolve_precision(requested: str, device_type: str) -> str:
    """The precision a run applies: ``"auto"`` is bf16 autocast where the hardware has native bf16, else "no".

    Autocast keeps the weights, the optimizer state and the loss in float32 and runs matmuls in
    bf16, so fine-tuning accuracy matches float32 (see the README's Performance section) at up to
    twice the speed on such CPUs. Any other value is returned as given.
    """
    if requested != "auto":
        return requested
    return "bf16" if native_bf16(device_type) else "no"
