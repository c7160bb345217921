"""Gemma-3n's training loss without full-vocabulary logits: soft-capped LM head + cross-entropy, fused.

Gemma-3n computes ``logits = lm_head(hidden)``, soft-caps them (``tanh(logits / cap) * cap``,
cap 30), and transformers' ``ForCausalLMLoss`` upcasts them to fp32 before the
cross-entropy. With a 262,400-token vocabulary that is ~9.3 GiB of activations per
2048-token row kept for backward: the memory that limits the micro batch. Here the
loss is computed from the final hidden states and the head's weight instead, and no
full-vocabulary tensor outlives one chunk of tokens.

Two implementations, one contract (``ForCausalLMLoss``'s: labels shifted by one,
``ignore_index`` -100, fp32, ``sum / num_items_in_batch`` when the trainer passes it,
else the mean over the counted tokens):

- ``liger``: Liger's fused linear cross-entropy (Triton, CUDA only), with the soft-cap.
- ``torch``: chunks of tokens, each chunk's logits computed, soft-capped, upcast and
  reduced, then dropped; ``torch.utils.checkpoint`` recomputes them per chunk in
  backward. The same operations in the same dtypes as the unfused head, so it is
  the reference the tests compare against, and the path on every non-CUDA device.

Which one ran is counted in ``CALLS`` and logged once per (implementation, mode).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections import Counter
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
# Tokens per chunk of the torch path: 512 x 262,400 fp32 logits are 0.5 GiB per tensor
# (a few live at once in a chunk's forward and backward) instead of ~9.3 GiB per row.
DEFAULT_CHUNK_TOKENS = 512

Impl = Literal["auto", "liger", "torch"]

# (implementation, "train" when autograd records, "eval" under no_grad) -> calls in this process.
CALLS: Counter[tuple[str, str]] = Counter()

# Axolotl's console filter shows INFO records only from loggers named axolotl.*; without
# this name the one line saying which path ran would be dropped from the training log.
LOG = logging.getLogger("axolotl.mathpal.gemma3n_speed")


@functools.cache
def liger_available() -> bool:
    """Liger's kernels import (liger_kernel and triton are installed)."""
    return importlib.util.find_spec("liger_kernel") is not None and importlib.util.find_spec("triton") is not None


def resolve_impl(impl: Impl, device: torch.device) -> Literal["liger", "torch"]:
    """The implementation that runs for tensors on ``device``: Liger on CUDA when it is installed."""
    if impl == "torch":
        return "torch"
    if impl == "liger":
        if device.type != "cuda" or not liger_available():
            raise RuntimeError(
                f"gemma3n_loss_impl: liger needs CUDA tensors and liger_kernel (got {device.type}, "
                f"liger_kernel {'installed' if liger_available() else 'missing'}): use auto or torch"
            )
        return "liger"
    if device.type == "cuda":
        if liger_available():
            return "liger"
        _log_once(
            ("torch", "no-liger"),
            "liger_kernel is not installed: the torch path (slower) runs on CUDA",
            logging.WARNING,
        )
    return "torch"


def shifted_targets(
    labels: torch.Tensor, shift_labels: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Next-token targets, flattened: ``labels`` shifted left by one and padded, as ``ForCausalLMLoss`` does."""
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    return shift_labels.reshape(-1)


def softcapped_cross_entropy_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Summed cross-entropy of ``hidden``'s rows, by the unfused head's own operations and dtypes.

    ``F.linear`` as ``nn.Linear`` calls it, the soft-cap in the head's dtype, then the
    fp32 upcast and cross-entropy of ``ForCausalLMLoss``: any difference from the
    unfused loss comes from the order of the final sum only.
    """
    logits = F.linear(hidden, weight)
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction="sum")


def chunked_cross_entropy_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, counted tokens) over ``hidden`` (tokens x hidden size), one chunk of logits at a time.

    Only tokens with a target are fed to the head (prompt and padding tokens add
    nothing to the loss or its gradient, and are about half of our rows). Under
    autograd each chunk runs inside ``checkpoint``: backward keeps the chunk's
    inputs, not its logits, and recomputes them.
    """
    counted = targets != ignore_index
    hidden, kept = hidden[counted], targets[counted]
    recompute = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    total = None
    # split() of zero tokens gives one empty chunk: the loss then still has a graph (zero gradient).
    for h, t in zip(hidden.split(chunk_tokens), kept.split(chunk_tokens), strict=True):
        if recompute:
            part = checkpoint(
                softcapped_cross_entropy_sum,
                h,
                weight,
                t,
                softcap,
                ignore_index,
                use_reentrant=False,
                preserve_rng_state=False,
            )
        else:
            part = softcapped_cross_entropy_sum(h, weight, t, softcap, ignore_index)
        total = part if total is None else total + part
    return total, counted.sum()


def torch_causal_lm_loss(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    softcap: float | None,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = IGNORE_INDEX,
    shift_labels: torch.Tensor | None = None,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> torch.Tensor:
    """``ForCausalLMLoss`` of the soft-capped head, computed chunk by chunk (any device)."""
    targets = shifted_targets(labels, shift_labels, ignore_index).to(hidden_states.device)
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
    total, counted = chunked_cross_entropy_sum(hidden, lm_head_weight, targets, softcap, chunk_tokens, ignore_index)
    if num_items_in_batch is None:
        return total / counted  # F.cross_entropy's "mean" with ignore_index: NaN when nothing counts, as there
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def liger_causal_lm_loss(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    softcap: float | None,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = IGNORE_INDEX,
    shift_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Liger's fused linear cross-entropy with the soft-cap (CUDA; same reduction contract)."""
    from liger_kernel.transformers.model.loss_utils import LigerForCausalLMLoss

    return LigerForCausalLMLoss(
        hidden_states=hidden_states.contiguous(),
        lm_head_weight=lm_head_weight,
        labels=labels,
        hidden_size=hidden_states.shape[-1],
        num_items_in_batch=num_items_in_batch,
        ignore_index=ignore_index,
        shift_labels=shift_labels,
        final_logit_softcapping=softcap,
    )


def fused_causal_lm_loss(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    softcap: float | None,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = IGNORE_INDEX,
    shift_labels: torch.Tensor | None = None,
    impl: Impl = "auto",
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    **_unused,
) -> torch.Tensor:
    """The loss both patched forwards call, in place of ``lm_head`` + soft-cap + ``self.loss_function``.

    Takes the model's ``**kwargs`` as ``ForCausalLMLoss`` does (``num_items_in_batch``,
    ``ignore_index``, ``shift_labels``; the rest, attention kwargs, is ignored).
    """
    chosen = resolve_impl(impl, hidden_states.device)
    mode = "train" if torch.is_grad_enabled() else "eval"
    CALLS[(chosen, mode)] += 1
    _log_once(
        (chosen, mode),
        f"Gemma-3n fused loss ran on the {chosen} path ({mode}): no full-vocabulary logits"
        + (f", {chunk_tokens}-token chunks recomputed in backward" if chosen == "torch" else ""),
    )
    if chosen == "liger":
        return liger_causal_lm_loss(
            hidden_states, lm_head_weight, labels, softcap, num_items_in_batch, ignore_index, shift_labels
        )
    return torch_causal_lm_loss(
        hidden_states, lm_head_weight, labels, softcap, num_items_in_batch, ignore_index, shift_labels, chunk_tokens
    )


_LOGGED: set[tuple[str, str]] = set()


def _log_once(key: tuple[str, str], message: str, level: int = logging.INFO) -> None:
    """One line per key and process: a training run shows which path it took, not every step."""
    if key not in _LOGGED:
        _LOGGED.add(key)
        LOG.log(level, message)
