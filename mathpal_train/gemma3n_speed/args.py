"""The recipe keys of ``Gemma3nSpeedPlugin``: Axolotl merges this model into its config schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from mathpal_train.gemma3n_speed.loss import DEFAULT_CHUNK_TOKENS


class Gemma3nSpeedArgs(BaseModel):
    """Input args of the plugin (the keys exist only in recipes that name it under ``plugins:``)."""

    gemma3n_fused_loss: bool = Field(
        default=True,
        json_schema_extra={
            "description": "Training loss from the final hidden states without full-vocabulary logits "
            "(Liger's fused linear cross-entropy with Gemma-3n's soft-cap on CUDA, a chunked torch loss elsewhere). "
            "The training output's logits are None; eval with prediction_loss_only takes the same path."
        },
    )
    gemma3n_loss_impl: Literal["auto", "liger", "torch"] = Field(
        default="auto",
        json_schema_extra={"description": "auto: liger on CUDA when installed, torch otherwise."},
    )
    gemma3n_loss_chunk_size: int = Field(
        default=DEFAULT_CHUNK_TOKENS,
        ge=1,
        json_schema_extra={"description": "Tokens per chunk of the torch path (Liger picks its own)."},
    )
    gemma3n_compile_layers: bool = Field(
        default=False,
        json_schema_extra={
            "description": "torch.compile each Gemma3nTextDecoderLayer as one region (CUDA only; a no-op with a "
            "log line elsewhere). Not with torch_compile: true, which compiles the whole model."
        },
    )
