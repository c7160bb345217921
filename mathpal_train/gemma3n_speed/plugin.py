"""``Gemma3nSpeedPlugin``: the fused Gemma-3n loss (and optional regional compile) as an Axolotl plugin.

A recipe turns it on with ``plugins: [mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin]``;
it then works under ``mathpal train`` and plain ``accelerate launch -m axolotl.cli.train``
alike. Axolotl skips a plugin that fails to import with one log line, so
``mathpal validate`` imports every plugin a recipe names.

Conflicting keys are refused by ``Gemma3nSpeedArgs``' validators, in Axolotl's own
validation, before any of these hooks runs.

Hooks: ``pre_model_load`` patches both Gemma-3n forwards (class level, before the
model exists), ``post_model_load`` reports what the loaded model runs and compiles its
decoder layers if asked, ``post_trainer_create`` lets loss-only evaluation skip the
logits too.

What changes for the rest of the run: a training forward with labels returns
``loss`` and ``logits=None`` (pass ``skip_logits=False`` to get logits anyway), and so
does the Trainer's loss-only evaluation (``prediction_loss_only``, the default when no
``compute_metrics`` is set, as in our recipes). Generation, and evaluation that asks
for logits (Axolotl's benchmark and causal-LM-metric callbacks), are unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from axolotl.integrations.base import BasePlugin
from torch import nn

from mathpal_train.gemma3n_speed.args import Gemma3nSpeedArgs
from mathpal_train.gemma3n_speed.compile import compile_decoder_layers
from mathpal_train.gemma3n_speed.patch import FusedLossSettings, configure, is_patched, patch_gemma3n

LOG = logging.getLogger("axolotl.mathpal.gemma3n_speed")
GEMMA3N_MODEL_TYPES = {"gemma3n", "gemma3n_text"}


def arg(cfg: Any, name: str) -> Any:
    """A plugin key from Axolotl's config, or its schema default when the config lacks it."""
    value = cfg.get(name)
    return Gemma3nSpeedArgs.model_fields[name].default if value is None else value


def settings_from(cfg: Any) -> FusedLossSettings:
    """The patch's settings from the recipe's ``gemma3n_*`` keys."""
    return FusedLossSettings(
        enabled=bool(arg(cfg, "gemma3n_fused_loss")),
        impl=arg(cfg, "gemma3n_loss_impl"),
        chunk_tokens=int(arg(cfg, "gemma3n_loss_chunk_size")),
    )


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model under PEFT's (and accelerate's) wrappers."""
    inner = getattr(model, "module", model)  # DDP
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def skip_logits_in_loss_only_eval(trainer: Any) -> None:
    """Evaluation that keeps only the loss (``prediction_loss_only``, the default without ``compute_metrics``)
    passes ``skip_logits=True``, as the Trainer itself does for Liger models.

    In eval mode the patched forward returns logits unless told otherwise, because
    callers outside the Trainer (Axolotl's benchmark callbacks, our eval scripts) read
    them; the Trainer's own loss-only evaluation throws them away.
    """
    original: Callable = trainer.prediction_step

    def prediction_step(model, inputs, prediction_loss_only, ignore_keys=None):
        if prediction_loss_only and inputs.get("labels") is not None and "skip_logits" not in inputs:
            inputs = {**inputs, "skip_logits": True}
        return original(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    trainer.prediction_step = prediction_step


class Gemma3nSpeedPlugin(BasePlugin):
    """Gemma-3n training without full-vocabulary logits; see the module docstring."""

    def get_input_args(self) -> str:
        return "mathpal_train.gemma3n_speed.args.Gemma3nSpeedArgs"

    def pre_model_load(self, cfg: Any) -> None:
        new = settings_from(cfg)
        model_type = cfg.get("model_config_type")
        if model_type and model_type not in GEMMA3N_MODEL_TYPES:
            LOG.warning(f"Gemma3nSpeedPlugin: model type {model_type} is not Gemma-3n: it changes nothing")
        if not new.enabled:
            configure(new)
            LOG.info("Gemma3nSpeedPlugin: gemma3n_fused_loss is off")
            return
        patched = patch_gemma3n(new)
        LOG.info(
            f"Gemma3nSpeedPlugin: fused loss patched into {', '.join(patched) or 'Gemma-3n (already)'} "
            f"(impl {new.impl}, chunk {new.chunk_tokens} tokens)"
        )

    def post_model_load(self, cfg: Any, model: nn.Module) -> None:
        inner = base_model(model)
        if arg(cfg, "gemma3n_fused_loss"):
            if is_patched(type(inner)):
                LOG.info(f"Gemma3nSpeedPlugin: {type(inner).__name__} trains with the fused loss (logits=None)")
            else:
                LOG.warning(f"Gemma3nSpeedPlugin: {type(inner).__name__} is not a patched Gemma-3n class")
        if arg(cfg, "gemma3n_compile_layers"):
            device = next(model.parameters()).device.type
            compile_decoder_layers(model, device)

    def post_trainer_create(self, cfg: Any, trainer: Any) -> None:
        if arg(cfg, "gemma3n_fused_loss") and is_patched(type(base_model(trainer.model))):
            skip_logits_in_loss_only_eval(trainer)
