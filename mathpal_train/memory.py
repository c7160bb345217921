"""Peak GPU memory of a training run, estimated from its recipe before anything loads.

A card that is too small otherwise shows up as out-of-memory minutes into a run, after
the model has loaded. The estimate adds what a QLoRA step of Gemma-3n holds at its peak,
per GPU (docs/memory.md has the formula and its calibration):

* the frozen base weights: 4-bit (nf4, with its block scales) or 8-bit for the quantised
  Linear layers, the compute dtype for everything else (the 262k-row embedding tables are
  never quantised);
* the adapter: LoRA weights, gradients and optimizer state in fp32;
* per token of the micro batch: the activations kept for the backward pass (with
  checkpointing: each layer's input, plus one layer being recomputed) and the copies of
  the vocabulary-wide logits that the loss holds at once.

The parameter counts come from the model itself, built on PyTorch's meta device (no
weights, no download): a local folder's config.json, or for the hub's Gemma-3n the
architecture numbers in ``mathpal_train.tiny_model``. Four constants are measured, not
derived: the logit copies, the activation bytes of one layer, the logit copies under
activation offloading, and the working set of a fused (logits-free) loss; they are fitted to
the H100 and H200 runs of docs/performance.md, which the estimate matches within 15 %
(``tests/mathpal_train/test_memory.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

GIB = 2**30

# Fitted on docs/performance.md's H100 rows (docs/memory.md shows how).
# Vocabulary-wide logit tensors alive at the loss, in 2-byte copies per token: the bf16
# logits, Gemma-3n's soft-cap intermediates, the fp32 upcast and log-softmax (2 each), grads.
LOGIT_COPIES = 7.70
# The same under activation offloading: only the loss's own transients stay on the GPU.
OFFLOAD_LOGIT_COPIES = 5.48
# Activations one decoder layer keeps for its backward pass, per token, in copies of
# (AltUp streams x hidden + intermediate) values at the compute dtype.
LAYER_ACTIVATION_COPIES = 11.0
# A fused loss (Gemma3nSpeedPlugin's, Liger's or Cut Cross Entropy's) keeps no logits, but a run
# with it holds this much more per token than its layers' activations, in layer working sets
# (the one above); fitted on the plugin's 4 x 2 run, not broken down further.
FUSED_LOSS_LAYER_SETS = 1.95
# What the allocator holds beyond the tensors counted here (cuBLAS workspaces, a dequantised weight).
OVERHEAD_GIB = 0.09
# The estimate's measured accuracy, printed with it.
TOLERANCE = 0.15
# One nf4 weight: 4 bits, plus its block's absmax (fp32 per 64 weights, or with double
# quantisation an 8-bit absmax per 64 and an fp32 scale per 256 blocks).
NF4_BYTES = 0.5 + 4 / 64
NF4_DOUBLE_QUANT_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
# One LLM.int8 weight (its row's fp32 scale, spread over 2048+ weights, is left out).
INT8_BYTES = 1.0
# Modules transformers' bitsandbytes integration never quantises.
ALWAYS_KEPT = ("lm_head",)

# The hub's Gemma-3n, offline: the text tower's architecture (tiny_model.E2B_SHAPE; transformers'
# Gemma3nTextConfig defaults are E4B's).
HUB_SHAPES = {"gemma-3n-e2b": "e2b", "gemma-3n-e4b": "e4b"}
SPEED_PLUGIN = "mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin"


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on in a model: its parameters by kind and the sizes activations scale with."""

    source: str
    params: tuple[tuple[str, str, int], ...]  # (module name, "linear" | "embedding" | "other", numel), tied once
    linear: tuple[tuple[str, int, int], ...]  # (module name, in_features, out_features) of every nn.Linear
    layers: int
    hidden: int
    intermediate: float  # mean over layers
    vocab: int
    streams: int  # AltUp inputs (1 for a model without AltUp)

    @property
    def total_params(self) -> int:
        return sum(n for _, _, n in self.params)


@dataclass(frozen=True)
class TrainSettings:
    """What a run does that costs memory (``settings_from_recipe`` reads them from a recipe)."""

    micro_batch: int
    row_tokens: int
    row_tokens_exact: bool = True  # False: rows are padded to the longest, row_tokens is the cap
    gpus: int = 1
    quant: str | None = None  # "nf4", "int8" or None
    double_quant: bool = True
    skip_modules: tuple[str, ...] = ()
    compute_bytes: int = 2  # bf16/fp16; 4 for an fp32 (CPU) recipe
    lora_r: int | None = None
    lora_targets: str | tuple[str, ...] | None = None
    lora_target_linear: bool = False
    checkpointing: bool = True
    offloading: bool = False
    chunked_ce: bool = False
    fused_ce: bool = False  # a loss that never materialises the logits (the speed plugin, Liger FLCE, CCE)
    optimizer_state_bytes: int = 8  # AdamW: two fp32 moments; 8-bit optimizers: 2
    zero_stage: int = 0
    frozen_fp32: bool = False  # plain PEFT prepare_model_for_kbit_training: every unquantised weight in fp32


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one GPU, by part, in GiB."""

    weights: float
    adapter: float
    activations: float
    logits: float  # the loss's vocabulary-wide tensors, or a fused loss's working set
    overhead: float
    per_row: float  # what one more row of the micro batch adds
    settings: TrainSettings

    @property
    def total(self) -> float:
        return self.weights + self.adapter + self.activations + self.logits + self.overhead

    def line(self) -> str:
        s = self.settings
        bound = "" if s.row_tokens_exact else f"at most (rows padded to the longest, up to {s.row_tokens} tokens) "
        return (
            f"peak GPU memory:  {bound}~{self.total:.1f} GiB per GPU (±{TOLERANCE:.0%}): weights {self.weights:.1f}, "
            f"adapter and optimizer {self.adapter:.1f}, activations {self.activations:.1f}, "
            f"{'fused loss' if s.fused_ce else 'logits'} {self.logits:.1f}; "
            f"+{self.per_row:.1f} GiB per row of the micro batch (docs/memory.md)"
        )


# --------------------------------------------------------------------------- the model


def gemma3n_hub_config(kind: str):
    """The text config of the hub's Gemma-3n E2B or E4B, built offline."""
    from transformers import Gemma3nTextConfig

    from mathpal_train.tiny_model import e2b_text_config

    return e2b_text_config() if kind == "e2b" else Gemma3nTextConfig()


def model_config(base_model: str):
    """The (text) config of ``base_model``: a local folder's config.json, or the hub's Gemma-3n offline.

    A ``ValueError`` says why there is none (a hub model other than Gemma-3n: there is no network).
    """
    folder = Path(base_model)
    if (folder / "config.json").is_file():
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(folder)
        return getattr(config, "text_config", None) or config
    for marker, kind in HUB_SHAPES.items():
        if marker in base_model.lower():
            return gemma3n_hub_config(kind)
    if folder.is_dir():
        raise ValueError(f"{base_model} has no config.json")
    raise ValueError(f"no architecture known offline for {base_model}: pass a local model folder")


@lru_cache(maxsize=8)
def model_shape(base_model: str) -> ModelShape:
    """Parameter counts and sizes of ``base_model``, from the model built on the meta device."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model_config(base_model)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params, linear, seen = [], [], set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            linear.append((name, module.in_features, module.out_features))
            kind = "linear"
        elif isinstance(module, torch.nn.Embedding):  # Gemma-3n's scaled embeddings subclass it
            kind = "embedding"
        else:
            kind = "other"
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue  # a tied lm_head is the embedding's weight
            seen.add(id(param))
            params.append((name, kind if param_name == "weight" else "other", param.numel()))
    intermediate = getattr(config, "intermediate_size", config.hidden_size * 4)
    if isinstance(intermediate, (list, tuple)):
        intermediate = sum(intermediate) / len(intermediate)
    return ModelShape(
        source=base_model,
        params=tuple(params),
        linear=tuple(linear),
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        intermediate=float(intermediate),
        vocab=config.vocab_size,
        streams=getattr(config, "altup_num_inputs", 1) or 1,
    )


# --------------------------------------------------------------------------- the recipe


def zero_stage(deepspeed: Any) -> int:
    """The ZeRO stage of a recipe's DeepSpeed config file (0 without one, or when it cannot be read)."""
    if not deepspeed:
        return 0
    try:
        return int(json.loads(Path(str(deepspeed)).read_text()).get("zero_optimization", {}).get("stage", 0))
    except (OSError, ValueError):
        return 0


def fused_loss(cfg: dict[str, Any], stage: int) -> bool:
    """Whether the recipe's loss never builds the logits: the speed plugin's fused loss (on by default
    when the plugin is named; off under ZeRO-3 and FSDP, where lm_head is sharded and the plugin
    falls back to the unfused loss), or Axolotl's Cut Cross Entropy or Liger fused cross-entropy."""
    plugin = SPEED_PLUGIN in (cfg.get("plugins") or []) and cfg.get("gemma3n_fused_loss") is not False
    if plugin and (stage >= 3 or cfg.get("fsdp") or cfg.get("fsdp_config")):
        plugin = False
    return plugin or bool(cfg.get("cut_cross_entropy") or cfg.get("liger_fused_linear_cross_entropy"))


def settings_from_recipe(cfg: dict[str, Any], gpus: int = 1) -> TrainSettings:
    """The memory-relevant settings of an Axolotl recipe (defaults as Axolotl applies them)."""
    bnb = cfg.get("bnb_config_kwargs") or {}
    quant = "nf4" if cfg.get("load_in_4bit") else "int8" if cfg.get("load_in_8bit") else None
    packed = bool(cfg.get("sample_packing")) or bool(cfg.get("pad_to_sequence_len"))
    targets = cfg.get("lora_target_modules")
    optimizer = str(cfg.get("optimizer") or "")
    stage = zero_stage(cfg.get("deepspeed"))
    return TrainSettings(
        micro_batch=int(cfg.get("micro_batch_size") or 1),
        row_tokens=int(cfg.get("sequence_len") or 2048),
        row_tokens_exact=packed,
        gpus=gpus,
        quant=quant,
        double_quant=bool(bnb.get("bnb_4bit_use_double_quant", True)),
        # Axolotl 0.19 passes bnb_config_kwargs to 4-bit loading only.
        skip_modules=tuple(bnb.get("llm_int8_skip_modules") or ()) if quant == "nf4" else (),
        compute_bytes=2 if (cfg.get("bf16") or cfg.get("fp16") or quant) else 4,
        lora_r=int(cfg["lora_r"]) if cfg.get("adapter") and cfg.get("lora_r") else None,
        lora_targets=targets if isinstance(targets, str) or targets is None else tuple(targets),
        lora_target_linear=bool(cfg.get("lora_target_linear")),
        checkpointing=bool(cfg.get("gradient_checkpointing")),
        offloading=bool(cfg.get("activation_offloading")) or cfg.get("gradient_checkpointing") == "offload",
        chunked_ce=bool(cfg.get("chunked_cross_entropy")),
        fused_ce=fused_loss(cfg, stage),
        optimizer_state_bytes=2 if "8bit" in optimizer else 8,
        zero_stage=stage,
    )


# --------------------------------------------------------------------------- the estimate


def _matches(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == m or name.endswith(f".{m}") or f".{m}." in f".{name}." for m in modules)


def lora_params(shape: ModelShape, settings: TrainSettings) -> int:
    """Trainable LoRA parameters: r x (in + out) for each Linear that PEFT's own matching picks."""
    if not settings.lora_r:
        return 0
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    if settings.lora_target_linear:
        names = [name for name, _, _ in shape.linear if not _matches(name, ALWAYS_KEPT)]
        return sum(settings.lora_r * (i + o) for name, i, o in shape.linear if name in names)
    targets = settings.lora_targets
    config = LoraConfig(r=settings.lora_r, target_modules=list(targets) if isinstance(targets, tuple) else targets)
    return sum(settings.lora_r * (i + o) for name, i, o in shape.linear if check_target_module_exists(config, name))


def weight_bytes(shape: ModelShape, settings: TrainSettings) -> float:
    """The frozen base weights: quantised Linear layers, and everything else at the compute dtype."""
    kept_bytes = 4 if settings.frozen_fp32 else settings.compute_bytes
    quant_bytes = {
        "nf4": NF4_DOUBLE_QUANT_BYTES if settings.double_quant else NF4_BYTES,
        "int8": INT8_BYTES,
    }.get(settings.quant or "")
    skipped = (*ALWAYS_KEPT, *settings.skip_modules)
    total = 0.0
    for name, kind, numel in shape.params:
        quantised = quant_bytes is not None and kind == "linear" and not _matches(name, skipped)
        total += numel * (quant_bytes if quantised else kept_bytes)
    return total


def estimate_peak(shape: ModelShape, settings: TrainSettings) -> MemoryEstimate:
    """Peak memory of one GPU for a training step of ``settings`` on ``shape`` (docs/memory.md)."""
    s = settings

    def shard(stage: int) -> int:
        """How many GPUs share a tensor that ZeRO shards from ``stage`` on."""
        return max(s.gpus, 1) if s.zero_stage >= stage else 1

    weights = weight_bytes(shape, s) / shard(3)
    trainable = lora_params(shape, s)
    if trainable:  # fp32 LoRA weights, their gradients, the optimizer's moments
        adapter = trainable * (4 / shard(3) + 4 / shard(2) + s.optimizer_state_bytes / shard(1))
    else:  # full fine-tune: gradients and optimizer moments of every weight, at its dtype
        moments = s.optimizer_state_bytes * s.compute_bytes / 4
        adapter = shape.total_params * (s.compute_bytes / shard(2) + moments / shard(1))
    act = s.compute_bytes
    layer = LAYER_ACTIVATION_COPIES * (shape.streams * shape.hidden + shape.intermediate) * act
    if s.offloading:
        per_token_act = layer
    elif s.checkpointing:
        per_token_act = shape.layers * shape.streams * shape.hidden * act + layer
    else:
        per_token_act = shape.layers * layer
    if s.fused_ce:
        per_token_logits = FUSED_LOSS_LAYER_SETS * layer
    else:
        copies = OFFLOAD_LOGIT_COPIES if s.offloading else LOGIT_COPIES
        per_token_logits = copies * shape.vocab * act - (shape.vocab * 4 if s.chunked_ce else 0)
    tokens = s.micro_batch * s.row_tokens
    return MemoryEstimate(
        weights=weights / GIB,
        adapter=adapter / GIB,
        activations=tokens * per_token_act / GIB,
        logits=tokens * per_token_logits / GIB,
        overhead=OVERHEAD_GIB,
        per_row=s.row_tokens * (per_token_act + per_token_logits) / GIB,
        settings=s,
    )


# --------------------------------------------------------------------------- what validate prints


def visible_gpu_gib() -> float | None:
    """Total memory of the first visible GPU, None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / GIB


def memory_lines(cfg: dict[str, Any], gpus: int = 1, gpu_memory: float | None = None) -> tuple[list[str], str | None]:
    """The estimate's summary line and, when it does not fit, a one-line warning.

    The card compared against is ``gpu_memory`` GiB, else the visible GPU; with neither the
    line says how to check one. An estimate that cannot be made (no config offline) is a
    line saying why, never an error: validation does not depend on it.
    """
    try:
        shape = model_shape(str(cfg.get("base_model", "")))
    except ValueError as err:
        return [f"peak GPU memory:  not estimated ({err})"], None
    except Exception as err:  # a config transformers cannot build: the estimate must not fail validation
        return [f"peak GPU memory:  not estimated ({type(err).__name__}: {err})"], None
    estimate = estimate_peak(shape, settings_from_recipe(cfg, gpus))
    lines = [estimate.line()]
    card, where = (gpu_memory, "--gpu-memory") if gpu_memory else (visible_gpu_gib(), "the visible GPU")
    if card is None:
        lines.append("                  (pass --gpu-memory GIB to check it against a card)")
        return lines, None
    return lines, fit_warning(estimate, card, where)


def fit_warning(estimate: MemoryEstimate, card_gib: float, where: str) -> str | None:
    """One line when the estimate exceeds the card, or comes within the estimate's tolerance of it."""
    total = estimate.total
    advice = (
        f"lower micro_batch_size (each row adds ~{estimate.per_row:.1f} GiB; raise gradient_accumulation_steps to keep "
        "the effective batch) or see docs/memory.md"
    )
    if total > card_gib:
        return f"estimated peak {total:.1f} GiB exceeds the {card_gib:.1f} GiB of {where}: {advice}"
    if total > card_gib * (1 - TOLERANCE):
        return (
            f"estimated peak {total:.1f} GiB is within the estimate's ±{TOLERANCE:.0%} of the {card_gib:.1f} GiB "
            f"of {where}: it may not fit; {advice}"
        )
    return None
