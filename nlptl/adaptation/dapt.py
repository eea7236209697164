"""Domain-adaptive pretraining (Gururangan et al., ACL 2020): masked-LM on unlabelled target text.

Before fine-tuning on the labelled source, continue the encoder's own pretraining task on text of
the target domain, so its features cover the target's vocabulary and style. Sentence-embedding
checkpoints (all-MiniLM-L6-v2) ship without a language-model head: then a fresh one is added,
its output layer tied to the input word embeddings as in BERT. The encoder module itself is
trained in place, and ``output_dir`` receives a saved encoder that ``nlptl.load_encoder`` reads.
Loss is computed on the masked positions only (the vocabulary projection of every position
would cost more than the encoder on CPU).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

log = logging.getLogger("nlptl.adaptation")


@dataclass
class DAPTResult:
    encoder: Any  # the same encoder object, now adapted
    loss_before: float  # masked-LM loss on the evaluation texts (fixed masks) before training
    loss_after: float
    steps: int
    head: str  # "pretrained" when the checkpoint had a masked-LM head, "new (tied)" otherwise
    losses: list[float] = field(default_factory=list)  # training loss per step
    saved_to: str | None = None


def masked_lm_for(encoder: Any) -> tuple[nn.Module, str]:
    """A ``*ForMaskedLM`` whose base model *is* ``encoder.model``, with the checkpoint's head when it has one."""
    from transformers import AutoModelForMaskedLM

    base = encoder.model
    mlm, head = None, "new (tied)"
    source = getattr(base.config, "_name_or_path", "") or ""
    if source and Path(source).is_dir():
        try:
            loaded, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
            prefix = loaded.base_model_prefix
            if not [k for k in info.get("missing_keys", []) if not k.startswith(prefix)]:
                mlm, head = loaded, "pretrained"
        except (OSError, ValueError, KeyError) as error:  # no masked-LM class for this config, unreadable files
            log.info("no masked-LM head loaded from %s (%s); adding a new one", source, error)
    if mlm is None:
        mlm = AutoModelForMaskedLM.from_config(base.config)
    setattr(mlm, mlm.base_model_prefix, base)  # train the encoder's own module, in place
    output = mlm.get_output_embeddings()
    output.weight = base.get_input_embeddings().weight  # tied: the new head predicts with the input vectors
    return mlm, head


def domain_adaptive_pretraining(encoder: Any, texts: Sequence[str], *, epochs: int = 1, batch_size: int = 16,
                                learning_rate: float = 5e-5, mlm_probability: float = 0.15,
                                train_top_k: int | None = None, max_length: int | None = None,
                                eval_texts: Sequence[str] | None = None, seed: int = 0,
                                output_dir: str | None = None, max_grad_norm: float = 1.0) -> DAPTResult:
    """Masked-LM training of a transformer ``encoder`` on ``texts``; ``train_top_k`` trains only its top groups."""
    from transformers import DataCollatorForLanguageModeling, get_linear_schedule_with_warmup

    from ..encoders.transformer import TransformerEncoder

    if not isinstance(encoder, TransformerEncoder):
        raise TypeError(f"domain-adaptive pretraining needs a transformer encoder, got kind {encoder.kind!r}")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError("texts is empty: pass the unlabelled target-domain texts to pretrain on")
    if encoder.tokenizer.mask_token is None:
        raise ValueError(f"the tokenizer of {encoder.model.config.model_type!r} has no mask token: no masked-LM")
    torch.manual_seed(seed)
    mlm, head = masked_lm_for(encoder)
    _freeze_below(encoder, mlm, train_top_k)
    collator = DataCollatorForLanguageModeling(encoder.tokenizer, mlm_probability=mlm_probability)
    length = min(max_length or encoder.max_length, encoder.max_length)

    def batches(chunk: Sequence[str], generator_seed: int) -> list[dict[str, torch.Tensor]]:
        """Tokenized, masked batches; masks drawn under ``generator_seed`` so they repeat."""
        with torch.random.fork_rng():
            torch.manual_seed(generator_seed)
            order = torch.randperm(len(chunk)).tolist()
            out = []
            for start in range(0, len(chunk), batch_size):
                rows = [chunk[i] for i in order[start : start + batch_size]]
                encoded = encoder.tokenizer(rows, truncation=True, max_length=length)
                out.append(collator([{k: encoded[k][i] for k in encoded} for i in range(len(rows))]))
            return out

    evaluation = batches(list(eval_texts) if eval_texts is not None else texts[:256], seed + 10_000)
    loss_before = masked_lm_loss(mlm, evaluation)
    params = [p for p in mlm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * steps_per_epoch * epochs),
                                                steps_per_epoch * epochs)
    losses = []
    mlm.train()
    for epoch in range(epochs):
        for batch in batches(texts, seed + epoch):
            loss = _masked_loss(mlm, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
    mlm.eval()
    loss_after = masked_lm_loss(mlm, evaluation)
    for p in encoder.parameters():
        p.requires_grad_(True)  # hand the encoder back trainable, as load_encoder gives it
    log.info("DAPT: masked-LM loss %.3f -> %.3f over %d steps (%s head)", loss_before, loss_after, len(losses), head)
    saved = None
    if output_dir is not None:
        encoder.save_pretrained(output_dir)
        saved = str(output_dir)
    return DAPTResult(encoder, loss_before, loss_after, len(losses), head, losses, saved)


@torch.no_grad()
def masked_lm_loss(mlm: nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean masked-LM loss over masked positions of pre-masked ``batches``."""
    was_training = mlm.training
    mlm.eval()
    total, count = 0.0, 0
    for batch in batches:
        n = int((batch["labels"] != -100).sum())
        total += float(_masked_loss(mlm, batch)) * n
        count += n
    mlm.train(was_training)
    return total / max(1, count)


def _masked_loss(mlm: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    labels = batch["labels"]  # (B, L), -100 where not masked
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    head = getattr(mlm, "cls", None) or getattr(mlm, "lm_head", None)  # BERT / RoBERTa-style heads
    if head is None:
        return mlm(**inputs, labels=labels).loss
    base = getattr(mlm, mlm.base_model_prefix)
    hidden = base(**inputs).last_hidden_state  # (B, L, D)
    chosen = labels != -100  # (B, L)
    logits = head(hidden[chosen])  # (M, V): the vocabulary projection of masked positions only
    return nn.functional.cross_entropy(logits, labels[chosen])


def _freeze_below(encoder: Any, mlm: nn.Module, train_top_k: int | None) -> None:
    """All of the masked-LM model trains, except the encoder groups below the top ``train_top_k``."""
    for p in mlm.parameters():
        p.requires_grad_(True)
    if train_top_k is None:
        return
    groups = encoder.layer_groups()
    if not 1 <= train_top_k <= len(groups):
        raise ValueError(f"train_top_k={train_top_k}: the encoder has {len(groups)} groups {encoder.group_names()}")
    for _, modules in groups[: len(groups) - train_top_k]:
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)
