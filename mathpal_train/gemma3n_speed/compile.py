"""Regional ``torch.compile``: each Gemma-3n decoder layer compiled as one region.

Compiling the whole model re-traces at every graph break and takes long to warm up;
compiling the repeated block (what Unsloth does: "compiling each transformer block
as one region") gets most of the fused kernels at a fraction of the compile time.
``nn.Module.compile`` compiles in place, so parameter names, state dicts and PEFT's
adapter files are unchanged.
"""

from __future__ import annotations

import logging

from torch import nn
from transformers.models.gemma3n.modeling_gemma3n import Gemma3nTextDecoderLayer

LOG = logging.getLogger("axolotl.mathpal.gemma3n_speed")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """Every ``Gemma3nTextDecoderLayer`` in ``model`` (PEFT-wrapped or not), in order."""
    return [m for m in model.modules() if isinstance(m, Gemma3nTextDecoderLayer)]


def compile_decoder_layers(model: nn.Module, device_type: str) -> int:
    """Compile each decoder layer in place on CUDA; returns how many were compiled (0 elsewhere)."""
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
        layer.compile()
    LOG.info(f"gemma3n_compile_layers: compiled {len(layers)} decoder layers (recompile limit {limit})")
    return len(layers)
