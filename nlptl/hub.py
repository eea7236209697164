"""Can the Hugging Face hub be used from here? One answer for text models, image backbones and datasets.

Loaders ask before they call ``from_pretrained`` or ``load_dataset``, which otherwise retry for
minutes on a machine without a network. ``hub_switched_off(flags)`` reads the offline switches the
user set; ``hub_failure(endpoint)`` opens one TCP connection and says why it could not, or None;
``hub_offline(flags)`` is either, with the probe made once per process.
"""
from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache
from urllib.parse import urlparse

__all__ = ["MODEL_FLAGS", "hub_failure", "hub_offline", "hub_reachable", "hub_switched_off"]

MODEL_FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # what switches off models (datasets add their own)
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_switched_off(flags: tuple[str, ...] = MODEL_FLAGS) -> bool:
    """True when one of the environment variables ``flags`` is set to 1 / on / yes / true."""
    return any(os.environ.get(name, "").strip().upper() in TRUE_VALUES for name in flags)


def hub_failure(endpoint: str | None = None, timeout: float = 5.0) -> str | None:
    """None when a TCP connection to the hub opens within ``timeout`` seconds, else the reason."""
    url = urlparse(endpoint or os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    outcome: list[str | None] = [f"no answer within {timeout:.0f} s"]

    def connect() -> None:  # in a thread, because a DNS lookup can block past any socket timeout
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome[0] = None
        except OSError as err:
            outcome[0] = f"{type(err).__name__}: {err}"

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0]


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the hub answered one quick connection (asked once per process)."""
    return hub_failure(timeout=3.0) is None


def hub_offline(flags: tuple[str, ...] = MODEL_FLAGS) -> bool:
    """True when the user switched the hub off or it cannot be reached: load from local files only."""
    return hub_switched_off(flags) or not hub_reachable()
