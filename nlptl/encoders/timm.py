"""timm backbones (VGG, Inception-v3, Xception, ResNet, ViT, ...) behind the image ``Encoder`` contract.

timm is optional (``pip install 'nlptl[timm]'``; it needs torchvision) and imported only when a
timm encoder is built. The model is created with ``num_classes=0`` so its classifier is gone;
features are ``forward_features`` (a conv map or ViT tokens), pooled is ``forward_head(...,
pre_logits=True)`` (the model's own global pooling), and preprocessing is timm's evaluation
transform for the model's pretrained data config. Layer groups come from the model's
``group_matcher(coarse=True)``, the same grouping timm uses for layer-wise learning rates.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from .image import ImageEncoder, children_groups, modules_for

_FILE_READING_KWARGS = {"checkpoint_path", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"}
_INSTALL_HINT = "the 'timm' encoder kind needs timm (and torchvision): pip install 'nlptl[timm]'"


def import_timm() -> Any:
    """Import timm or say how to install it."""
    try:
        import timm
        import timm.data
        import timm.models
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return timm


class TimmEncoder(ImageEncoder):
    """A timm model without its classifier; features from ``forward_features``."""

    kind = "timm"

    def __init__(self, model: nn.Module, model_name: str, data_config: dict[str, Any],
                 model_kwargs: dict[str, Any] | None = None):
        super().__init__()
        timm = import_timm()
        self.model = model
        self.model_name = model_name
        self.model_kwargs = dict(model_kwargs or {})
        self.data_config = _jsonable(data_config)
        self._transform = timm.data.create_transform(**_tupled(self.data_config), is_training=False)
        self._num_features = self._measure_num_features()

    @classmethod
    def from_source(cls, source: str, pretrained: bool = True, weights_file: str | os.PathLike | None = None,
                    **model_kwargs: Any) -> "TimmEncoder":
        """Create ``timm.create_model(source)``; ``weights_file`` loads local pretrained weights offline."""
        timm = import_timm()
        if not isinstance(source, str):
            raise TypeError(f"a timm source is a model name such as 'resnet50', got {type(source).__name__}")
        overlay = None
        if weights_file is not None:
            if not Path(weights_file).is_file():
                raise FileNotFoundError(f"weights_file {str(weights_file)!r} does not exist")
            pretrained, overlay = True, {"file": str(weights_file)}
        model = _create(timm, source, pretrained, overlay, model_kwargs)
        return cls(model, source, timm.data.resolve_model_data_config(model), model_kwargs)

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self._transform(image) for image in images])  # (B, 3, H, W)

    def _backbone(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raw = self.model.forward_features(pixel_values)  # (B, C, H, W), (B, H, W, C) or (B, T, D)
        pooled = self.model.forward_head(raw, pre_logits=True) if hasattr(self.model, "forward_head") else None
        if raw.ndim == 4 and getattr(self.model, "output_fmt", "NCHW") == "NHWC":
            raw = raw.permute(0, 3, 1, 2)  # Swin-style (B, H, W, C) -> (B, C, H, W)
        return raw, pooled  # pooled (B, D') is dropped by the base class when D' differs (VGG's 4096 pre-logits)

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        from timm.models import group_parameters

        if not hasattr(self.model, "group_matcher"):
            return children_groups(self.model)
        matcher = self.model.group_matcher(coarse=True)
        by_id = group_parameters(self.model, matcher)  # {group index: [parameter names]}
        params = [by_id[i] for i in sorted(by_id)]
        names = _group_names(matcher, params)
        return [(name, modules_for(self.model, set(group))) for name, group in zip(names, params)]

    def config(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "model_kwargs": self.model_kwargs, "data_config": self.data_config}

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> "TimmEncoder":
        timm = import_timm()
        model_kwargs = config.get("model_kwargs") or {}
        config_file = directory / "nlptl_encoder.json"
        if not isinstance(model_kwargs, dict):
            raise ValueError(f"{str(config_file)!r}: model_kwargs must be a JSON object, got "
                             f"{type(model_kwargs).__name__}; save the encoder again")
        reads_files = sorted(set(model_kwargs) & _FILE_READING_KWARGS)
        if reads_files:  # the weights come from this directory; a saved JSON must not point timm at other files
            raise ValueError(f"{str(config_file)!r}: model_kwargs sets {reads_files}, which make timm read or fetch "
                             "other weights; remove them from the file (the saved weights are loaded anyway)")
        model = _create(timm, config["model_name"], False, None, model_kwargs)
        encoder = cls(model, config["model_name"], config["data_config"], model_kwargs)
        encoder._load_weights(directory)
        return encoder


def _create(timm: Any, name: str, pretrained: bool, overlay: dict[str, str] | None,
            model_kwargs: dict[str, Any]) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=pretrained, pretrained_cfg_overlay=overlay,
                                 num_classes=0, **model_kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ValueError(f"timm has no model named {name!r}; see timm.list_models('*{name[:6]}*')") from exc
        raise
    except OSError as exc:  # hub or download unreachable, missing cache
        raise OSError(
            f"cannot fetch pretrained weights for timm model {name!r} (offline?): {exc}. Pass a local file "
            "with weights_file='/path/to/model.safetensors', or pretrained=False for random weights"
        ) from exc


def _group_names(matcher: Any, groups: list[list[str]]) -> list[str]:
    """Name each group after the matcher entry its first parameter hits ('stem', 'blocks.3'); unmatched -> 'head'."""
    if not isinstance(matcher, dict):
        return [f"group.{i}" for i in range(len(groups))]
    specs = []
    for key, spec in matcher.items():
        if spec is None:
            continue
        patterns = [s[0] for s in spec] if isinstance(spec, (list, tuple)) else [spec]
        specs += [(key, re.compile(p)) for p in patterns]
    names = []
    for group in groups:
        name = "head"
        for key, pattern in specs:
            match = pattern.match(group[0])
            if match:
                name = ".".join([key] + [g for g in match.groups() if g is not None])
                break
        names.append(name)
    if len(set(names)) != len(names):  # rare matchers; keep the order, make names unique
        names = [f"{name}.{i}" for i, name in enumerate(names)]
    return names


def _jsonable(data_config: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data_config.items()}


def _tupled(data_config: dict[str, Any]) -> dict[str, Any]:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in data_config.items()}
