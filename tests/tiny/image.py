"""Tiny offline image encoders: ResNet, ViT and ConvNeXt from configs, and a wrapped plain module.

Each builder saves its encoder to ``tmp_path`` and loads it back through ``nlptl.load_encoder``, so
the contract tests run on what a user gets after a save/load round trip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import nlptl

IMAGE_SIZE = 32


class TinyConvNet(nn.Module):
    """Two conv blocks giving a map (B, 2*width, H/4, W/4); importable, so a saved wrapper reloads without pickle."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(self.stem(x)))  # (B, 2*width, H/4, W/4)


def sample_images(seed: int = 0) -> list:
    """Three images of different sizes and kinds: RGB PIL, RGB array, grayscale array."""
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)),
        rng.integers(0, 256, (24, 48, 3), dtype=np.uint8),
        rng.integers(0, 256, (36, 36), dtype=np.uint8),
    ]


def _save_hf(model: nn.Module, processor, tmp_path: Path):
    directory = tmp_path / "hf"
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return nlptl.load_encoder(directory), sample_images()


def build_resnet(tmp_path: Path):
    from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetModel

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    return _save_hf(ResNetModel(config), ConvNextImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}), tmp_path)


def build_vit(tmp_path: Path):
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=IMAGE_SIZE, patch_size=8)
    processor = ViTImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return _save_hf(ViTModel(config), processor, tmp_path)


def build_convnext(tmp_path: Path):
    from transformers import ConvNextConfig, ConvNextImageProcessorPil, ConvNextModel

    torch.manual_seed(0)
    config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    return _save_hf(ConvNextModel(config), ConvNextImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}), tmp_path)


def build_module(tmp_path: Path):
    torch.manual_seed(0)
    encoder = nlptl.load_encoder(TinyConvNet(width=8), image_size=IMAGE_SIZE, module_kwargs={"width": 8})
    encoder.save_pretrained(tmp_path / "module")
    # TinyConvNet is rebuilt from the import path saved in the JSON: code a file names, so an explicit opt-in
    return nlptl.load_encoder(tmp_path / "module", trust_remote_code=True), sample_images()


BUILDERS = {
    "image-resnet": build_resnet,
    "image-vit": build_vit,
    "image-convnext": build_convnext,
    "module": build_module,
}
