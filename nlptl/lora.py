"""LoRA adapters (Hu et al. 2021) on a transformer encoder, through ``peft``: ``strategy="lora"``.

Each chosen ``nn.Linear`` of the encoder's Hugging Face model gets a low-rank update
``W x + (alpha / rank) * B A x`` (A: rank x in, B: out x rank, B starting at zero, so the model
starts exactly where the pretrained one is); only A, B and the head train, every pretrained
weight stays bit-identical. ``top_k=k`` puts adapters only on the top k layer groups: the groups
below are then frozen and unchanged, so ``fit`` caches the hidden states at that line once and
each epoch runs only the top groups (``nlptl/encoders/boundary.py``), as for ``top_k``.

Which linears, by default, per ``model_type`` (``lora_target_modules`` overrides; a name matches a
module whose dotted name is it or ends with ``.<name>``): BERT, MiniLM, RoBERTa, XLM-R, ELECTRA and
ALBERT ``query,value``; DistilBERT ``q_lin,v_lin``; XLNet, whose attention projections are bare
parameters rather than linears, its feed-forward ``layer_1,layer_2``; otherwise peft's own table.

A saved model keeps the base weights as loaded in ``encoder/`` (any nlptl reader opens them) and
the adapters beside them in ``lora/``: ``lora.json`` (rank, alpha, dropout and the exact module
names) and ``adapter.safetensors``. Loading reads only those: names must be linears the model
already has, numbers must be in range, and nothing a file names is imported or called.
``merge(model)`` folds the adapters into the base weights for inference (no extra matmuls).
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

ADAPTER_DIRECTORY = "lora"  # inside a saved TransferModel
SETTINGS_FILE, WEIGHTS_FILE = "lora.json", "adapter.safetensors"
ADAPTER_NAME = "default"  # peft's name for the one adapter
FORMAT = 1
DEFAULT_TARGETS = {"bert": ("query", "value"), "roberta": ("query", "value"), "xlm-roberta": ("query", "value"),
                   "electra": ("query", "value"), "albert": ("query", "value"), "distilbert": ("q_lin", "v_lin"),
                   "xlnet": ("layer_1", "layer_2")}


@dataclass(frozen=True)
class LoraSettings:
    """What the adapters on an encoder are: rank, alpha, dropout, and the dotted names of the wrapped linears."""

    rank: int
    alpha: float
    dropout: float
    modules: tuple[str, ...]  # names inside encoder.model, e.g. "encoder.layer.5.attention.self.query"


def adapters_of(encoder: nn.Module) -> LoraSettings | None:
    """The encoder's LoRA settings, or None when it carries no adapters."""
    return getattr(encoder, "lora_settings", None)


def check_settings(rank: Any, alpha: Any, dropout: Any, where: str = "") -> None:
    """Raise a ValueError naming the field when rank, alpha or dropout is out of range."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    if not (isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1):
        raise ValueError(f"{where}lora_rank={rank!r}: expected an integer >= 1 (typical: 4 to 16)")
    if not (number(alpha) and alpha > 0):
        raise ValueError(f"{where}lora_alpha={alpha!r}: expected a finite number > 0 (typical: 2 x lora_rank)")
    if not (number(dropout) and 0 <= dropout < 1):
        raise ValueError(f"{where}lora_dropout={dropout!r}: expected a number in [0, 1)")


# ----- adding adapters -------------------------------------------------------------------------


def add_adapters(model: nn.Module, rank: int = 8, alpha: float = 16.0, dropout: float = 0.1,
                 target_modules: Sequence[str] | None = None, top_k: int | None = None) -> LoraSettings:
    """Wrap the target linears of the top ``top_k`` layer groups (default: all) of ``model``'s encoder in LoRA.

    ``model`` is a ``TransferModel`` or its encoder. A model that already carries adapters keeps
    them when these settings describe them (training continues); other settings are an error.
    """
    encoder = _transformer_encoder(model)
    check_settings(rank, alpha, dropout)
    present = adapters_of(encoder)
    with _base_layers(encoder) if present is not None else nullcontext():  # names as in the plain model
        modules = tuple(_resolve_targets(encoder, target_modules, top_k))
    wanted = LoraSettings(rank, float(alpha), float(dropout), modules)
    if present is not None:
        if present != wanted:
            raise ValueError(f"strategy='lora': this model already carries LoRA adapters ({_describe(present)}), "
                             f"not the ones asked for ({_describe(wanted)}); pass the settings it has to keep training "
                             "them, or nlptl.lora.merge(model) first to fold them into the weights")
        return present
    _inject(encoder, wanted)
    return wanted


def _transformer_encoder(model: nn.Module):
    from .encoders.transformer import TransformerEncoder

    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, TransformerEncoder):
        kind = getattr(encoder, "kind", type(encoder).__name__)
        raise ValueError(f"strategy='lora' adds LoRA adapters to a transformer encoder's linear layers, but this "
                         f"model's encoder is a {kind!r} encoder; use strategy='feature_extraction', 'top_k' or "
                         "'full' for it, or a transformer encoder (nlptl.load_encoder(<hub id or directory>))")
    return encoder


def _resolve_targets(encoder, target_modules: Sequence[str] | None, top_k: int | None) -> list[str]:
    """Dotted names (inside ``encoder.model``) of the linears to wrap, in model order."""
    model_type = getattr(encoder.model.config, "model_type", None)
    if target_modules is None:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

        target_modules = DEFAULT_TARGETS.get(model_type) or PEFT_DEFAULTS.get(model_type)
        if not target_modules:
            raise ValueError(f"lora_target_modules: nlptl has no default for model type {model_type!r}; name the "
                             f"linears to adapt, e.g. lora_target_modules={_linear_suffixes(encoder.model)[:4]}")
    if isinstance(target_modules, str) or not target_modules or not all(
            isinstance(t, str) and t.strip(".") for t in target_modules):
        raise ValueError(f"lora_target_modules={target_modules!r}: expected a non-empty list of module names, "
                         "e.g. ['query', 'value']")
    groups = encoder.layer_groups()
    k = len(groups) if top_k is None else top_k
    if not (isinstance(k, int) and 1 <= k <= len(groups)):
        raise ValueError(f"top_k={top_k!r}: strategy 'lora' puts adapters on the top top_k of the encoder's "
                         f"{len(groups)} layer groups; pass 1..{len(groups)}, or None for all")
    names = {id(m): name for name, m in encoder.model.named_modules()}
    chosen: set[str] = set()
    for _, modules in groups[len(groups) - k:]:
        for root in _group_roots(encoder, modules):
            prefix = names.get(id(root))
            if prefix is None:
                continue  # not part of the HF model (nlptl's scalar mix, a view of loose parameters)
            for sub, module in root.named_modules():
                full = f"{prefix}.{sub}".strip(".")
                if isinstance(module, nn.Linear) and any(full == t or full.endswith("." + t) for t in target_modules):
                    chosen.add(full)
    for target in target_modules:
        if not any(n == target or n.endswith("." + target) for n in chosen):
            where = "" if top_k is None else f" in the top {k} layer group(s)"
            raise ValueError(f"lora_target_modules: {target!r} names no linear layer{where} of this "
                             f"{model_type} encoder; its linears are {_linear_suffixes(encoder.model)}")
    order = [name for name, _ in encoder.model.named_modules()]
    return sorted(chosen, key=order.index)


def _group_roots(encoder, modules: list[nn.Module]) -> list[nn.Module]:
    """The modules of a layer group that compute features; BERT's unused pooler (above the stack) is left out."""
    from .encoders.transformer import _find_layer_stack

    stack = _find_layer_stack(encoder.model)
    if stack is None:
        return modules
    layers = [m for m in modules if any(m is layer for layer in stack)]
    return layers or modules  # the embeddings group has no layer of the stack


def _linear_suffixes(model: nn.Module) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def _describe(settings: LoraSettings) -> str:
    return (f"rank {settings.rank}, alpha {settings.alpha:g}, dropout {settings.dropout:g}, "
            f"{len(settings.modules)} linears")


def _inject(encoder, settings: LoraSettings) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.modules), bias="none")  # a list: exact names, never a regex
    inject_adapter_in_model(config, encoder.model, adapter_name=ADAPTER_NAME)  # leaves only A and B trainable
    encoder.lora_settings = settings


def _lora_layers(encoder) -> Iterator[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, LoRA layer) for every wrapped linear."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(encoder.model.named_modules()):
        if isinstance(module, LoraLayer):
            parent_name, _, attribute = name.rpartition(".")
            yield encoder.model.get_submodule(parent_name), attribute, module


def adapter_parameters(encoder) -> list[nn.Parameter]:
    """What trains under LoRA: the A and B matrices, plus encoder parameters outside the HF model (a scalar mix)."""
    params = [p for _, _, layer in _lora_layers(encoder) for p in [*layer.lora_A.parameters(),
                                                                   *layer.lora_B.parameters()]]
    inside = {id(p) for p in encoder.model.parameters()}
    return params + [p for p in encoder.parameters() if id(p) not in inside]


# ----- merging, saving, loading ------------------------------------------------------------------


def merge(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights (``W + alpha/rank * B A``) and drop them; returns ``model``.

    Predictions stay the same (to float rounding); the encoder is then a plain one again, saved and
    loaded without ``lora/``, and runs without the adapters' extra matmuls.
    """
    encoder = getattr(model, "encoder", model)
    if adapters_of(encoder) is None:
        raise ValueError("merge: this model carries no LoRA adapters (train it with strategy='lora' first)")
    for parent, attribute, layer in list(_lora_layers(encoder)):
        layer.merge(safe_merge=True)  # checks the merged weights are finite before writing them
        setattr(parent, attribute, layer.get_base_layer())
    encoder.model.__dict__.pop("peft_config", None)
    encoder.lora_settings = None
    return model


@contextmanager
def _base_layers(encoder):
    """The encoder with its original linears in place (adapters set aside), e.g. to save the base weights."""
    layers = list(_lora_layers(encoder))
    peft_config = encoder.model.__dict__.pop("peft_config", None)
    for parent, attribute, layer in layers:
        setattr(parent, attribute, layer.get_base_layer())
    try:
        yield encoder
    finally:
        for parent, attribute, layer in layers:
            setattr(parent, attribute, layer)
        if peft_config is not None:
            encoder.model.peft_config = peft_config


def adapter_state(encoder) -> dict[str, torch.Tensor]:
    """The adapters' weights, named as in ``encoder.model.state_dict()``."""
    wanted = {id(p) for _, _, layer in _lora_layers(encoder) for p in layer.parameters()} - {
        id(p) for _, _, layer in _lora_layers(encoder) for p in layer.get_base_layer().parameters()}
    return {name: p.detach().contiguous().cpu() for name, p in encoder.model.named_parameters() if id(p) in wanted}


def save_with_adapters(encoder, encoder_directory: Path, adapter_directory: Path) -> None:
    """Save the base encoder (as loaded, no adapters) into one directory and the adapters into another."""
    from safetensors.torch import save_file

    settings = adapters_of(encoder)
    with _base_layers(encoder):
        encoder.save_pretrained(encoder_directory)
    adapter_directory.mkdir()
    save_file(adapter_state(encoder), str(adapter_directory / WEIGHTS_FILE))
    payload = {"format": FORMAT, **asdict(settings), "modules": list(settings.modules)}
    (adapter_directory / SETTINGS_FILE).write_text(json.dumps(payload, indent=2))


def load_adapters(encoder, directory: Path) -> LoraSettings:
    """Add the adapters saved in ``directory`` to a freshly loaded base encoder, checking every field first."""
    from .encoders.weights import load_safetensors, read_json_file

    settings_file = Path(directory) / SETTINGS_FILE
    payload = read_json_file(settings_file, SETTINGS_FILE)
    where = f"{str(settings_file)!r}: "
    expected = {"format", "rank", "alpha", "dropout", "modules"}
    if not isinstance(payload, dict) or set(payload) != expected or payload["format"] != FORMAT:
        raise ValueError(f"{where}expected a JSON object with exactly {sorted(expected)} (format {FORMAT}); the file "
                         "is damaged or from another program: save the model again")
    check_settings(payload["rank"], payload["alpha"], payload["dropout"], where)
    modules = payload["modules"]
    linears = {name for name, m in encoder.model.named_modules() if isinstance(m, nn.Linear)}
    if not isinstance(modules, list) or not modules or not all(isinstance(m, str) and m in linears for m in modules):
        raise ValueError(f"{where}'modules' must list linear layers of the saved encoder, got {modules!r:.200}; "
                         "the file does not belong to this encoder: save the model again")
    settings = LoraSettings(payload["rank"], float(payload["alpha"]), float(payload["dropout"]), tuple(modules))
    _transformer_encoder(encoder)
    _inject(encoder, settings)
    weights_file = Path(directory) / WEIGHTS_FILE
    state = load_safetensors(weights_file)  # names a damaged file, NaN or inf weights
    own = adapter_state(encoder)
    mismatched = sorted(set(own) ^ set(state)) or sorted(k for k in own if own[k].shape != state[k].shape)
    if mismatched:
        raise ValueError(f"{str(weights_file)!r} does not fit the adapters {SETTINGS_FILE} describes (e.g. "
                         f"{mismatched[0]!r}); the directory mixes two saves: save the model again")
    encoder.model.load_state_dict(state, strict=False)
    return settings
