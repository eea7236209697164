"""Tiny transformers encoders built offline: a config, a vocabulary written to disk, a real tokenizer class.

Each builder saves the model and tokenizer into ``tmp_path`` and loads them back through
``nlptl.load_encoder(directory)``, so the loading path users take is the one tested.
"""
from __future__ import annotations

import string
from pathlib import Path

import torch

import nlptl

SAMPLE_TEXTS = [
    "A tiny film.",
    "The movie was good, really good!",
    "Hello world",
    "An unexpectedly long sentence about nothing in particular that keeps going on and on",
]
WORDS = ["the", "a", "an", "movie", "film", "was", "good", "really", "hello", "world", "tiny", "long",
         "sentence", "about", "nothing", "in", "that", "on", "and", "is", "not", "bad"]
PUNCTUATION = list(".,!?'")
MAX_POSITIONS = 64  # small, so the contract's truncation test stays quick
SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
HF_DIR = "hf"  # the sub-folder of tmp_path where each builder saves its Hugging Face model and tokenizer


def _save_and_load(tmp_path: Path, model, tokenizer, **options):
    directory = tmp_path / HF_DIR
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return nlptl.load_encoder(directory, **options)


def _wordpiece_tokenizer(tmp_path: Path, tokenizer_class):
    """A WordPiece vocabulary file (whole words, letters and ## pieces) read by the tokenizers library."""
    from tokenizers.models import WordPiece

    letters = list(string.ascii_lowercase)
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *PUNCTUATION, *letters,
              *(f"##{p}" for p in ["ed", "ing", "ly", *letters])]
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(pieces) + "\n")
    return tokenizer_class(vocab=WordPiece.read_file(str(vocab_file)), model_max_length=MAX_POSITIONS)


def _unigram_vocab(tmp_path: Path, specials: list[str], cased: bool) -> list[tuple[str, float]]:
    """A SentencePiece-style Unigram vocabulary ('piece<TAB>log-prob' lines) written to disk and read back."""
    letters = string.ascii_letters if cased else string.ascii_lowercase
    scored = [(s, 0.0) for s in specials] + [("▁", -6.0)]
    scored += [(f"▁{w}", -5.0) for w in WORDS] + [(c, -8.0) for c in [*letters, *PUNCTUATION]]
    scored += [(p, -7.0) for p in ["ing", "ly", "ed", "un"]]
    vocab_file = tmp_path / "spiece.vocab"
    vocab_file.write_text("".join(f"{piece}\t{score}\n" for piece, score in scored))
    lines = [line.split("\t") for line in vocab_file.read_text().splitlines()]
    return [(piece, float(score)) for piece, score in lines]


def build_bert(tmp_path: Path):
    from transformers import BertConfig, BertModel, BertTokenizer

    tokenizer = _wordpiece_tokenizer(tmp_path, BertTokenizer)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS,
                                 pad_token_id=tokenizer.pad_token_id, **SIZE))
    return _save_and_load(tmp_path, model, tokenizer), list(SAMPLE_TEXTS)


def build_distilbert(tmp_path: Path):
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    tokenizer = _wordpiece_tokenizer(tmp_path, DistilBertTokenizer)
    torch.manual_seed(0)
    model = DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2,
                                             hidden_dim=37, max_position_embeddings=MAX_POSITIONS,
                                             pad_token_id=tokenizer.pad_token_id))
    return _save_and_load(tmp_path, model, tokenizer), list(SAMPLE_TEXTS)


def build_roberta(tmp_path: Path):
    """Byte-level BPE trained by the tokenizers library on a corpus file, as RoBERTa's own was."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.models import BPE
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SAMPLE_TEXTS + [" ".join(WORDS)]) + "\n")
    trainer = ByteLevelBPETokenizer()
    trainer.train([str(corpus)], vocab_size=400, min_frequency=1, show_progress=False,
                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    vocab_file, merges_file = trainer.save_model(str(tmp_path))
    vocab, merges = BPE.read_file(vocab_file, merges_file)
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_POSITIONS)
    torch.manual_seed(0)
    # RoBERTa numbers positions from pad_token_id + 1, hence the two extra position embeddings.
    model = RobertaModel(RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS + 2,
                                       pad_token_id=tokenizer.pad_token_id, type_vocab_size=1, **SIZE))
    return _save_and_load(tmp_path, model, tokenizer), list(SAMPLE_TEXTS)


def build_albert(tmp_path: Path):
    from transformers import AlbertConfig, AlbertModel, AlbertTokenizer

    vocab = _unigram_vocab(tmp_path, ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], cased=False)
    tokenizer = AlbertTokenizer(vocab=vocab, model_max_length=MAX_POSITIONS)
    torch.manual_seed(0)
    model = AlbertModel(AlbertConfig(vocab_size=len(tokenizer), embedding_size=16,
                                     max_position_embeddings=MAX_POSITIONS,
                                     pad_token_id=tokenizer.pad_token_id, **SIZE))
    return _save_and_load(tmp_path, model, tokenizer), list(SAMPLE_TEXTS)


def build_xlnet(tmp_path: Path):
    from transformers import XLNetConfig, XLNetModel, XLNetTokenizer

    specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    tokenizer = XLNetTokenizer(vocab=_unigram_vocab(tmp_path, specials, cased=True), model_max_length=MAX_POSITIONS)
    torch.manual_seed(0)
    model = XLNetModel(XLNetConfig(vocab_size=len(tokenizer), d_model=32, n_layer=2, n_head=2, d_inner=37,
                                   pad_token_id=tokenizer.pad_token_id))
    return _save_and_load(tmp_path, model, tokenizer), list(SAMPLE_TEXTS)


BUILDERS = {
    "bert": build_bert,
    "albert": build_albert,
    "xlnet": build_xlnet,
    "distilbert": build_distilbert,
    "roberta": build_roberta,
}
