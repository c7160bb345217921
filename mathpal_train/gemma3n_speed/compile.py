"""Regional ``torch.compile``: each Gemma-3n decoder layer compiled as one region.

Compiling the whole model re-traces at every graph break and takes long to warm up;
compiling the repeated block (what Unsloth does: "compiling each transformer block
as one region") gets most of the fused kernels at a fraction of the compile time.
``nn.Module.compile`` compiles in place, so parameter names, state dicts and PEFT's
adapter files are unchanged.

Evaluation is compiled too (its own graphs, no grad). Compiling the training forward
only, with evaluation eager, was measured on an H200 and gave no shorter time to the
first step (221 s against 184 s, one run each) and no faster steps
(docs/performance.md), so the simpler whole-module compile stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from torch import nn
from transformers.models.gemma3n.modeling_gemma3n import Gemma3nTextDecoderLayer

LOG = logging.getLogger("axolotl.mathpal.gemma3n_speed")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """Every ``Gemma3nTextDecoderLayer`` in ``model`` (PEFT-wrapped or not), in order."""
    return [m for m in model.modules() if isinstance(m, Gemma3nTextDecoderLayer)]


def is_compiled(layer: nn.Module) -> bool:
    """Whether the layer runs compiled (``nn.Module.compile`` was called on it)."""
    return getattr(layer, "_compiled_call_impl", None) is not None


def uncompile(layer: nn.Module) -> None:
    """Run ``layer`` eagerly again (tests compare a layer with itself, eager)."""
    layer._compiled_call_impl = None


def compile_decoder_layers(model: nn.Module, device_type: str, backend: str | Callable = "inductor") -> int:
    """Compile each decoder layer in place on CUDA; returns how many were compiled (0 elsewhere).

    ``backend`` is for tests: on the CPU they pass a counting backend with ``device_type``
    "cuda" to check that the compiled layers run.
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
        if not is_compiled(layer):
            layer.compile(backend=backend)
    LOG.info(f"gemma3n_compile_layers: compiled {len(layers)} decoder layers (recompile limit {limit})")
    return len(layers)
