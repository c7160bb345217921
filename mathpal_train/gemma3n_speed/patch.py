"""Class-level patch of Gemma-3n's two causal-LM forwards: with labels in training, no logits.

``Gemma3nForCausalLM`` (the text tower: our tiny model, ``model_type: Gemma3nForCausalLM``
recipes) and ``Gemma3nForConditionalGeneration`` (what ``google/gemma-3n-E2B-it`` loads
as) both end in ``lm_head`` -> soft-cap -> ``self.loss_function``. The patched forwards
run the same decoder call and hand the final hidden states to ``fused_causal_lm_loss``.

When the fused path is taken (``skip_logits``, Liger's and transformers' name for it):
``labels`` given, and ``skip_logits=True`` or, left unset, the model in train mode.
Then the output's ``loss`` is the loss and ``logits`` is ``None``. Everything else,
generation, eval without ``skip_logits``, no labels, a custom loss function, an LM
head that is not a plain ``nn.Linear``, runs the original forward unchanged.

The patch is per class (so it applies to models loaded after it and before it),
idempotent, and reversible with ``unpatch_gemma3n``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Gemma3nForCausalLM, Gemma3nForConditionalGeneration
from transformers.loss.loss_utils import ForCausalLMLoss
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.gemma3n.modeling_gemma3n import Gemma3nCausalLMOutputWithPast
from transformers.utils.generic import can_return_tuple

from mathpal_train.gemma3n_speed.loss import DEFAULT_CHUNK_TOKENS, Impl, fused_causal_lm_loss

LOG = logging.getLogger("axolotl.mathpal.gemma3n_speed")
PATCHED_CLASSES = (Gemma3nForCausalLM, Gemma3nForConditionalGeneration)


@dataclass(frozen=True)
class FusedLossSettings:
    """What the patched forwards do; set by the plugin from the recipe's ``gemma3n_*`` keys."""

    enabled: bool = True
    impl: Impl = "auto"
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS


_settings = FusedLossSettings()
# class -> its forward before the patch; a class is patched exactly when it is a key here.
_ORIGINAL: dict[type, Callable] = {}
_WARNED: set[str] = set()


def settings() -> FusedLossSettings:
    """The settings the patched forwards use now."""
    return _settings


def configure(new_settings: FusedLossSettings) -> None:
    """Apply ``new_settings`` to the patched forwards (``enabled=False`` makes the patch inert)."""
    global _settings
    _settings = new_settings


def patch_gemma3n(new_settings: FusedLossSettings | None = None) -> list[str]:
    """Patch both classes' ``forward`` (once) and apply ``new_settings``; returns the class names patched now."""
    if new_settings is not None:
        configure(new_settings)
    patched = []
    for cls, forward in zip(PATCHED_CLASSES, (causal_lm_forward, conditional_generation_forward), strict=True):
        if cls not in _ORIGINAL:
            _ORIGINAL[cls] = cls.forward
            cls.forward = forward
            patched.append(cls.__name__)
    return patched


def unpatch_gemma3n() -> None:
    """Restore the original forwards and default settings (tests compare against the unpatched model)."""
    global _settings
    for cls, forward in list(_ORIGINAL.items()):
        cls.forward = forward
        del _ORIGINAL[cls]
    _settings = FusedLossSettings()


def is_patched(cls: type) -> bool:
    """Whether ``cls`` (a Gemma-3n class or a subclass) runs a patched forward."""
    return cls.forward in (causal_lm_forward, conditional_generation_forward)


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        LOG.warning(message)


def head_weight(model: nn.Module) -> torch.Tensor | None:
    """The LM head's weight when the fused loss can stand in for the head, else None (with one warning).

    Not when the head is wrapped (LoRA or ``modules_to_save`` on lm_head, 4-bit), has a
    bias, or its weight is sharded away (DeepSpeed ZeRO-3, FSDP): the fused loss reads
    the weight directly, where only the module's own forward would gather or adapt it.
    """
    head = model.lm_head
    weight = getattr(head, "weight", None)
    plain = type(head).forward is nn.Linear.forward and isinstance(head, nn.Linear) and head.bias is None
    if not plain or weight is None or weight.numel() == 0 or hasattr(weight, "ds_id") or _is_dtensor(weight):
        _warn_once("head", f"Gemma-3n fused loss off: lm_head is {type(head).__name__} (not a whole plain Linear)")
        return None
    return weight


def _is_dtensor(tensor: torch.Tensor) -> bool:
    return type(tensor).__name__ == "DTensor"


def _fused_wanted(model: nn.Module, labels, skip_logits: bool | None, logits_to_keep) -> bool:
    """Liger's rule (``skip_logits`` defaults to training with labels), plus what keeps it exact."""
    if labels is None or not _settings.enabled:
        return False
    if not (model.training if skip_logits is None else skip_logits):
        return False
    if not isinstance(logits_to_keep, int) or logits_to_keep != 0:
        return False  # a sliced head with labels is the caller's own business: leave it to the original
    if model.loss_function is not ForCausalLMLoss:
        _warn_once("loss", "Gemma-3n fused loss off: the model's loss_function is not transformers' ForCausalLMLoss")
        return False
    return True


def _fused_loss(hidden_states: torch.Tensor, weight: torch.Tensor, labels, softcap, kwargs: dict) -> torch.Tensor:
    return fused_causal_lm_loss(
        hidden_states, weight, labels, softcap, impl=_settings.impl, chunk_tokens=_settings.chunk_tokens, **kwargs
    )


@can_return_tuple
def causal_lm_forward(
    self: Gemma3nForCausalLM,
    input_ids: torch.LongTensor | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.LongTensor | None = None,
    past_key_values=None,
    inputs_embeds: torch.FloatTensor | None = None,
    labels: torch.LongTensor | None = None,
    use_cache: bool | None = None,
    logits_to_keep: int | torch.Tensor = 0,
    skip_logits: bool | None = None,
    **kwargs,
) -> CausalLMOutputWithPast:
    """``Gemma3nForCausalLM.forward``; with the fused loss, ``logits`` is None (see the module docstring)."""
    args = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "past_key_values": past_key_values,
        "inputs_embeds": inputs_embeds,
        "use_cache": use_cache,
    }
    weight = head_weight(self) if _fused_wanted(self, labels, skip_logits, logits_to_keep) else None
    if weight is None:
        return _ORIGINAL[Gemma3nForCausalLM](self, **args, labels=labels, logits_to_keep=logits_to_keep, **kwargs)
    outputs = self.model(**args, **kwargs)
    loss = _fused_loss(outputs.last_hidden_state, weight, labels, self.config.final_logit_softcapping, kwargs)
    return CausalLMOutputWithPast(
        loss=loss,
        logits=None,
        past_key_values=outputs.past_key_values,
        hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
    )


@can_return_tuple
def conditional_generation_forward(
    self: Gemma3nForConditionalGeneration,
    input_ids: torch.LongTensor | None = None,
    pixel_values: torch.FloatTensor | None = None,
    input_features: torch.FloatTensor | None = None,
    attention_mask: torch.Tensor | None = None,
    input_features_mask: torch.Tensor | None = None,
    position_ids: torch.LongTensor | None = None,
    past_key_values=None,
    token_type_ids: torch.LongTensor | None = None,
    inputs_embeds: torch.FloatTensor | None = None,
    labels: torch.LongTensor | None = None,
    use_cache: bool | None = None,
    logits_to_keep: int | torch.Tensor = 0,
    skip_logits: bool | None = None,
    **lm_kwargs,
) -> Gemma3nCausalLMOutputWithPast:
    """``Gemma3nForConditionalGeneration.forward``; with the fused loss, ``logits`` is None."""
    args = {
        "input_ids": input_ids,
        "pixel_values": pixel_values,
        "input_features": input_features,
        "attention_mask": attention_mask,
        "input_features_mask": input_features_mask,
        "position_ids": position_ids,
        "past_key_values": past_key_values,
        "token_type_ids": token_type_ids,
        "inputs_embeds": inputs_embeds,
        "labels": labels,
        "use_cache": use_cache,
    }
    weight = head_weight(self) if _fused_wanted(self, labels, skip_logits, logits_to_keep) else None
    if weight is None:
        original = _ORIGINAL[Gemma3nForConditionalGeneration]
        return original(self, **args, logits_to_keep=logits_to_keep, **lm_kwargs)
    # The original passes labels to the multimodal model too, and asks it for a dict.
    outputs = self.model(**args, return_dict=True, **lm_kwargs)
    softcap = self.config.get_text_config().final_logit_softcapping
    loss = _fused_loss(outputs.last_hidden_state, weight, labels, softcap, lm_kwargs)
    return Gemma3nCausalLMOutputWithPast(
        loss=loss,
        logits=None,
        past_key_values=outputs.past_key_values,
        hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
        image_hidden_states=outputs.image_hidden_states,
        audio_hidden_states=outputs.audio_hidden_states,
    )
