"""The contract every encoder kind keeps (like Flair's embedding tests or timm's model tests)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nlptl
from nlptl.devices import resolve_precision
from nlptl.encoders import EncoderOutput, pool
from tests.tiny import all_builders

BUILDERS = all_builders()


@pytest.fixture(params=sorted(BUILDERS), scope="class")
def built(request, tmp_path_factory):
    encoder, inputs = BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    encoder.eval()
    return request.param, encoder, inputs


def run(encoder, inputs) -> EncoderOutput:
    with torch.no_grad():
        return encoder(encoder.preprocess(list(inputs)))


def real_rows(out: EncoderOutput) -> list[torch.Tensor]:
    return [out.features[i][out.mask[i]] for i in range(out.features.shape[0])]


class TestEncoderContract:
    def test_shapes_and_mask(self, built):
        _, encoder, inputs = built
        out = run(encoder, inputs)
        B = len(inputs)
        assert out.features.ndim == 3 and out.features.shape[0] == B
        assert out.features.shape[2] == encoder.num_features
        assert out.mask.dtype == torch.bool and out.mask.shape == out.features.shape[:2]
        assert out.mask.any(1).all(), "every non-empty input has at least one real position"
        if out.pooled is not None:
            assert out.pooled.shape == (B, encoder.num_features)
        assert torch.isfinite(out.features).all()

    def test_padding_does_not_change_real_positions(self, built):
        _, encoder, inputs = built
        batched = real_rows(run(encoder, inputs))
        for i, x in enumerate(inputs):
            alone = real_rows(run(encoder, [x]))[0]
            torch.testing.assert_close(batched[i], alone, atol=1e-5, rtol=1e-4)

    def test_extra_batch_keys_are_ignored(self, built):
        _, encoder, inputs = built
        batch = encoder.preprocess(list(inputs))
        batch["row_index"] = torch.arange(len(inputs))  # heads add targets to the same dict
        with torch.no_grad():
            out = encoder(batch)
        torch.testing.assert_close(out.features, run(encoder, inputs).features)

    def test_batch_order_does_not_matter(self, built):
        _, encoder, inputs = built
        forward = real_rows(run(encoder, inputs))
        backward = real_rows(run(encoder, inputs[::-1]))[::-1]
        for a, b in zip(forward, backward):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

    def test_layer_groups_cover_every_parameter_once(self, built):
        _, encoder, _ = built
        groups = encoder.layer_groups()
        names = [name for name, _ in groups]
        assert names and len(names) == len(set(names))
        seen: dict[int, str] = {}
        for name, modules in groups:
            for module in modules:
                for p in module.parameters():
                    assert id(p) not in seen, f"parameter in both {seen[id(p)]} and {name}"
                    seen[id(p)] = name
        missing = [n for n, p in encoder.named_parameters() if id(p) not in seen]
        assert not missing, f"parameters in no group: {missing[:5]}"

    @pytest.mark.parametrize("pooling", ["mean", "max"])
    def test_encode_matches_manual_pooling(self, built, pooling):
        _, encoder, inputs = built
        manual = pool(run(encoder, inputs), pooling).numpy()
        encoded = encoder.encode(inputs, batch_size=2, pooling=pooling)
        assert encoded.shape == (len(inputs), encoder.num_features)
        np.testing.assert_allclose(encoded, manual, atol=1e-5, rtol=1e-4)

    def test_encode_in_bf16_is_close_to_float32_and_returns_float32(self, built):
        _, encoder, inputs = built
        full = encoder.encode(inputs, batch_size=2)
        half = encoder.encode(inputs, batch_size=2, mixed_precision="bf16")
        assert half.dtype == np.float32 and half.shape == full.shape
        cosine = (full * half).sum(1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(half, axis=1) + 1e-12)
        assert cosine.min() > 0.99, cosine
        auto = encoder.encode(inputs, batch_size=2, mixed_precision="auto")  # bf16 exactly where fit would use it
        expected = half if resolve_precision("auto", encoder.device.type) == "bf16" else full
        np.testing.assert_array_equal(auto, expected)
        with pytest.raises(ValueError, match="mixed_precision"):
            encoder.encode(inputs, mixed_precision="fp8")

    def test_save_and_load_give_the_same_output(self, built, tmp_path):
        _, encoder, inputs = built
        encoder.save_pretrained(tmp_path / "saved")
        # only a module encoder's JSON names a class to import, so only it needs the explicit opt-in
        reloaded = nlptl.load_encoder(tmp_path / "saved", trust_remote_code=encoder.kind == "module").eval()
        assert type(reloaded) is type(encoder)
        assert reloaded.group_names() == encoder.group_names()
        a, b = run(encoder, inputs), run(reloaded, inputs)
        torch.testing.assert_close(a.features, b.features)
        assert torch.equal(a.mask, b.mask)


class TestTextEncoderContract:
    @pytest.fixture(autouse=True)
    def _text_only(self, built):
        if built[1].modality != "text":
            pytest.skip("text-only contract")

    def test_empty_string_is_a_masked_out_row_not_nan(self, built):
        _, encoder, inputs = built
        out = run(encoder, [inputs[0], ""])
        assert torch.isfinite(out.features).all()
        assert np.isfinite(encoder.encode([""])).all()

    def test_offsets_point_into_the_text(self, built):
        _, encoder, inputs = built
        for text, tokens in zip(inputs, encoder.tokenize(inputs)):
            assert len(tokens.ids) == len(tokens.offsets)
            for start, end in tokens.offsets:
                assert 0 <= start < end <= len(text)
                assert text[start:end].strip(), "an offset span covers only whitespace"

    @pytest.mark.parametrize("bad", [None, "a string", [], ["ok", 3]])
    def test_bad_texts_raise_clear_errors(self, built, bad):
        _, encoder, _ = built
        with pytest.raises((TypeError, ValueError), match="texts"):
            encoder.preprocess(bad)

    def test_long_input_is_truncated_with_a_warning(self, built):
        _, encoder, inputs = built
        long_text = " ".join([inputs[0]] * (encoder.max_length + 5))
        with pytest.warns(UserWarning, match="truncated"):
            batch = encoder.preprocess([long_text])
        out = encoder(batch)
        assert out.features.shape[1] <= encoder.max_length
