"""Run a transformer encoder from its freeze line: cache the hidden states there, replay the top.

With ``top_k`` only the top k layer groups train; the groups below always compute the same
hidden states. ``boundary_states`` computes those once (stopping the forward pass at the line),
and ``forward_from_boundary`` runs the model with the embeddings answering with the cached states
and the frozen layers passing them through untouched, so only the trainable layers compute. The
model's own forward still builds the attention masks, so this works for any architecture whose
layers are applied one after another to a hidden-state tensor (BERT, RoBERTa, MiniLM ...).
``replay_matches`` checks that on a real batch; where it does not hold, callers train without it.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .base import EncoderOutput


class _Stop(Exception):
    """Raised by the capture hook: nothing above the freeze line needs computing."""


def _bottom(encoder) -> tuple[nn.Module, nn.ModuleList] | None:
    from .transformer import TransformerEncoder, _find_layer_stack

    if not isinstance(encoder, TransformerEncoder) or encoder.hidden_states != "last":
        return None  # mixes of several layers need the frozen layers' outputs too
    embeddings = getattr(encoder.model, "embeddings", None)
    stack = _find_layer_stack(encoder.model)
    if embeddings is None or stack is None:
        return None
    groups = encoder.layer_groups()
    if len(groups) != len(stack) + 1 or groups[0][1] != [embeddings]:
        return None  # something besides the embeddings sits below the layers (ALBERT's mapping, XLNet)
    return embeddings, stack


def supports_boundary(encoder, n_frozen_groups: int) -> bool:
    parts = _bottom(encoder)
    return parts is not None and 1 <= n_frozen_groups <= len(parts[1])


@torch.inference_mode()
def boundary_states(encoder, batch: dict[str, torch.Tensor], n_frozen_groups: int) -> EncoderOutput:
    """Hidden states (B, L, D) at the top of the ``n_frozen_groups`` bottom groups, with the mask."""
    embeddings, stack = _bottom(encoder)
    source = embeddings if n_frozen_groups == 1 else stack[n_frozen_groups - 2]
    captured = []

    def capture(module, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _Stop

    handle = source.register_forward_hook(capture)
    try:
        encoder(batch)
    except _Stop:
        pass
    finally:
        handle.remove()
    return EncoderOutput(captured[0], batch["attention_mask"].bool())


def forward_from_boundary(encoder, batch: dict[str, torch.Tensor], hidden: torch.Tensor,
                          n_frozen_groups: int) -> EncoderOutput:
    """The encoder's output computed from cached boundary states: only the groups above run."""
    embeddings, stack = _bottom(encoder)
    with _replaced(embeddings, stack[: n_frozen_groups - 1], hidden):
        return encoder(batch)


@contextmanager
def _replaced(embeddings: nn.Module, frozen_layers, hidden: torch.Tensor):
    def cached(*args, **kwargs):
        return hidden

    def passthrough(*args, **kwargs):
        return args[0] if args else kwargs["hidden_states"]

    embeddings.forward = cached  # an instance attribute shadows the class's forward
    for layer in frozen_layers:
        layer.forward = passthrough
    try:
        yield
    finally:
        del embeddings.forward
        for layer in frozen_layers:
            del layer.forward


@torch.inference_mode()
def replay_matches(encoder, batch: dict[str, torch.Tensor], n_frozen_groups: int, atol: float = 1e-4) -> bool:
    """Does replaying from the boundary give the plain forward's features on this batch (eval mode)?"""
    was_training = encoder.training
    encoder.eval()
    try:
        expected = encoder(batch).features
        hidden = boundary_states(encoder, batch, n_frozen_groups).features
        replayed = forward_from_boundary(encoder, batch, hidden, n_frozen_groups).features
        return replayed.shape == expected.shape and bool(torch.allclose(replayed, expected, atol=atol))
    except Exception:  # an architecture whose layers do not compose like this
        return False
    finally:
        encoder.train(was_training)
