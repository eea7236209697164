"""Tiny offline encoders of every kind, built from configs, small vocabularies and gensim.

Each module here exposes ``BUILDERS``: name -> function(tmp_path) -> (encoder, sample_inputs).
Sample inputs differ in length (texts) or size (images) so padding is exercised.
"""
from __future__ import annotations

import importlib
from typing import Callable

_MODULES = ["tests.tiny.static", "tests.tiny.transformers", "tests.tiny.image"]


def all_builders() -> dict[str, Callable]:
    builders: dict[str, Callable] = {}
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a kind still being written
            if exc.name != name:
                raise
            continue
        builders.update(module.BUILDERS)
    return builders
