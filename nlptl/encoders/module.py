"""Wrap any ``torch.nn.Module`` that maps images to feature maps or tokens as an nlptl encoder."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch import nn

from .image import IMAGENET_MEAN, IMAGENET_STD, ImageEncoder, children_groups, resize_and_normalize


class ModuleImageEncoder(ImageEncoder):
    """A plain ``nn.Module`` mapping images (B, 3, H, W) to maps (B, C, H', W'), tokens (B, T, C) or vectors (B, C).

    Saving writes the weights and config; an arbitrary module's class cannot be rebuilt without
    pickle, so reloading needs the module again: ``nlptl.load_encoder(dir, module=MyNet())``. When
    the class is importable (defined at module level outside ``__main__``), its import path and the
    ``module_kwargs`` given at wrap time are recorded, and
    ``nlptl.load_encoder(dir, trust_remote_code=True)`` rebuilds it as ``MyNet(**module_kwargs)``.
    The opt-in is needed because that imports and calls whatever the directory's JSON names: a
    directory from someone else could name ``os:system``.
    """

    kind = "module"

    def __init__(
        self,
        module: nn.Module,
        image_size: int | Sequence[int] = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        num_features: int | None = None,
        layer_groups: Sequence[tuple[str, Sequence[nn.Module | str]]] | None = None,
        module_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.image_size = _pair(image_size)
        self.mean, self.std = _channels(mean, "mean"), _channels(std, "std")
        self.module_class = _import_path(type(module))
        self.module_kwargs = _check_json(module_kwargs, "module_kwargs")
        self._group_paths = None if layer_groups is None else self._paths_of(layer_groups)
        self._num_features = int(num_features) if num_features is not None else self._measure_num_features()

    @classmethod
    def from_source(cls, source: nn.Module, **options: Any) -> "ModuleImageEncoder":
        return cls(source, **options)

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return resize_and_normalize(images, self.image_size, self.mean, self.std)  # (B, 3, H, W)

    def _backbone(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.module(pixel_values)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the wrapped {type(self.module).__name__} returned a {type(out).__name__}; "
                            "it must return one tensor (B, C, H, W), (B, T, C) or (B, C)")
        return out, (out if out.ndim == 2 else None)

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        if self._group_paths is None:
            return children_groups(self.module)
        return [(name, [self.module.get_submodule(p) for p in paths]) for name, paths in self._group_paths]

    def _paths_of(self, layer_groups: Sequence[tuple[str, Sequence[nn.Module | str]]]) -> list[tuple[str, list[str]]]:
        """Turn user groups of modules (or dotted paths) into paths, checking they cover each parameter once."""
        path_of = {id(m): p for p, m in self.module.named_modules()}
        known = set(path_of.values())
        groups: list[tuple[str, list[str]]] = []
        for i, (name, members) in enumerate(layer_groups):
            paths = []
            for member in members:
                path = member if isinstance(member, str) else path_of.get(id(member))
                if path not in known:
                    what = repr(member) if isinstance(member, str) else f"a {type(member).__name__}"
                    raise ValueError(f"layer_groups[{i}] ({name!r}): {what} is not a submodule of the wrapped "
                                     f"{type(self.module).__name__}; use its modules or their dotted paths")
                paths.append(path)
            groups.append((str(name), paths))
        owner: dict[int, str] = {}
        for name, paths in groups:
            for path in paths:
                for p in self.module.get_submodule(path).parameters():
                    if id(p) in owner:
                        raise ValueError(f"layer_groups: a parameter is in both {owner[id(p)]!r} and {name!r}")
                    owner[id(p)] = name
        missing = [n for n, p in self.module.named_parameters() if id(p) not in owner]
        if missing:
            raise ValueError(f"layer_groups leave out parameters {missing[:5]}: add the modules that hold them")
        if len({name for name, _ in groups}) != len(groups):
            raise ValueError(f"layer_groups has repeated names: {[name for name, _ in groups]}")
        return groups

    def config(self) -> dict[str, Any]:
        return {
            "image_size": list(self.image_size), "mean": list(self.mean), "std": list(self.std),
            "num_features": self.num_features, "layer_groups": self._group_paths,
            "module_class": self.module_class, "module_type": type(self.module).__name__,
            "module_kwargs": self.module_kwargs,
        }

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> "ModuleImageEncoder":
        config = dict(config)
        module = config.pop("module", None)
        trusted = config.pop("trust_remote_code", False)
        class_path, kwargs = config.pop("module_class", None), config.get("module_kwargs")
        module_type = config.pop("module_type", "module")
        if module is None:
            if class_path is None:
                raise ValueError(
                    f"{directory} holds weights of a wrapped {module_type} whose class cannot be imported "
                    f"(defined in __main__ or inside a function); rebuild it and pass it: "
                    f"nlptl.load_encoder({str(directory)!r}, module={module_type}(...))"
                )
            module = _build(class_path, kwargs, directory, trusted)
        encoder = cls(module, **config)
        encoder._load_weights(directory)
        return encoder


def _build(class_path: Any, kwargs: Any, directory: Path, trusted: bool) -> nn.Module:
    """Import and call the class the saved JSON names, only when the caller trusts the directory."""
    from . import import_object
    from .base import ENCODER_CONFIG_NAME

    config_file = directory / ENCODER_CONFIG_NAME
    how = (f"pass the module yourself: nlptl.load_encoder({str(directory)!r}, module={str(class_path).split(':')[-1]}"
           "(...)), or, if you trust this directory, trust_remote_code=True")
    if not trusted:
        raise ValueError(f"{str(config_file)!r} asks to import and call module_class={class_path!r} with "
                         f"module_kwargs={kwargs!r}; loading never runs code a file names unless you opt in: {how}")
    if not isinstance(kwargs, (dict, type(None))):
        raise ValueError(f"{str(config_file)!r}: module_kwargs must be a JSON object, got {type(kwargs).__name__}")
    target = import_object(class_path, f"module_class in {config_file}")
    if not (isinstance(target, type) and issubclass(target, nn.Module)):
        raise TypeError(f"{str(config_file)!r}: module_class={class_path!r} is a {type(target).__name__}, not a "
                        f"torch.nn.Module subclass, so it was not called; {how.split(', or')[0]}")
    try:
        return target(**(kwargs or {}))
    except TypeError as exc:
        raise ValueError(f"cannot rebuild the wrapped module {class_path}(**{kwargs}) for {directory} ({exc}); "
                         f"pass it yourself: nlptl.load_encoder({str(directory)!r}, module=...)") from exc


def _import_path(cls: type) -> str | None:
    """'package.module:Qualname' when ``cls`` can be imported back by that path, else None."""
    module_name, qualname = getattr(cls, "__module__", None), getattr(cls, "__qualname__", "")
    if not module_name or module_name == "__main__" or "<locals>" in qualname:
        return None
    target: Any = sys.modules.get(module_name)
    for attr in qualname.split("."):
        target = getattr(target, attr, None)
    return f"{module_name}:{qualname}" if target is cls else None


def _check_json(value: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        json.dumps(value)
    except TypeError as exc:
        raise TypeError(f"{name} must be JSON-serialisable to be saved in the config: {exc}") from None
    return dict(value)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"image_size must be a positive int or (height, width), got {size!r}")
    return pair  # type: ignore[return-value]


def _channels(values: Sequence[float], name: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (R, G, B), got {values!r}")
    return values  # type: ignore[return-value]
