"""Image encoders: Hugging Face vision backbones (wrapped modules: module.py, timm: timm.py).

Every image kind returns the backbone's last feature map flattened to a sequence, so heads pool
images exactly as they pool tokens: a conv map (B, C, H, W) becomes (B, H*W, C), a ViT's tokens
stay (B, T, D), and the mask is all True (every image is resized to one size, so nothing pads).

Accepted inputs (one rule for all kinds, see :func:`load_images`): a list of PIL images, numpy
uint8 arrays (H, W, 3) or (H, W), or image file paths. RGB is used as is; grayscale (modes L and
1, 2-D arrays) and palette images without transparency become RGB by repeating the grey level.
Anything with an alpha channel (RGBA, LA, (H, W, 4)) or another colour space (CMYK, YCbCr,
16-bit) is rejected with a ValueError, because dropping alpha or converting colour spaces is a
choice only the caller can make: call ``image.convert("RGB")`` first.
"""
from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from ..hub import hub_offline
from .base import Encoder, EncoderOutput

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_BACKENDS = ("pil", "torchvision")  # transformers image-processor backends
_EXPECTED = "a PIL image, a numpy uint8 array (H, W, 3) or (H, W), or an image file path"
_HOW_TO_CONVERT = "convert it first, e.g. image.convert('RGB') (which drops an alpha channel)"


# ----- input checking ---------------------------------------------------------------------------

def load_images(images: Any, name: str = "images") -> list[Image.Image]:
    """Validate a batch of images and return them as RGB PIL images, naming any bad item."""
    if images is None:
        raise TypeError(f"{name} is None: pass a list of images, each {_EXPECTED}")
    if isinstance(images, (str, os.PathLike, Image.Image)):
        raise TypeError(f"{name} is a single image: wrap it in a list, e.g. [image]")
    if isinstance(images, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} is one array of shape {tuple(images.shape)}: pass a list of images "
                        "(for a stacked batch use list(batch))")
    try:
        images = list(images)
    except TypeError:
        raise TypeError(f"{name} must be a list of images, got {type(images).__name__}") from None
    if not images:
        raise ValueError(f"{name} is empty: pass at least one image")
    return [_to_rgb(image, f"{name}[{i}]") for i, image in enumerate(images)]


def _to_rgb(item: Any, where: str) -> Image.Image:
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: image file {str(path)!r} does not exist")
        try:
            with Image.open(path) as image:
                image.load()
                return _pil_to_rgb(image, f"{where} ({path.name})")
        except UnidentifiedImageError as exc:
            raise ValueError(f"{where}: {str(path)!r} is not an image file PIL can read") from exc
    if isinstance(item, Image.Image):
        return _pil_to_rgb(item, where)
    if isinstance(item, np.ndarray):
        return _array_to_rgb(item, where)
    raise TypeError(f"{where} is a {type(item).__name__}; expected {_EXPECTED}")


def _pil_to_rgb(image: Image.Image, where: str) -> Image.Image:
    if min(image.size) == 0:
        raise ValueError(f"{where} is empty (size {image.size})")
    if image.mode == "RGB":
        return image
    if image.mode in ("L", "1") or (image.mode == "P" and "transparency" not in image.info):
        return image.convert("RGB")
    raise ValueError(f"{where} has mode {image.mode!r}; accepted modes are RGB, grayscale (L, 1) and "
                     f"palette (P) without transparency: {_HOW_TO_CONVERT}")


def _array_to_rgb(array: np.ndarray, where: str) -> Image.Image:
    if array.dtype != np.uint8:
        raise ValueError(f"{where} has dtype {array.dtype}; expected uint8 values 0..255 "
                         "(for floats in [0, 1] use (array * 255).round().astype(np.uint8))")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or 0 in array.shape:
        hint = "expected (H, W, 3) RGB or (H, W) grayscale"
        if array.ndim == 4:
            hint += "; a 4-D array is a batch: pass list(array)"
        elif array.ndim == 3 and array.shape[2] == 4:
            hint += "; drop the alpha channel with array[..., :3] if that is what you want"
        elif array.ndim == 3 and array.shape[0] in (1, 3):
            hint += "; for channels-first arrays use array.transpose(1, 2, 0)"
        raise ValueError(f"{where} has shape {array.shape}: {hint}")
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def resize_and_normalize(images: Sequence[Image.Image], size: tuple[int, int],
                         mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB images -> one float batch (B, 3, H, W): bilinear resize to ``size`` (H, W), scale to [0, 1], normalise."""
    height, width = size
    arrays = [np.asarray(im.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32) for im in images]
    pixels = np.stack(arrays) / 255.0  # (B, H, W, 3)
    pixels = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)


# ----- layer groups -----------------------------------------------------------------------------

class ParameterHolder(nn.Module):
    """Holds parameters that sit directly on a parent module, so one group can own them without its children."""

    def __init__(self, named: Sequence[tuple[str, nn.Parameter]]):
        super().__init__()
        for name, parameter in named:
            self.register_parameter(name.replace(".", "_"), parameter)


def modules_for(root: nn.Module, wanted: set[str], prefix: str = "") -> list[nn.Module]:
    """The fewest submodules of ``root`` whose parameters are exactly the parameter names in ``wanted``."""
    own = {prefix + name for name, _ in root.named_parameters()}
    if not own & wanted:
        return []
    if own <= wanted:
        return [root]
    direct = [(n, p) for n, p in root.named_parameters(recurse=False) if prefix + n in wanted]
    modules: list[nn.Module] = [ParameterHolder(direct)] if direct else []
    for child_name, child in root.named_children():
        modules += modules_for(child, wanted, f"{prefix}{child_name}.")
    return modules


def children_groups(root: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Default grouping: parameters set directly on ``root`` first, then each child that has parameters."""
    direct = list(root.named_parameters(recurse=False))
    groups = [("own_parameters", [ParameterHolder(direct)])] if direct else []
    groups += [(name, [child]) for name, child in root.named_children() if any(True for _ in child.parameters())]
    return groups


def backbone_groups(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Stem, then one group per entry of the backbone's block list, bottom -> top.

    The block list is the ``nn.ModuleList`` holding the most weights (ResNet/ConvNeXt ``stages``,
    ViT ``layers``, EfficientNet ``blocks``). Parameters registered before it form ``embeddings``;
    those after it (final norm, pooler) join the top block, as timm's ``MATCH_PREV_GROUP`` does.
    """
    lists = [(path, m) for path, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        return children_groups(model)
    path, blocks = max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()))
    label = path.rsplit(".", 1)[-1]
    label = label[:-1] if label.endswith("s") else label
    stem: list[str] = []
    per_block: list[list[str]] = [[] for _ in blocks]
    passed_blocks = False
    for name, _ in model.named_parameters():
        if name.startswith(path + "."):
            per_block[int(name[len(path) + 1 :].split(".")[0])].append(name)
            passed_blocks = True
        elif passed_blocks:
            per_block[-1].append(name)
        else:
            stem.append(name)
    named = [("embeddings", stem)] + [(f"{label}.{i}", names) for i, names in enumerate(per_block)]
    return [(name, modules_for(model, set(names))) for name, names in named if names]


# ----- the shared image encoder -----------------------------------------------------------------

class ImageEncoder(Encoder):
    """Images in, flattened feature map out; subclasses supply pixels and the raw backbone output."""

    modality = "image"
    _num_features: int

    @abstractmethod
    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> the backbone's input batch (B, 3, H, W)."""

    @abstractmethod
    def _backbone(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pixels -> (feature map (B, C, H, W) or tokens (B, T, D), the backbone's pooled vector or None)."""

    @property
    def num_features(self) -> int:
        return self._num_features

    def preprocess(self, inputs: Sequence[Any], text_pairs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        if text_pairs is not None:
            raise ValueError("text_pairs was given to an image encoder: image encoders take images only")
        return {"pixel_values": self._pixels(load_images(inputs))}

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        raw, pooled = self._backbone(batch["pixel_values"])
        features = as_sequence(raw)  # (B, L, D)
        if features.shape[-1] != self.num_features:
            raise ValueError(f"the backbone returned features of width {features.shape[-1]} but "
                             f"num_features is {self.num_features}; fix num_features")
        if pooled is not None:
            pooled = pooled.flatten(1)  # (B, D), e.g. from ResNet's (B, C, 1, 1)
        if pooled is None or pooled.shape[1] != features.shape[-1]:
            pooled = features.mean(1)  # (B, D)
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)  # (B, L)
        return EncoderOutput(features=features, mask=mask, pooled=pooled)

    def _measure_num_features(self) -> int:
        """Width of the features, found by running one blank image (cheaper to get right than per-config rules)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                raw, _ = self._backbone(self._pixels([Image.new("RGB", (224, 224))]).to(self.device))
        finally:
            self.train(was_training)
        return int(as_sequence(raw).shape[-1])


def as_sequence(raw: torch.Tensor) -> torch.Tensor:
    """Backbone output -> (B, L, D): conv maps flatten their grid, tokens pass, pooled vectors become one position."""
    if raw.ndim == 4:
        return raw.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
    if raw.ndim == 3:
        return raw  # (B, T, D)
    if raw.ndim == 2:
        return raw.unsqueeze(1)  # (B, 1, D)
    raise ValueError(f"the backbone returned a tensor of shape {tuple(raw.shape)}; expected (B, C, H, W), "
                     "(B, T, D) or (B, D)")


# ----- Hugging Face vision backbones ------------------------------------------------------------

class HFImageEncoder(ImageEncoder):
    """Any transformers vision backbone (ResNet, ConvNeXt, ViT, EfficientNet, ...) with its image processor."""

    kind = "image"

    def __init__(self, model: nn.Module, processor: Any, source: str = "", backend: str = "pil"):
        super().__init__()
        self.model = model
        self.processor = processor
        self.source = source
        self.backend = backend
        self._num_features = self._measure_num_features()

    @classmethod
    def from_source(cls, source: str | os.PathLike, backend: str = "pil", local_files_only: bool = False,
                    trust_remote_code: bool = False, **model_kwargs: Any) -> "HFImageEncoder":
        """Load model and processor from a hub id or local directory; ``backend='pil'`` needs no torchvision."""
        from transformers import AutoImageProcessor, AutoModel

        from .weights import check_config_file, load_hf_model

        if backend not in IMAGE_BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {IMAGE_BACKENDS}; 'pil' needs no torchvision")
        path = Path(source).expanduser()
        source = str(path) if path.is_dir() else str(source)
        if path.is_dir():
            check_config_file(path)
        else:
            if source.startswith((".", "/", "~")) or source.count("/") > 1:
                raise FileNotFoundError(f"image model directory {source!r} does not exist")
            local_files_only = local_files_only or hub_offline()
        try:
            processor = AutoImageProcessor.from_pretrained(source, backend=backend, local_files_only=local_files_only,
                                                           trust_remote_code=trust_remote_code)
            model, info = load_hf_model(AutoModel, source, local_files_only=local_files_only,
                                        trust_remote_code=trust_remote_code, **model_kwargs)
        except OSError as exc:
            if path.is_dir():
                raise OSError(f"cannot load an image model from directory {source!r}: it needs config.json, the "
                              "weights and the image processor's preprocessor_config.json (write it with "
                              f"processor.save_pretrained(directory)); {exc}") from exc
            raise OSError(
                f"cannot load image model {source!r}: it is not a local directory and could not be fetched from "
                "the Hugging Face hub (offline, or not in the local cache). Download it where there is internet, "
                f"e.g. `hf download {source} --local-dir DIR`, then pass DIR: nlptl.load_encoder('DIR')"
            ) from exc
        if getattr(model, "pooler", None) is not None and any(k.startswith("pooler.") for k in info["missing_keys"]):
            model.pooler = None  # a randomly initialised pooler is noise; fall back to mean pooling
        return cls(model, processor, source=source, backend=backend)

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt")["pixel_values"]  # (B, 3, H, W)

    def _backbone(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.model(pixel_values=pixel_values.to(self.model.dtype), return_dict=True)
        return out.last_hidden_state, getattr(out, "pooler_output", None)

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        return backbone_groups(self.model)

    def config(self) -> dict[str, Any]:
        return {"source": self.source, "backend": self.backend, "num_features": self.num_features}

    def _write_artifact(self, directory: Path) -> None:
        """Save in Hugging Face format (model + image processor) plus the nlptl config."""
        self.model.save_pretrained(directory)
        self.processor.save_pretrained(directory)
        self._write_config(directory)

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> "HFImageEncoder":
        encoder = cls.from_source(directory, backend=config.get("backend", "pil"), local_files_only=True,
                                  trust_remote_code=config.get("trust_remote_code", False))
        encoder.source = config.get("source", str(directory))
        return encoder


# ----- any torch module -------------------------------------------------------------------------
