"""``TransferModel``: one pretrained encoder plus one or more task heads, saved as one artefact.

One head (``TransferModel(encoder, head, labels)``) is inductive transfer to one task; several
named heads on the same encoder (``heads={"sst2": ..., "ag_news": ...}``) are hard parameter
sharing (multi-task learning): every task trains the shared encoder, each its own head.

Artefact layout (safetensors + JSON, no pickle)::

    out/nlptl_model.json        heads (task, config, labels), the default head, training settings
    out/heads/<name>.safetensors one file of weights per head
    out/encoder/                the encoder, as ``Encoder.save_pretrained`` writes it
    out/lora/                   LoRA adapters, when the encoder carries them (its base weights are in encoder/)
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .cache import cached_output
from .config import require_int
from .encoders import Encoder, load_encoder
from .heads import Head, head_class
from .lora import ADAPTER_DIRECTORY

MODEL_CONFIG_NAME = "nlptl_model.json"
DEFAULT_HEAD = "default"  # the name of the one head of a single-task model
_HEAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # becomes a file name and a metric prefix


class TransferModel(nn.Module):
    """Encoder + head(s). ``forward(batch, head=None)`` returns that head's outputs."""

    def __init__(self, encoder: Encoder, head: Head | None = None, labels: Any = None, *,
                 heads: Mapping[str, Head] | None = None) -> None:
        super().__init__()
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be an nlptl Encoder (see nlptl.load_encoder), got {type(encoder).__name__}")
        if (head is None) == (heads is None):
            raise TypeError("give exactly one of head= (one task) or heads={name: head} (several tasks on one encoder)")
        if heads is None:
            heads, labels = {DEFAULT_HEAD: head}, {DEFAULT_HEAD: labels}
        elif labels is not None and not isinstance(labels, Mapping):
            raise TypeError("with heads={...}, labels must be a dict {head name: [label names]}")
        if not heads:
            raise ValueError("heads={} is empty: give at least one head")
        labels = dict(labels or {})
        unknown = sorted(set(labels) - set(heads))
        if unknown:
            raise ValueError(f"labels names head(s) {unknown} that are not in heads {sorted(heads)}")
        self.encoder = encoder
        self.heads = nn.ModuleDict()
        # heads built here and untouched since (their weights as built): fit initialises them under its seed
        self._fresh: dict[str, dict[str, torch.Tensor]] = {}
        for name, one in heads.items():
            self._add_head(name, one, labels.get(name))
        self.default_head = next(iter(heads))
        self.training_info: dict[str, Any] = {}  # settings of the last fit, saved with the model

    def _add_head(self, name: str, head: Head, labels: Sequence[str] | None) -> None:
        if not isinstance(name, str) or not _HEAD_NAME.match(name):
            raise ValueError(f"head name {name!r}: use letters, digits, '_', '.' or '-' (it names a file)")
        if not isinstance(head, Head):
            raise TypeError(f"head {name!r} must be an nlptl Head (see nlptl.heads), got {type(head).__name__}")
        if labels is not None:
            if isinstance(labels, str) or not isinstance(labels, Sequence):
                raise TypeError(f"labels for head {name!r} must be a list of names, got {type(labels).__name__}")
            labels = [str(label) for label in labels]
            num_labels = getattr(head, "num_labels", None)
            if num_labels is not None and len(labels) != num_labels:
                raise ValueError(f"labels has {len(labels)} names but head {name!r} has num_labels={num_labels}")
            if len(set(labels)) != len(labels):
                raise ValueError(f"labels for head {name!r} has duplicates: {labels}")
        if labels is not None or getattr(head, "labels", None) is None:
            head.labels = labels  # names given to the head itself are kept when TransferModel gets none
        if not head.is_built:
            head.build(self.encoder)
            self._fresh[name] = {k: v.detach().clone() for k, v in head.state_dict().items()}
        elif head.num_features != self.encoder.num_features:
            raise ValueError(f"head {name!r} was built for width {head.num_features}, "
                             f"the encoder gives {self.encoder.num_features}")
        self.heads[name] = head

    # ----- heads -------------------------------------------------------------------------------

    @property
    def head(self) -> Head:
        """The default head (the only one of a single-task model)."""
        return self.heads[self.default_head]

    @property
    def labels(self) -> list[str] | None:
        return self.head.labels

    def get_head(self, name: str | None = None) -> Head:
        if name is None:
            return self.head
        if name not in self.heads:
            raise KeyError(f"no head {name!r}; this model's heads are {list(self.heads)}")
        return self.heads[name]

    def head_for(self, source: str) -> str:
        """The head that trains on data source ``source``: its namesake, else the only head."""
        if source in self.heads:
            return source
        if len(self.heads) == 1:
            return self.default_head
        raise ValueError(f"data source {source!r} matches none of the heads {list(self.heads)}: name each "
                         "training dataset after the head it trains")

    def initialize_fresh_heads(self) -> list[str]:
        """Re-create the layers of heads nobody has trained, loaded or set since they were built.

        ``fit`` calls this right after seeding, so a head built before ``fit`` starts from the same
        weights as one built inside it: the seed fixes the whole run. A head whose weights you set
        by hand after building it keeps them.
        """
        names = []
        for name, built in sorted(self._fresh.items()):
            now = self.heads[name].state_dict()
            if now.keys() == built.keys() and all(torch.equal(now[k].cpu(), built[k].cpu()) for k in built):
                self.heads[name]._build(self.encoder.num_features)
                names.append(name)
        self._fresh.clear()
        return names

    # ----- forward and inference --------------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor], head: str | None = None) -> dict[str, torch.Tensor]:
        output = cached_output(self.encoder, batch)  # a cached batch skips the frozen part of the encoder
        if output is None:
            encoder_frozen = not any(p.requires_grad for p in self.encoder.parameters())
            with torch.set_grad_enabled(torch.is_grad_enabled() and not encoder_frozen):
                output = self.encoder(batch)  # no autograd graph at all for a frozen encoder
        result = self.get_head(head)(output, batch)
        if "losses" in result and "loss" not in result:
            result["loss"] = result["losses"].mean()
        return result

    def predict(self, inputs: Sequence[Any], text_pairs: Sequence[str] | None = None, batch_size: int = 32,
                return_probabilities: bool = False, head: str | None = None):
        """Predicted label names (ids without names); with probabilities on request."""
        from .heads import ClassificationHead

        one = self.get_head(head)
        if not isinstance(one, ClassificationHead):  # prototype heads are classification heads too
            raise TypeError(f"predict() is for text classification; head {head or self.default_head!r} is "
                            f"{one.task!r} (answer() is for extractive QA, tag() for token classification)")
        inputs = _check_inputs(inputs, "inputs", batch_size)
        if text_pairs is not None:
            text_pairs = _check_inputs(text_pairs, "text_pairs", batch_size)
            if len(text_pairs) != len(inputs):
                raise ValueError(f"got {len(inputs)} inputs but {len(text_pairs)} text_pairs; pass one pair each")
        with _eval_mode(self):
            return one.predict(self, inputs, batch_size=batch_size, text_pairs=text_pairs,
                               return_probabilities=return_probabilities, head=head)

    def answer(self, questions: Sequence[str], contexts: Sequence[str], batch_size: int = 32,
               head: str | None = None) -> list[dict]:
        """Extractive QA: [{"answer", "score", "start", "end"}] with character offsets into each context."""
        one = self.get_head(head)
        if one.task != "extractive-qa":
            raise TypeError(f"answer() is for extractive QA; head {head or self.default_head!r} is {one.task!r}")
        questions = _check_inputs(questions, "questions", batch_size)
        with _eval_mode(self):
            return one.predict(self, questions, batch_size=batch_size, contexts=contexts, head=head)

    def tag(self, texts: Sequence[str], batch_size: int = 32, head: str | None = None) -> list[list[dict]]:
        """Named entities: per text [{"entity", "text", "start", "end", "score"}] with character offsets."""
        one = self.get_head(head)
        if one.task != "token-classification":
            raise TypeError(f"tag() is for token classification; head {head or self.default_head!r} is {one.task!r}")
        texts = _check_inputs(texts, "texts", batch_size)
        with _eval_mode(self):
            return one.predict(self, texts, batch_size=batch_size, head=head)

    # ----- one artefact --------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the whole model into ``directory`` atomically.

        An existing directory is replaced only when it holds a saved nlptl model and nothing else
        (anything foreign, the working directory or home is refused before writing); a kill at any
        moment leaves the old model or the new one (see ``nlptl.artifacts.save_directory``).
        """
        from safetensors.torch import save_file

        from .artifacts import save_directory

        def write(staging: Path) -> None:
            if getattr(self.encoder, "lora_settings", None) is None:
                self.encoder.save_pretrained(staging / "encoder")
            else:  # the base weights as loaded, and the adapters beside them (nlptl/lora.py)
                from .lora import save_with_adapters

                save_with_adapters(self.encoder, staging / "encoder", staging / ADAPTER_DIRECTORY)
            (staging / "heads").mkdir()
            for name, one in self.heads.items():
                state = {k: v.detach().contiguous().cpu() for k, v in one.state_dict().items()}
                save_file(state, str(staging / "heads" / f"{name}.safetensors"))
            payload = {"heads": {name: {"task": one.task, "config": one.config(), "labels": one.labels}
                                 for name, one in self.heads.items()},
                       "default_head": self.default_head, "training": self.training_info}
            (staging / MODEL_CONFIG_NAME).write_text(json.dumps(payload, indent=2, default=str))

        save_directory(directory, write, marker=MODEL_CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, trust_remote_code: bool = False) -> "TransferModel":
        """Load a saved model; nothing a file names is imported unless ``trust_remote_code=True``."""
        from .artifacts import recover_directory, verify_sizes
        from .encoders.weights import load_safetensors

        directory = Path(directory)
        recover_directory(directory)  # a save killed mid-replacement may have left the model aside
        config_file = directory / MODEL_CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(f"{directory} is not a saved TransferModel: {MODEL_CONFIG_NAME} is missing")
        try:
            payload = json.loads(config_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{config_file} is not valid JSON ({error}); the saved model is damaged") from None
        encoder = load_encoder(directory / "encoder", **({"trust_remote_code": True} if trust_remote_code else {}))
        if "head" in payload:  # the one-head layout of nlptl 0.1
            specs = {DEFAULT_HEAD: {**payload["head"], "labels": payload.get("labels")}}
            files = {DEFAULT_HEAD: directory / "head.safetensors"}
            default = DEFAULT_HEAD
        else:
            specs = payload["heads"]
            files = {name: directory / "heads" / f"{name}.safetensors" for name in specs}
            default = payload.get("default_head", next(iter(specs)))
        heads = {name: head_class(spec["task"])(**spec["config"]) for name, spec in specs.items()}
        model = cls(encoder, heads=heads, labels={name: spec.get("labels") for name, spec in specs.items()})
        model.default_head = default
        verify_sizes(directory)  # a weights file cut short or grown since it was saved is named, not loaded
        if (directory / ADAPTER_DIRECTORY).is_dir():
            from .lora import load_adapters

            load_adapters(encoder, directory / ADAPTER_DIRECTORY)  # checked JSON + safetensors, nothing imported
        for name, one in model.heads.items():
            one.load_state_dict(load_safetensors(files[name]))  # names a damaged file, NaN or inf weights
        model._fresh.clear()
        model.training_info = payload.get("training", {})
        return model.eval()


class _eval_mode:
    """Eval mode for inference, restoring the previous mode afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        self.model.train(self.was_training)


def _check_inputs(inputs: Any, name: str, batch_size: Any) -> list:
    """A list of inputs: one string is refused (it would be predicted character by character)."""
    require_int("batch_size", batch_size, 1)
    if inputs is None:
        raise TypeError(f"{name} is None; pass a list of texts, e.g. ['what a film']")
    if isinstance(inputs, (str, bytes)):
        raise TypeError(f"{name} is one string; pass a list of texts, e.g. [{inputs[:30]!r}]")
    try:
        return list(inputs)
    except TypeError:
        raise TypeError(f"{name} is a {type(inputs).__name__}; pass a list of texts") from None
