"""The recipe keys of ``Gemma3nSpeedPlugin``: Axolotl merges this model into its config schema.

The validators refuse combinations that would waste a GPU run, so that Axolotl's own
validation (``mathpal validate``, ``mathpal train`` before launch, and plain
``accelerate launch -m axolotl.cli.train``) stops them before any weight loads, as
Axolotl's integrations do (``cut_cross_entropy/args.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from mathpal_train.gemma3n_speed.loss import DEFAULT_CHUNK_TOKENS, liger_available


def _fused(data: dict[str, Any]) -> bool:
    """``gemma3n_fused_loss`` as the run will see it (unset means the default, on)."""
    return data.get("gemma3n_fused_loss") is not False


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
            "description": "torch.compile each Gemma3nTextDecoderLayer's training forward as one region (CUDA only; "
            "a no-op with a log line elsewhere; evaluation runs eager). Not with torch_compile: true, which "
            "compiles the whole model."
        },
    )

    @model_validator(mode="before")
    @classmethod
    def check_one_compile(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("gemma3n_compile_layers") and data.get("torch_compile"):
            raise ValueError(
                "gemma3n_compile_layers and torch_compile both compile the model: keep one "
                "(gemma3n_compile_layers compiles each decoder layer, faster to start)"
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def check_one_fused_loss(cls, data: Any) -> Any:
        if isinstance(data, dict) and _fused(data) and data.get("liger_fused_linear_cross_entropy"):
            raise ValueError(
                "liger_fused_linear_cross_entropy drops Gemma-3n's logit soft-cap: remove it "
                "(gemma3n_fused_loss does the same fused loss with the soft-cap)"
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def check_liger_installed(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and _fused(data)
            and data.get("gemma3n_loss_impl") == "liger"
            and not liger_available()
        ):
            raise ValueError("gemma3n_loss_impl: liger needs liger_kernel installed: install it, or use auto or torch")
        return data
