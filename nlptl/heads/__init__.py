"""Task heads and their one registry (task name -> head class)."""
from __future__ import annotations

import importlib

from .base import Head
from .classification import ClassificationHead

__all__ = ["Head", "ClassificationHead", "ExtractiveQAHead", "HEADS", "head_class"]

# task name -> "module:Class"; imported on use so a head's optional pieces load only when needed
HEADS: dict[str, str] = {
    "classification": "nlptl.heads.classification:ClassificationHead",
    "extractive_qa": "nlptl.heads.qa:ExtractiveQAHead",
}


def head_class(task: str) -> type[Head]:
    if task not in HEADS:
        raise ValueError(f"unknown head task {task!r}; known: {', '.join(HEADS)}")
    module_name, class_name = HEADS[task].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def __getattr__(name: str):
    if name == "ExtractiveQAHead":
        return head_class("extractive_qa")
    raise AttributeError(name)
