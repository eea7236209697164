"""Tiny static word vectors: gensim models trained in a blink, saved in every file format we load."""
from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

import nlptl

CORPUS = [
    "the cat sat on the mat and the dog sat on the rug",
    "a dog chased the cat across the garden",
    "cats and dogs are animals that people keep as pets",
    "the bird sang in the tree near the river",
    "people eat bread and cheese with soup for lunch",
    "the quick brown fox jumps over the lazy dog",
    "children play football in the park after school",
    "the river flows past the old mill into the sea",
]
SENTENCES = [line.split() for line in CORPUS] * 20
# Long enough for vectors of a realistic scale (mean norm ~3, GloVe's are ~4-6) that separate topics;
# 5 epochs left them at ~0.1, too small for a frozen-encoder head to learn from. Still well under a second.
EPOCHS = 100

# Differing lengths, capitals and punctuation; "catlike" and "gardens" are not in the vocabulary.
SAMPLE_TEXTS = [
    "The cat sat on the mat.",
    "Dogs chase cats, and the bird sings!",
    "Bread?",
    "The quick brown fox jumps over the lazy dog near the river, after school.",
]
OOV_TEXTS = SAMPLE_TEXTS + ["A catlike fox in the gardens."]


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))  # Python's hash() changes per process; this does not


@lru_cache(maxsize=None)
def word2vec_model():
    from gensim.models import Word2Vec

    return Word2Vec(SENTENCES, vector_size=16, window=3, min_count=1, workers=1, seed=0, epochs=EPOCHS,
                    hashfxn=_stable_hash)


@lru_cache(maxsize=None)
def fasttext_model():
    from gensim.models import FastText

    return FastText(SENTENCES, vector_size=16, window=3, min_count=1, workers=1, seed=0, epochs=EPOCHS,
                    min_n=3, max_n=5, bucket=2000, hashfxn=_stable_hash)


def write_word2vec(tmp_path: Path, binary: bool) -> Path:
    path = Path(tmp_path) / ("vectors.bin" if binary else "vectors.txt")
    word2vec_model().wv.save_word2vec_format(str(path), binary=binary)
    return path


def write_glove(tmp_path: Path) -> Path:
    path = Path(tmp_path) / "glove.16d.txt"
    word2vec_model().wv.save_word2vec_format(str(path), binary=False, write_header=False)
    return path


def write_fasttext(tmp_path: Path) -> Path:
    from gensim.models.fasttext import save_facebook_model

    path = Path(tmp_path) / "tiny.fasttext.bin"
    save_facebook_model(fasttext_model(), str(path))
    return path


def word2vec_text(tmp_path):
    return nlptl.load_encoder(write_word2vec(tmp_path, binary=False)), SAMPLE_TEXTS


def word2vec_binary(tmp_path):
    return nlptl.load_encoder(write_word2vec(tmp_path, binary=True)), SAMPLE_TEXTS


def glove(tmp_path):
    return nlptl.load_encoder(write_glove(tmp_path)), SAMPLE_TEXTS


def fasttext(tmp_path):
    return nlptl.load_encoder(write_fasttext(tmp_path)), OOV_TEXTS


def keyedvectors(tmp_path):
    return nlptl.load_encoder(word2vec_model()), SAMPLE_TEXTS


BUILDERS = {
    "word2vec-text": word2vec_text,
    "word2vec-binary": word2vec_binary,
    "glove": glove,
    "fasttext": fasttext,
    "keyedvectors": keyedvectors,
}
