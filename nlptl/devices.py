"""What this machine's hardware can do, asked once: native bf16 on the CPU."""
from __future__ import annotations

import functools
from pathlib import Path

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
