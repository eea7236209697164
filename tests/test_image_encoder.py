"""Image encoder kinds: what a user relies on beyond the shared contract (shapes, groups, inputs, reloading)."""
from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import nlptl
from nlptl.encoders.image import HFImageEncoder, resize_and_normalize
from nlptl.encoders.module import ModuleImageEncoder
from tests.tiny.image import IMAGE_SIZE, TinyConvNet, build_module, build_resnet, build_vit, sample_images


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    return build_resnet(tmp_path_factory.mktemp("resnet"))[0].eval()


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return build_vit(tmp_path_factory.mktemp("vit"))[0].eval()


@pytest.fixture(scope="module")
def wrapped(tmp_path_factory):
    return build_module(tmp_path_factory.mktemp("module"))[0].eval()


def features(encoder, images):
    with torch.no_grad():
        return encoder(encoder.preprocess(images))


# ----- Hugging Face backbones -------------------------------------------------------------------

def test_resnet_features_are_its_last_feature_map_flattened(resnet):
    batch = resnet.preprocess(sample_images())
    out = features(resnet, sample_images())
    with torch.no_grad():
        feature_map = resnet.model(pixel_values=batch["pixel_values"]).last_hidden_state  # (3, 16, 4, 4)
    assert out.features.shape == (3, 4 * 4, 16) and resnet.num_features == 16
    torch.testing.assert_close(out.features, feature_map.flatten(2).transpose(1, 2))
    assert out.mask.all()
    assert out.pooled.shape == (3, 16)
    torch.testing.assert_close(out.pooled, out.features.mean(1))  # ResNet's pooler is global average pooling


def test_vit_features_are_its_tokens_and_pooled_is_its_pooler(vit):
    out = features(vit, sample_images())
    patches = (IMAGE_SIZE // 8) ** 2
    assert out.features.shape == (3, patches + 1, 32) and vit.num_features == 32
    with torch.no_grad():
        torch.testing.assert_close(out.pooled, vit.model.pooler(out.features))


def test_groups_run_stem_then_blocks_with_final_norm_in_the_top_group(resnet, vit):
    assert resnet.group_names() == ["embeddings", "stage.0", "stage.1"]
    assert vit.group_names() == ["embeddings", "layer.0", "layer.1"]
    top = {id(p) for m in vit.layer_groups()[-1][1] for p in m.parameters()}
    assert {id(p) for p in vit.model.layernorm.parameters()} <= top
    assert {id(p) for p in vit.model.pooler.parameters()} <= top


def test_checkpoint_without_pooler_weights_pools_by_mean(tmp_path):
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=IMAGE_SIZE, patch_size=8)
    ViTModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    ViTImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(tmp_path)
    encoder = nlptl.load_encoder(tmp_path).eval()
    assert encoder.model.pooler is None, "a randomly initialised pooler must not be used"
    out = features(encoder, sample_images())
    torch.testing.assert_close(out.pooled, out.features.mean(1))


def test_offline_hub_id_says_so_and_how_to_pass_a_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="not a local directory.*offline.*DIR"):
        nlptl.load_encoder("nlptl-test/no-such-model", kind="image")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFImageEncoder.from_source(tmp_path / "no" / "such" / "dir")


# ----- inputs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet", "wrapped"])
def test_grayscale_inputs_equal_their_rgb_version(name, request):
    encoder = request.getfixturevalue(name)
    gray = np.random.default_rng(1).integers(0, 256, (20, 28), dtype=np.uint8)
    variants = [gray, gray[:, :, None], Image.fromarray(gray), np.stack([gray] * 3, axis=-1)]
    out = features(encoder, variants).features
    for i in range(1, len(variants)):
        torch.testing.assert_close(out[i], out[0])


def test_file_paths_are_read_like_the_images_they_hold(wrapped, tmp_path):
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    rgb.save(tmp_path / "rgb.png")
    palette = rgb.convert("P")
    palette.save(tmp_path / "palette.png")
    by_path = wrapped.preprocess([tmp_path / "rgb.png", str(tmp_path / "palette.png")])["pixel_values"]
    in_memory = wrapped.preprocess([rgb, palette.convert("RGB")])["pixel_values"]
    torch.testing.assert_close(by_path, in_memory)


def _bad_inputs(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    ok = np.zeros((8, 8, 3), dtype=np.uint8)
    return [
        (None, TypeError, "images is None"),
        ([], ValueError, "empty"),
        (Image.new("RGB", (8, 8)), TypeError, "wrap it in a list"),
        (ok, TypeError, "one array of shape"),
        ([ok, Image.new("RGBA", (8, 8))], ValueError, r"images\[1\] has mode 'RGBA'.*convert\('RGB'\)"),
        ([Image.new("CMYK", (8, 8))], ValueError, "mode 'CMYK'"),
        ([np.zeros((8, 8, 5), dtype=np.uint8)], ValueError, r"shape \(8, 8, 5\)"),
        ([np.zeros((8, 8, 4), dtype=np.uint8)], ValueError, "alpha"),
        ([np.zeros((2, 8, 8, 3), dtype=np.uint8)], ValueError, "batch: pass list"),
        ([np.zeros((3, 8, 8), dtype=np.uint8)], ValueError, "channels-first"),
        ([np.zeros((8, 8, 3), dtype=np.float32)], ValueError, "dtype float32; expected uint8"),
        ([3], TypeError, r"images\[0\] is a int"),
        ([tmp_path / "missing.png"], FileNotFoundError, "does not exist"),
        ([tmp_path / "notes.txt"], ValueError, "not an image file"),
    ]


def test_bad_images_raise_errors_that_name_the_problem(wrapped, resnet, tmp_path):
    for encoder in (wrapped, resnet):
        for bad, error, message in _bad_inputs(tmp_path):
            with pytest.raises(error, match=message):
                encoder.preprocess(bad)


def test_text_pairs_are_rejected(resnet):
    with pytest.raises(ValueError, match="text_pairs"):
        resnet.preprocess(sample_images(), text_pairs=["a", "b", "c"])


# ----- wrapped modules --------------------------------------------------------------------------

def test_module_num_features_is_inferred_and_a_wrong_one_is_caught():
    assert ModuleImageEncoder(TinyConvNet(width=4), image_size=16).num_features == 8
    wrong = ModuleImageEncoder(TinyConvNet(width=4), image_size=16, num_features=5).eval()
    with pytest.raises(ValueError, match="width 8 but num_features is 5"):
        features(wrong, sample_images())


def test_module_preprocessing_resizes_and_normalises():
    encoder = ModuleImageEncoder(TinyConvNet(), image_size=(8, 12), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    pixels = encoder.preprocess([np.full((30, 20, 3), 255, dtype=np.uint8)])["pixel_values"]
    assert pixels.shape == (1, 3, 8, 12)
    torch.testing.assert_close(pixels, torch.ones_like(pixels))


def test_explicit_layer_groups_survive_save_and_load(tmp_path):
    net = TinyConvNet()
    groups = [("bottom", [net.stem]), ("top", [net.block1, "block2"])]  # modules or their dotted paths
    encoder = ModuleImageEncoder(net, image_size=16, layer_groups=groups)
    assert encoder.group_names() == ["bottom", "top"]
    top = {id(p) for m in encoder.layer_groups()[1][1] for p in m.parameters()}
    assert {id(p) for p in net.block2.parameters()} <= top
    encoder.eval().save_pretrained(tmp_path)
    # TinyConvNet is importable, so no module= is needed, only the opt-in to import what the file names
    reloaded = nlptl.load_encoder(tmp_path, trust_remote_code=True).eval()
    assert reloaded.group_names() == ["bottom", "top"]
    expected = features(encoder, sample_images()).features
    torch.testing.assert_close(features(reloaded, sample_images()).features, expected)


@pytest.mark.parametrize("groups, message", [
    (lambda net: [("a", [net.stem]), ("b", [net.block1])], "leave out parameters.*block2"),
    (lambda net: [("a", [net.stem, net.block1]), ("b", [net.block1, net.block2])], "both 'a' and 'b'"),
    (lambda net: [("a", [net.stem, net.block1, net.block2, nn.Linear(2, 2)])], "not a submodule"),
    (lambda net: [("a", ["stem", "block1", "block3"])], "'block3' is not a submodule"),
])
def test_bad_layer_groups_are_rejected(groups, message):
    net = TinyConvNet()
    with pytest.raises(ValueError, match=message):
        ModuleImageEncoder(net, image_size=16, layer_groups=groups(net))


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.body(x) * self.scale  # (B, 4)


def test_module_returning_vectors_gets_one_position_and_direct_parameters_get_a_group():
    encoder = ModuleImageEncoder(_Scaled(), image_size=16).eval()
    out = features(encoder, sample_images())
    assert out.features.shape == (3, 1, 4)
    torch.testing.assert_close(out.pooled, out.features[:, 0])
    assert encoder.group_names() == ["own_parameters", "body"]
    assert encoder.layer_groups()[0][1][0].scale is encoder.module.scale


def test_module_that_cannot_be_imported_needs_module_to_reload(tmp_path):
    class LocalNet(TinyConvNet):
        pass

    encoder = nlptl.load_encoder(LocalNet(), image_size=16).eval()
    encoder.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"LocalNet.*module=LocalNet\(\.\.\.\)"):
        nlptl.load_encoder(tmp_path)
    reloaded = nlptl.load_encoder(tmp_path, module=LocalNet()).eval()
    expected = features(encoder, sample_images()).features
    torch.testing.assert_close(features(reloaded, sample_images()).features, expected)


# ----- timm -------------------------------------------------------------------------------------

def test_timm_kind_without_timm_says_how_to_install(monkeypatch):
    from nlptl.encoders.timm import TimmEncoder

    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail even where it is installed
    with pytest.raises(ImportError, match=re.escape("pip install 'nlptl[timm]'")):
        TimmEncoder.from_source("resnet18")


def test_timm_resnet_end_to_end(tmp_path):
    pytest.importorskip("timm", reason="timm is optional (pip install 'nlptl[timm]') and needs torchvision")
    encoder = nlptl.load_encoder("resnet18", kind="timm", pretrained=False).eval()
    out = features(encoder, sample_images())
    assert encoder.num_features == 512 and out.features.shape == (3, 7 * 7, 512)
    assert out.pooled.shape == (3, 512)
    assert encoder.group_names()[0] == "stem" and encoder.group_names()[1:] == [f"blocks.{i}" for i in range(1, 5)]
    encoder.save_pretrained(tmp_path)
    reloaded = nlptl.load_encoder(tmp_path).eval()
    torch.testing.assert_close(features(reloaded, sample_images()).features, out.features)


class _FakeTimmNet(nn.Module):
    """Follows timm's model API (forward_features, forward_head, group_matcher) to test the wiring without timm."""

    def __init__(self, head_width: int | None = None):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.pre_logits = nn.Linear(16, head_width) if head_width else nn.Identity()

    def forward_features(self, x):
        return self.blocks(self.stem(x))  # (B, 16, H/4, W/4)

    def forward_head(self, x, pre_logits: bool = False):
        return self.pre_logits(x.mean((2, 3)))

    def group_matcher(self, coarse: bool = False):
        return {"stem": r"^stem", "blocks": r"^blocks\.(\d+)"}


def _fake_group_parameters(module, matcher):
    groups: dict[tuple, list[str]] = {}
    for name, _ in module.named_parameters():
        key: tuple = (float("inf"),)
        for ordinal, pattern in enumerate(matcher.values()):
            match = re.match(pattern, name)
            if match:
                key = (ordinal, *map(float, match.groups()))
                break
        groups.setdefault(key, []).append(name)
    return {i: groups[k] for i, k in enumerate(sorted(groups))}


@pytest.fixture
def fake_timm(monkeypatch):
    def create_model(name, pretrained=False, pretrained_cfg_overlay=None, num_classes=1000, **kwargs):
        if name not in ("fake_net", "fake_wide_head"):
            raise RuntimeError(f"Unknown model ({name})")
        if pretrained and not pretrained_cfg_overlay:
            raise OSError("cannot reach huggingface.co")
        return _FakeTimmNet(head_width=32 if name == "fake_wide_head" else None)

    def create_transform(input_size, mean, std, is_training=False, **kwargs):
        return lambda image: resize_and_normalize([image], input_size[1:], mean, std)[0]

    data_config = {"input_size": (3, 16, 16), "interpolation": "bilinear", "mean": (0.5,) * 3,
                   "std": (0.5,) * 3, "crop_pct": 1.0, "crop_mode": "center"}
    timm = types.ModuleType("timm")
    timm.create_model = create_model
    timm.data = types.SimpleNamespace(resolve_model_data_config=lambda model: dict(data_config),
                                      create_transform=create_transform)
    timm.models = types.SimpleNamespace(group_parameters=_fake_group_parameters)
    for name, module in [("timm", timm), ("timm.data", timm.data), ("timm.models", timm.models)]:
        monkeypatch.setitem(sys.modules, name, module)


def test_timm_wiring_with_a_fake_timm(fake_timm, tmp_path):
    encoder = nlptl.load_encoder("fake_net", kind="timm", pretrained=False).eval()
    out = features(encoder, sample_images())
    assert encoder.num_features == 16 and out.features.shape == (3, 4 * 4, 16)
    torch.testing.assert_close(out.pooled, out.features.mean(1))
    assert encoder.group_names() == ["stem", "blocks.0", "blocks.1"]
    encoder.save_pretrained(tmp_path)
    reloaded = nlptl.load_encoder(tmp_path).eval()
    assert reloaded.group_names() == encoder.group_names()
    torch.testing.assert_close(features(reloaded, sample_images()).features, out.features)


def test_timm_wiring_errors_and_wide_heads_with_a_fake_timm(fake_timm):
    from nlptl.encoders.timm import TimmEncoder

    wide = TimmEncoder.from_source("fake_wide_head", pretrained=False).eval()
    out = features(wide, sample_images())
    torch.testing.assert_close(out.pooled, out.features.mean(1))  # a 32-wide pre-logits head is not the pooled 16
    assert wide.group_names() == ["stem", "blocks.0", "blocks.1", "head"]
    with pytest.raises(ValueError, match="no model named 'resnet_typo'"):
        TimmEncoder.from_source("resnet_typo")
    with pytest.raises(OSError, match="offline.*weights_file="):
        TimmEncoder.from_source("fake_net", pretrained=True)


@pytest.mark.parametrize("bad", [None, "one.png"])
def test_encode_rejects_a_missing_or_unwrapped_image_list(bad, tmp_path):
    from tests.tiny.image import BUILDERS

    encoder, _ = BUILDERS["module"](tmp_path)
    with pytest.raises(TypeError, match="pass a list of images"):
        encoder.encode(bad)
