"""Encoder registry: one explicit table of kinds, and ``load_encoder`` that picks from it.

Each kind names the function that builds it (imported only when used, so ``import nlptl`` stays
light) and says what it takes. Nothing registers itself by import side effect.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ENCODER_CONFIG_NAME, Encoder, EncoderOutput, ModelInput, TextEncoder, TokenizedText, pool

__all__ = [
    "Encoder", "EncoderOutput", "ModelInput", "TextEncoder", "TokenizedText", "pool",
    "ENCODERS", "load_encoder", "list_encoders", "infer_kind",
]

FASTTEXT_MAGIC = 793712314  # first int32 of a Facebook fastText .bin


@dataclass(frozen=True)
class EncoderKind:
    name: str
    builder: str  # "module:Class.method" or "module:function", called as builder(source, **options)
    takes: str

    def build(self, source: Any, **options: Any) -> Encoder:
        return import_object(self.builder, f"builder of kind {self.name!r}")(source, **options)


def import_object(path: Any, what: str) -> Any:
    """Resolve "package.module:Qualified.name" to the object, naming ``what`` asked for it when it cannot.

    The one place nlptl turns a string into code. The registry tables here pass strings written in
    this package; a string read from a file reaches it only after the caller opted in with
    ``trust_remote_code=True`` (see ``ModuleImageEncoder``).
    """
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ValueError(f"{what}: {path!r} is not an import path of the form 'package.module:Name'")
    module_name, qualname = path.split(":")
    try:
        target: Any = importlib.import_module(module_name)
        for attr in qualname.split("."):
            target = getattr(target, attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{what}: cannot import {path!r} ({exc}); "
                         "is the package installed and the name right?") from exc
    return target


ENCODERS: dict[str, EncoderKind] = {
    kind.name: kind
    for kind in [
        EncoderKind("transformer", "nlptl.encoders.transformer:TransformerEncoder.from_source",
                    "a Hugging Face hub id or local directory of any AutoModel text encoder "
                    "(BERT, ALBERT, XLNet, DistilBERT, RoBERTa, ...)"),
        EncoderKind("word2vec", "nlptl.encoders.static:StaticEncoder.from_word2vec",
                    "a word2vec file, binary or text (first line 'count dim')"),
        EncoderKind("glove", "nlptl.encoders.static:StaticEncoder.from_glove",
                    "a GloVe text file (word followed by floats, no header line)"),
        EncoderKind("fasttext", "nlptl.encoders.static:StaticEncoder.from_fasttext",
                    "a Facebook fastText .bin model (subword vectors for unknown words)"),
        EncoderKind("keyedvectors", "nlptl.encoders.static:StaticEncoder.from_keyedvectors",
                    "an in-memory gensim KeyedVectors or model (Word2Vec, FastText) object"),
        EncoderKind("image", "nlptl.encoders.image:HFImageEncoder.from_source",
                    "a Hugging Face hub id or local directory of a transformers vision model "
                    "(ResNet, ConvNeXt, ViT, ...)"),
        EncoderKind("timm", "nlptl.encoders.timm:TimmEncoder.from_source",
                    "a timm model name such as 'resnet50' or 'vgg16' (needs the optional 'timm' extra)"),
        EncoderKind("module", "nlptl.encoders.module:ModuleImageEncoder.from_source",
                    "a torch.nn.Module mapping images (B, C, H, W) to feature maps (B, C', H', W') "
                    "or tokens (B, T, C')"),
    ]
}

# What a saved encoder directory's "kind" field maps to: the class whose _from_saved rebuilds it.
SAVED_CLASSES = {
    "transformer": "nlptl.encoders.transformer:TransformerEncoder",
    "static": "nlptl.encoders.static:StaticEncoder",
    "image": "nlptl.encoders.image:HFImageEncoder",
    "timm": "nlptl.encoders.timm:TimmEncoder",
    "module": "nlptl.encoders.module:ModuleImageEncoder",
}


def list_encoders() -> dict[str, str]:
    """The encoder kinds and what each takes as ``source``."""
    return {name: kind.takes for name, kind in ENCODERS.items()}


def load_encoder(source: Any, kind: str | None = None, *, trust_remote_code: bool = False, **options: Any) -> Encoder:
    """Load a pretrained encoder of any kind behind the one ``Encoder`` interface.

    ``source`` is a path, a hub id, or an in-memory object (gensim vectors, ``nn.Module``). With
    ``kind=None`` the kind is inferred where it can be; a directory written by
    ``Encoder.save_pretrained`` is always recognised and restored. Loading never imports or calls
    code that a file names (a saved module encoder's class, a hub model's custom code) unless
    ``trust_remote_code=True``: pass it only for directories and models you trust.
    """
    if kind is not None and kind not in ENCODERS:
        raise ValueError(f"unknown encoder kind {kind!r}; known kinds: {', '.join(ENCODERS)}")
    if not isinstance(trust_remote_code, bool):
        raise TypeError(f"trust_remote_code must be True or False, got {trust_remote_code!r}")
    if isinstance(source, (str, os.PathLike)):
        from ..artifacts import recover_directory

        if not Path(source).exists():
            recover_directory(source)  # a save killed mid-replacement may have left it aside
        if (Path(source) / ENCODER_CONFIG_NAME).is_file():
            return _load_saved(Path(source), trust_remote_code, **options)
    if kind is None:
        kind = infer_kind(source)
    if trust_remote_code and kind in ("transformer", "image"):  # hub models with custom code
        options["trust_remote_code"] = True
    return ENCODERS[kind].build(source, **options)


TRUSTING_KINDS = ("transformer", "image", "module")  # saved kinds whose files can name code to run


def _load_saved(directory: Path, trust_remote_code: bool, **options: Any) -> Encoder:
    from ..artifacts import verify_sizes
    from .weights import read_json_file

    config_file = directory / ENCODER_CONFIG_NAME
    payload = read_json_file(config_file, ENCODER_CONFIG_NAME)
    saved_kind = payload.get("kind") if isinstance(payload, dict) else None
    if saved_kind not in SAVED_CLASSES:
        raise ValueError(f"{str(config_file)!r}: unknown saved kind {saved_kind!r} (known: "
                         f"{', '.join(SAVED_CLASSES)}); the file is damaged or from another program: save the encoder "
                         "again")
    if not isinstance(payload.get("config"), dict):
        raise ValueError(f"{str(config_file)!r}: 'config' must be a JSON object of settings; save the encoder again")
    verify_sizes(directory)
    cls = import_object(SAVED_CLASSES[saved_kind], f"saved kind {saved_kind!r}")
    if trust_remote_code and saved_kind in TRUSTING_KINDS:
        options["trust_remote_code"] = True
    return cls._from_saved(directory, {**payload["config"], **options})


def infer_kind(source: Any) -> str:
    """Guess the encoder kind of ``source``; raise a ValueError naming the ``kind`` to pass when unsure."""
    if not isinstance(source, (str, os.PathLike)):
        return _infer_object_kind(source)
    path = Path(source)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ValueError(
                f"cannot infer the encoder kind of directory {str(path)!r}: it has no config.json "
                f"({ENCODER_CONFIG_NAME} neither); pass kind= one of {', '.join(ENCODERS)}"
            )
        from .weights import read_json_file

        config = read_json_file(config_file, "config.json")
        if not isinstance(config, dict):
            raise ValueError(f"{str(config_file)!r} is not a JSON object of model settings; restore it")
        return "image" if _is_vision_config(config) else "transformer"
    if path.is_file():
        return _infer_file_kind(path)
    if str(source).endswith((".txt", ".bin", ".vec", ".gz", ".w2v", ".kv")):
        raise FileNotFoundError(f"vector file {str(source)!r} does not exist")
    return "transformer"  # a hub id; the transformer loader tells image models apart from their config


def _is_vision_config(config: dict[str, Any]) -> bool:
    return "num_channels" in config and "vocab_size" not in config


def _infer_object_kind(source: Any) -> str:
    import torch

    if isinstance(source, torch.nn.Module):
        return "module"
    module = type(source).__module__ or ""
    if module.startswith("gensim."):
        return "keyedvectors"
    raise TypeError(
        f"cannot load an encoder from a {type(source).__name__}: pass a path, a hub id, gensim "
        "KeyedVectors or a torch.nn.Module"
    )


def _infer_file_kind(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4096)
    if len(head) >= 4 and int.from_bytes(head[:4], "little") == FASTTEXT_MAGIC:
        return "fasttext"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"{str(path)!r} is UTF-16 text; vector files must be UTF-8: convert it, e.g. "
                         "iconv -f UTF-16 -t UTF-8 IN > OUT")
    head = head.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
    first_line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").split()
    if len(first_line) == 2 and all(part.isdigit() for part in first_line):
        return "word2vec"  # header 'count dim'; the body may be text or binary
    from .vector_files import _all_floats  # the vector readers' own check, so both agree on "a row of floats"

    if len(first_line) > 2 and _all_floats(first_line[1:]):
        return "glove"
    raise ValueError(
        f"cannot infer the format of {str(path)!r}: not a fastText .bin, a word2vec file with a "
        "'count dim' header, or GloVe text; pass kind= one of " + ", ".join(ENCODERS)
    )

