"""Shared test setup: the suite never uses the network."""
from __future__ import annotations

import os
import socket

import pytest

# Before transformers/datasets/evaluate read them at import: hub lookups fail at once, not after retries.
for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(variable, "1")


@pytest.fixture
def no_network(monkeypatch):
    """Make any socket connection in this process fail, so a hidden network call shows up as an error."""

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
