"""Regional ``torch.compile`` for training: each Gemma-3n decoder layer compiled as one region.

Compiling the whole model re-traces at every graph break and takes long to warm up;
compiling the repeated block (what Unsloth does: "compiling each transformer block
as one region") gets most of the fused kernels at a fraction of the compile time.

Only the training forward is compiled (grad enabled, module in train mode); evaluation
and generation run the eager forward. Two reasons, both seen on an H200
(docs/performance.md): with ``nn.Module.compile`` on the whole layer, Axolotl's step-0
evaluation compiles a no-grad graph first, and a run of the tiny Gemma-3n then failed its
first backward with ``CheckpointError: Recomputed values ... have different metadata``
(gradient checkpointing recomputed through another graph than the forward's); compiling
the training forward alone trained the same recipe through 120 steps and a resume. And
evaluations are a few batches, not worth a compile of their own. The compiled forward
is set on the layer instance, so parameter names, state dicts and PEFT's adapter files
are unchanged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers.models.gemma3n.modeling_gemma3n import Gemma3nTextDecoderLayer

LOG = logging.getLogger("axolotl.mathpal.gemma3n_speed")
# The attribute a compiled layer keeps its eager forward under (also how a compiled layer is recognised).
EAGER_FORWARD = "_mathpal_eager_forward"


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """Every ``Gemma3nTextDecoderLayer`` in ``model`` (PEFT-wrapped or not), in order."""
    return [m for m in model.modules() if isinstance(m, Gemma3nTextDecoderLayer)]


def is_compiled(layer: nn.Module) -> bool:
    """Whether ``compile_for_training`` has wrapped this layer."""
    return EAGER_FORWARD in vars(layer)


def compile_for_training(layer: nn.Module, backend: str | Callable = "inductor") -> None:
    """Give ``layer`` a forward that runs compiled while training and eagerly otherwise (idempotent)."""
    if is_compiled(layer):
        return
    eager = layer.forward
    compiled = torch.compile(eager, backend=backend)

    @functools.wraps(eager)
    def forward(*args: Any, **kwargs: Any) -> Any:
        if layer.training and torch.is_grad_enabled():
            return compiled(*args, **kwargs)
        return eager(*args, **kwargs)

    setattr(layer, EAGER_FORWARD, eager)
    layer.forward = forward


def uncompile(layer: nn.Module) -> None:
    """Undo ``compile_for_training`` (tests compare a layer with itself, eager)."""
    if is_compiled(layer):
        del layer.forward
        delattr(layer, EAGER_FORWARD)


def compile_decoder_layers(model: nn.Module, device_type: str, backend: str | Callable = "inductor") -> int:
    """Compile each decoder layer's training forward on CUDA; returns how many (0 elsewhere).

    ``backend`` is for tests: on the CPU they pass a counting backend with ``device_type``
    "cuda" to check which calls compile.
    """
    layers = decoder_layers(model)
    if device_type != "cuda":
        LOG.info(f"gemma3n_compile_layers: no-op on {device_type} (regional compile is for CUDA)")
        return 0
    import torch._dynamo

    # One compiled code object serves every layer; each may specialise on its own
    # attributes (index, sliding window, KV sharing), and past the recompile limit
    # (8) dynamo silently runs the rest eagerly.
    limit = max(torch._dynamo.config.recompile_limit, 2 * len(layers))
    torch._dynamo.config.recompile_limit = limit
    for layer in layers:
        compile_for_training(layer, backend)
    LOG.info(
        f"gemma3n_compile_layers: compiled the training forward of {len(layers)} decoder layers "
        f"(recompile limit {limit}; evaluation runs eager)"
    )
    return len(layers)
