"""``TransferModel``: a pretrained encoder plus a task head, saved and restored as one artefact.

Artefact layout (safetensors + JSON, no pickle)::

    out/nlptl_model.json       head task + config, labels, strategy, preprocessing settings
    out/head.safetensors       head weights
    out/encoder/               the encoder, as ``Encoder.save_pretrained`` writes it
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .cache import cached_output
from .encoders import Encoder, load_encoder
from .heads import Head, head_class

MODEL_CONFIG_NAME = "nlptl_model.json"


class TransferModel(nn.Module):
    """Encoder + head. ``forward(batch)`` returns the head's outputs (with "loss" given targets)."""

    def __init__(self, encoder: Encoder, head: Head, labels: Sequence[str] | None = None) -> None:
        super().__init__()
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be an nlptl Encoder (see nlptl.load_encoder), got {type(encoder).__name__}")
        if not isinstance(head, Head):
            raise TypeError(f"head must be an nlptl Head (see nlptl.heads), got {type(head).__name__}")
        self.encoder, self.head = encoder, head
        if labels is not None:
            labels = [str(label) for label in labels]
            num_labels = getattr(head, "num_labels", None)
            if num_labels is not None and len(labels) != num_labels:
                raise ValueError(f"labels has {len(labels)} names but the head has num_labels={num_labels}")
            if len(set(labels)) != len(labels):
                raise ValueError(f"labels has duplicates: {labels}")
        self.labels = labels
        head.labels = labels
        if not head.is_built:
            head.build(encoder)
        elif head.num_features != encoder.num_features:
            raise ValueError(f"head was built for width {head.num_features}, encoder gives {encoder.num_features}")
        self.training_info: dict[str, Any] = {}  # strategy and settings of the last fit, saved with the model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        output = cached_output(self.encoder, batch)  # a cached batch skips the frozen part of the encoder
        if output is None:
            encoder_frozen = not any(p.requires_grad for p in self.encoder.parameters())
            with torch.set_grad_enabled(torch.is_grad_enabled() and not encoder_frozen):
                output = self.encoder(batch)  # no autograd graph at all for a frozen encoder
        return self.head(output, batch)

    # ----- inference -----------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(
        self,
        inputs: Sequence[Any],
        text_pairs: Sequence[str] | None = None,
        batch_size: int = 32,
        return_probabilities: bool = False,
    ):
        """Predicted label names (or ids without names); with probabilities on request."""
        if self.head.task != "classification":
            raise TypeError(f"predict() is for classification; this model's head is {self.head.task!r}")
        was_training = self.training
        self.eval()
        probabilities = []
        try:
            for start in range(0, len(inputs), batch_size):
                pairs = None if text_pairs is None else list(text_pairs[start : start + batch_size])
                args = (list(inputs[start : start + batch_size]),) + ((pairs,) if pairs is not None else ())
                batch = {k: v.to(self.encoder.device) for k, v in self.encoder.preprocess(*args).items()}
                logits = self(batch)["logits"].float()
                probs = torch.sigmoid(logits) if self.head.multi_label else torch.softmax(logits, -1)
                probabilities.append(probs.cpu().numpy())
        finally:
            self.train(was_training)
        probs = np.concatenate(probabilities) if probabilities else np.zeros((0, self.head.num_labels))
        names = self.labels or list(range(self.head.num_labels))
        if self.head.multi_label:
            predictions = [[names[j] for j in np.flatnonzero(row > 0.5)] for row in probs]
        else:
            predictions = [names[j] for j in probs.argmax(-1)]
        return (predictions, probs) if return_probabilities else predictions

    def answer(self, questions: Sequence[str], contexts: Sequence[str], batch_size: int = 32) -> list[dict]:
        """Extractive QA: [{"answer", "score", "start", "end"}] with character offsets into each context."""
        if self.head.task != "extractive_qa":
            raise TypeError(f"answer() is for extractive QA; this model's head is {self.head.task!r}")
        from .heads.qa import predict_answers

        return predict_answers(self.encoder, self.head, questions, contexts, batch_size=batch_size)

    # ----- one artefact --------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the whole model atomically: a crash mid-save never leaves a half-written directory."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.encoder.save_pretrained(staging / "encoder")
            head_state = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
            save_file(head_state, str(staging / "head.safetensors"))
            payload = {"head": {"task": self.head.task, "config": self.head.config()}, "labels": self.labels,
                       "training": self.training_info}
            (staging / MODEL_CONFIG_NAME).write_text(json.dumps(payload, indent=2, default=str))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "TransferModel":
        from safetensors.torch import load_file

        directory = Path(directory)
        config_file = directory / MODEL_CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(f"{directory} is not a saved TransferModel: {MODEL_CONFIG_NAME} is missing")
        payload = json.loads(config_file.read_text())
        encoder = load_encoder(directory / "encoder")
        head = head_class(payload["head"]["task"])(**payload["head"]["config"])
        model = cls(encoder, head, labels=payload.get("labels"))
        model.head.load_state_dict(load_file(str(directory / "head.safetensors")))
        model.training_info = payload.get("training", {})
        return model.eval()
