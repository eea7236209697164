"""Task heads and their one registry: task name -> head class.

The task name is spelled one way everywhere (``--task``, ``RunConfig.task``, ``Head.task``, saved
models). Adding a task is one head file plus one line in ``TASKS``; a head defined elsewhere (a
test, a user's package) joins with ``register_task(name, HeadClass)``.
"""
from __future__ import annotations

import importlib

from .base import Head
from .classification import POOLINGS, ClassificationHead

__all__ = ["POOLINGS", "Head", "ClassificationHead", "ExtractiveQAHead", "TASKS", "head_class", "register_task",
           "task_names"]

# task name -> "module:Class" (imported on use, so a head's optional pieces load only when needed) or a class
TASKS: dict[str, str | type[Head]] = {
    "text-classification": "nlptl.heads.classification:ClassificationHead",
    "extractive-qa": "nlptl.heads.qa:ExtractiveQAHead",
    "prototype-classification": "nlptl.fewshot.prototypes:PrototypeHead",
    "token-classification": "nlptl.heads.token_classification:TokenClassificationHead",
}
# names saved by earlier versions of nlptl_model.json
_ALIASES = {"classification": "text-classification", "extractive_qa": "extractive-qa",
            "image-classification": "text-classification"}  # ClassificationHead classifies images too


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def register_task(name: str, head: type[Head]) -> None:
    """Add a task whose head class is defined outside nlptl (refuses to replace a built-in one)."""
    if not (isinstance(head, type) and issubclass(head, Head)):
        raise TypeError(f"register_task({name!r}, ...) needs a Head subclass, got {head!r}")
    if name in TASKS and TASKS[name] is not head:
        raise ValueError(f"task {name!r} is already registered to {TASKS[name]}")
    if head.task != name:
        raise ValueError(f"{head.__name__}.task is {head.task!r}; set it to {name!r} to register it under that name")
    TASKS[name] = head


def head_class(task: str) -> type[Head]:
    task = _ALIASES.get(task, task)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    entry = TASKS[task]
    if isinstance(entry, type):
        return entry
    module_name, class_name = entry.split(":")  # from this table only, never from a file
    return getattr(importlib.import_module(module_name), class_name)


def __getattr__(name: str):
    if name == "ExtractiveQAHead":
        return head_class("extractive-qa")
    raise AttributeError(name)
