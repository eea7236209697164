"""Reading weights and configs so a damaged or mismatched file is an error that names it, never random layers.

Why these checks exist: safetensors reports a damaged header without the file's name; a bit flip
in a float can turn a weight into NaN or infinity and every feature after it into NaN; and
transformers, given a ``config.json`` that disagrees with the weights, initialises the missing
layers at random and only logs "newly initialized". Each function here turns one of those into a
``ValueError`` naming the file, the tensor or field, and what to do.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import torch

ALLOWED_MISSING = ("pooler.",)  # BERT-style poolers: nlptl never uses them, checkpoints often lack them
_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def read_json_file(path: str | Path, what: str = "config") -> Any:
    """Parse a JSON file, naming the file, line and column when it is not JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(path)!r}: the {what} file is not UTF-8 text (byte {err.start}); re-save it as "
                         "UTF-8 JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r}: the {what} file is not valid JSON (line {err.lineno}, column {err.colno}: "
                         f"{err.msg}); restore it or save the model again") from None


def load_safetensors(path: str | Path, framework: str = "pt") -> dict[str, Any]:
    """All tensors of a safetensors file, or a ValueError naming it when it is damaged or holds NaN/inf."""
    from safetensors import SafetensorError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} is missing; the saved directory is incomplete: "
                                "save the model again")
    if framework == "pt":
        from safetensors.torch import load_file
    else:
        from safetensors.numpy import load_file
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable safetensors file ({exc}); it is damaged or cut short: "
                         "restore it or save the model again") from None
    check_finite(tensors.items(), path)
    return tensors


def check_finite(named: Iterable[tuple[str, Any]], source: str | Path) -> None:
    """Raise naming the first floating tensor with NaN or infinite values (a damaged file, e.g. flipped bits)."""
    for name, tensor in named:
        tensor = torch.as_tensor(tensor)
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        flat = tensor.reshape(-1)
        chunk = 1 << 24  # a 2M x 300 fastText table is checked without a 600 MB mask
        if not all(bool(torch.isfinite(flat[i : i + chunk]).all()) for i in range(0, flat.numel(), chunk)):
            bad = int((~torch.isfinite(flat)).sum())
            raise ValueError(f"{str(source)!r}: tensor {name!r} holds {bad} NaN or infinite value(s) of "
                             f"{tensor.numel()}; the weights are damaged (flipped bits?): restore the file or save "
                             "the model again")


JSON_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "preprocessor_config.json", "processor_config.json")


def check_config_file(directory: str | Path) -> None:
    """A local model directory's JSON files must parse: transformers and tokenizers fail without naming them."""
    for name in JSON_FILES:
        path = Path(directory) / name
        if path.is_file():
            read_json_file(path, name)


def load_hf_model(auto_class: Any, location: str, allowed_missing: tuple[str, ...] = ALLOWED_MISSING,
                  **kwargs: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``auto_class.from_pretrained`` that refuses weights disagreeing with config.json, naming both."""
    from safetensors import SafetensorError

    if Path(location).is_dir():
        check_config_file(location)
    try:
        model, info = auto_class.from_pretrained(location, output_loading_info=True, **kwargs)
    except SafetensorError as exc:
        raise ValueError(f"{_weights_names(location)} in {location!r} is not a readable safetensors file ({exc}); "
                         "it is damaged or cut short: restore it or save the model again") from None
    except RuntimeError as exc:
        if "ignore_mismatched_sizes" not in str(exc):
            raise
        _, info = auto_class.from_pretrained(location, output_loading_info=True, ignore_mismatched_sizes=True,
                                             **kwargs)
        raise ValueError(_mismatch_message(location, sorted(info["mismatched_keys"]), kwargs.get("config"))) from None
    missing = sorted(k for k in info["missing_keys"] if not k.startswith(allowed_missing))
    extra_layers = _extra_layers(model, info["unexpected_keys"])
    if missing or extra_layers:
        raise ValueError(_disagreement_message(location, model, missing, extra_layers))
    check_finite(((n, p.detach()) for n, p in model.named_parameters()), f"{location}/{_weights_names(location)}")
    return model, info


def _weights_names(location: str) -> str:
    names = sorted(p.name for p in Path(location).glob("*.safetensors")) if Path(location).is_dir() else []
    return ", ".join(names) if names else "the weights file"


def _mismatch_message(location: str, mismatched: list, config: Any) -> str:
    shown = "; ".join(f"{key} is {tuple(ckpt)} in the weights but {tuple(want)} by config.json"
                      for key, ckpt, want in mismatched[:3])
    hints = [field for field in ("vocab_size", "hidden_size", "max_position_embeddings", "intermediate_size")
             if config is not None and hasattr(config, field)]
    return (f"{location!r}: config.json disagrees with {_weights_names(location)}: {shown}"
            f"{f' (and {len(mismatched) - 3} more)' if len(mismatched) > 3 else ''}. Fix config.json "
            f"({', '.join(hints) or 'the sizes'}) to match the weights, or use the config saved with them")


def _extra_layers(model: torch.nn.Module, unexpected: Iterable[str]) -> list[str]:
    """Unexpected weights shaped like the model's own layers: the config counts fewer layers than the weights hold."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    own = {_LAYER_INDEX.sub(".#.", name) for name, _ in model.named_parameters()}
    out = []
    for key in unexpected:
        key = key[len(prefix):] if prefix != "." and key.startswith(prefix) else key
        if _LAYER_INDEX.search(key) and _LAYER_INDEX.sub(".#.", key) in own:
            out.append(key)
    return sorted(out)


def _disagreement_message(location: str, model: torch.nn.Module, missing: list[str], extra: list[str]) -> str:
    layers = getattr(model.config, "num_hidden_layers", None)
    if extra:
        held = max(int(m) for k in extra for m in _LAYER_INDEX.findall(k)) + 1
        return (f"{location!r}: config.json says num_hidden_layers={layers} but {_weights_names(location)} holds "
                f"layers up to index {held - 1} (e.g. {extra[0]}); fix num_hidden_layers in config.json, or use the "
                "config saved with these weights")
    indices = sorted({int(m) for k in missing for m in _LAYER_INDEX.findall(k)})
    what = (f" (config.json says num_hidden_layers={layers}; the weights stop before layer {indices[0]})"
            if indices and layers is not None and all(_LAYER_INDEX.search(k) for k in missing) else "")
    return (f"{location!r}: config.json describes weights that {_weights_names(location)} does not hold: "
            f"{len(missing)} tensor(s) would be initialised at random, e.g. {', '.join(missing[:3])}{what}. "
            "Fix config.json to match the weights, or use the config saved with them")
