"""Training throughput of Gemma-3n E2B QLoRA on one GPU: a plain baseline vs our recipe.

Runnable by anyone with a CUDA GPU and this repository installed (no hub access
needed). It builds a Gemma-3n with the real E2B text configuration and random
weights (training cost does not depend on the weights' values), a tokenizer
whose ids fit that vocabulary, and chat data in our JSONL format made from the
sample corpus (real Vietnamese solutions: realistic lengths, learnable). Then:

- ``baseline``: what any user could write: transformers + PEFT + bitsandbytes nf4,
  LoRA r=32 on q/k/v/o/gate/up/down, gradient checkpointing, AdamW, Trainer,
  loss on the solution tokens, padding to the longest in the batch; one run per
  ``--baseline-micro-batches``.
- ``production``: ``recipes/production.yml`` as shipped (with ``Gemma3nSpeedPlugin``:
  the fused loss and compiled decoder layers), through ``mathpal train`` with only the
  model path, step count, logging interval and output dir overridden (the data sits at
  the recipe's own ``data/`` path inside the work dir). Every row starts from an empty
  output folder of its own (a folder left by an earlier call is removed first: a
  leftover checkpoint would make the row resume instead of train).
- ``production:KEY=VALUE[;KEY=VALUE]``: the recipe with one change, for speed-ups.
- ``production-speed[:KEY=VALUE;…]``: the recipe with the speed plugin's switches off
  (``gemma3n_fused_loss`` and ``gemma3n_compile_layers`` false; the plugin list, and so
  ``RunStatePlugin``, unchanged), plus any changes. A variant whose recipe would lose
  ``RunStatePlugin`` is refused before any run.
- ``--peer unsloth``: Unsloth's own stack on the same model, data and Trainer as the
  baseline (``benchmarks/unsloth_peer.py``, in its own process; Unsloth is not a
  dependency of this repository and is imported nowhere else). Its batches are padded
  to one fixed length, the longest row it trains on: Unsloth compiles its layers for
  each new batch shape (~4 minutes each on an H200), so pad-to-longest batches would
  measure its compiler, not its training.

Per variant it prints tokens/s after warm-up (solution tokens, the ones trained
on, as Axolotl counts them, and all real tokens), peak GPU memory, MFU, the loss
at the first and last step, and the time to the first step, as one table;
``--json`` writes it too (after every row, so a call cut short keeps what finished).
Time to first step: from the row's process start (production rows, the Unsloth peer)
or model-load start (the in-process baseline, imports already paid) to the end of its
first optimizer step. A production row's is split in the JSON: ``trainer_start_s``
(Axolotl's start: imports, tokenising the data into its cache for the first row only,
loading and quantising the model), ``eval_s`` (the step-0 evaluation) and
``first_step_only_s``, the rest: the first optimizer step, with any compile.

    python -m benchmarks.train_throughput --work /tmp/bench --steps 40 \\
        --variants baseline,production,production-speed --baseline-micro-batches 8 --peer unsloth --json results.json

``--profile-micro-batches 2,1`` first profiles one training step of the baseline's
model at those numbers of full ``--seq-len`` rows (GPU only): kernel time by family
and the GPU's busy share of an unprofiled step (``benchmarks/profile_trace.py``).
A ``production:profiler_steps=…`` variant is summarised the same way from Axolotl's
own trace.

On a CPU, ``--shape tiny`` runs the same code on the tiny model (a smoke check
of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mathpal_common.atomic_files import write_text_atomic
from mathpal_train.train_log import metric_dicts, train_steps

REPO = Path(__file__).resolve().parents[1]

SPEED_PLUGIN = "mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin"
RUN_STATE_PLUGIN = "mathpal_train.run_state.RunStatePlugin"
# Production variants by name: the recipe changes each one starts from.
PRODUCTION_VARIANTS: dict[str, list[str]] = {
    "production": [],
    "production-speed": ["gemma3n_fused_loss=false", "gemma3n_compile_layers=false"],
}
DEFAULT_VARIANTS = "baseline,production,production-speed"
PEER_MICRO_BATCH = 16
PEER_RESULT = "UNSLOTH_PEER_RESULT "  # the peer's last output line: this, then its result as JSON
TRAINER_START = "Starting trainer..."  # Axolotl's log line once the data and the model are ready

SKIP_4BIT = ["lm_head", "correction_coefs", "prediction_coefs", "modality_router"]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SYSTEM = "Bạn là MathPal, gia sư toán thân thiện cho học sinh lớp 5 và lớp 6."


# --------------------------------------------------------------------------- model and data


def build_model(shape: str, out: Path, texts: list[str]) -> Path:
    """Random Gemma-3n (E2B text shape or tiny) plus tokenizer, saved like a real checkpoint."""
    import torch
    from transformers import Gemma3nForCausalLM, GenerationConfig

    from mathpal_train.tiny_model import (
        END_OF_TURN_ID,
        e2b_text_config,
        gemma3n_chat_template,
        tiny_text_config,
        train_tokenizer,
    )

    if (out / "config.json").exists():
        return out
    tokenizer = train_tokenizer(texts, 4096, gemma3n_chat_template())
    if shape == "e2b":
        config = e2b_text_config()
        device = "cuda"
    else:
        config = tiny_text_config(vocab_size=len(tokenizer))
        device = "cpu"
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = Gemma3nForCausalLM(config).to(dtype)
    with torch.no_grad():  # a zero <pad> row makes Gemma-3n's RMS norm gradients NaN
        for table in (model.model.embed_tokens, model.model.embed_tokens_per_layer):
            table.weight[config.pad_token_id].normal_(mean=0.0, std=0.02)
    # Ids past the per-layer table (E2B: the 256 audio/vision tokens) crash the text-only
    # class on CUDA when generated; a random model can generate them, so keep them out.
    beyond = list(range(config.vocab_size_per_layer_input, config.vocab_size)) or None
    model.generation_config = GenerationConfig(
        bos_token_id=2, eos_token_id=[1, END_OF_TURN_ID], pad_token_id=0, suppress_tokens=beyond
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


def write_data(work: Path, n: int) -> tuple[list[dict], list[str]]:
    """Chat rows in our JSONL format, from the sample corpus, at the recipe's data/ path."""
    from mathpal_commands.demo.corpus import generate_problems

    rows = []
    for i, p in enumerate(generate_problems(n, seed=11)):
        rows.append(
            {
                "id": f"b{i:05d}",
                "entry_id": f"{i:024x}",
                "grade_id": p.grade_id,
                "topic": p.topic,
                "answer": p.answer,
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": p.question},
                    {"role": "assistant", "content": p.solution},
                ],
            }
        )
    (work / "data").mkdir(parents=True, exist_ok=True)
    split = max(8, n // 50)
    for name, part in (("train", rows[split:]), ("validation", rows[:split])):
        with (work / "data" / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
    texts = [m["content"] for r in rows for m in r["messages"]]
    return rows[split:], texts


def training_rows(tokenizer, rows: list[dict], micro_batch: int, steps: int, seq_len: int) -> list[dict]:
    """The tokenised rows a ``measure_training`` run of ``steps`` x ``micro_batch`` trains on (one batch spare)."""
    return [tokenize(tokenizer, r, seq_len) for r in rows[: steps * micro_batch + micro_batch]]


def fixed_length(data: list[dict], multiple: int = 64) -> int:
    """One padded length for every batch of ``data``: its longest row, rounded up to ``multiple``."""
    longest = max(len(d["input_ids"]) for d in data)
    return -(-longest // multiple) * multiple


def collator(tokenizer, pad_to: int | None = None):
    """The baseline's collator: pad to the longest row of each batch, or to ``pad_to`` tokens always."""
    from transformers import DataCollatorForSeq2Seq

    if pad_to is None:
        return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    return DataCollatorForSeq2Seq(tokenizer, padding="max_length", max_length=pad_to, label_pad_token_id=-100)


def tokenize(tokenizer, row: dict, max_len: int) -> dict:
    """input_ids with labels on the assistant turn only (what both variants train on)."""

    def ids_of(messages: list[dict], generation_prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    ids = ids_of(row["messages"], False)[:max_len]
    n_prompt = len(ids_of(row["messages"][:2], True))
    labels = [-100] * min(n_prompt, len(ids)) + ids[n_prompt:]
    return {"input_ids": ids, "labels": labels}


# --------------------------------------------------------------------------- FLOPs and peak


def flops_per_token(config, seq_len: int) -> dict:
    """Model FLOPs per trained token: forward + activation-gradient backward (no weight grads:
    the base is frozen; LoRA's are negligible), without recomputation.

    Linear layers: 2 FLOPs per weight forward, 2 backward (dX = dY Wᵀ); KV-shared layers
    skip their k/v projections. Attention: QKᵀ and AV are 4·heads·head_dim·context FLOPs
    forward, twice that backward; causal context averages (s+1)/2 on global layers and
    the window-clipped mean on sliding ones.
    """
    import torch
    from transformers import Gemma3nForCausalLM

    with torch.device("meta"):
        model = Gemma3nForCausalLM(config)
    first_shared = config.num_hidden_layers - config.num_kv_shared_layers
    linear = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            match = re.search(r"layers\.(\d+)\.self_attn\.(k|v)_proj$", name)
            if match and int(match.group(1)) >= first_shared:
                continue
            linear += module.weight.numel()
    window = config.sliding_window
    sliding_ctx = sum(min(p + 1, window) for p in range(seq_len)) / seq_len
    full_ctx = (seq_len + 1) / 2
    per_ctx = 4 * config.num_attention_heads * config.head_dim
    attn_fwd = sum(per_ctx * (full_ctx if t == "full_attention" else sliding_ctx) for t in config.layer_types)
    total = 4 * linear + 3 * attn_fwd
    return {"linear_params": linear, "attention_fwd_flops": attn_fwd, "flops_per_token": total}


def matmul_tflops() -> float:
    """Measured bf16 dense matmul rate (8192³), the denominator of MFU."""
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    reps = 20
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192**3 * reps / (time.perf_counter() - start) / 1e12


# --------------------------------------------------------------------------- baseline


def baseline_model(model_dir: Path, cuda: bool, checkpointing_kwargs: dict | None = None):
    """The baseline's model: bnb nf4 (double quant, bf16 compute, Gemma-3n's small AltUp layers and
    the LM head kept out of 4-bit) prepared for k-bit training, with LoRA r=32 on q/k/v/o/gate/up/down.
    On a CPU: the plain model with the same LoRA (bitsandbytes 4-bit needs a GPU)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {}
    if cuda:
        kwargs = dict(
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True,
                llm_int8_skip_modules=SKIP_4BIT,
            ),
            device_map={"": 0},
            dtype=torch.bfloat16,
        )
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if cuda:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs=checkpointing_kwargs
        )
    return get_peft_model(
        model, LoraConfig(r=32, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    )


def run_baseline(model_dir: Path, rows: list[dict], micro_batch: int, steps: int, warmup: int, seq_len: int) -> dict:
    """transformers Trainer + PEFT + bnb nf4: the plain QLoRA a user writes from the docs."""
    import torch
    from transformers import AutoTokenizer

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    loading = time.time()
    model = baseline_model(model_dir, cuda)
    result = measure_training(
        model,
        tokenizer,
        rows,
        micro_batch,
        steps,
        warmup,
        seq_len,
        name=f"baseline mb={micro_batch}",
        out_dir=model_dir.parent / f"baseline-mb{micro_batch}",
        checkpointing=cuda,
    )
    if "first_step_at" in result:
        result["time_to_first_step_s"] = result["first_step_at"] - loading
    del model
    if cuda:
        torch.cuda.empty_cache()
    return result


def measure_training(
    model,
    tokenizer,
    rows: list[dict],
    micro_batch: int,
    steps: int,
    warmup: int,
    seq_len: int,
    name: str,
    out_dir: Path,
    checkpointing: bool,
    pad_to: int | None = None,
) -> dict:
    """Train ``model`` with the baseline's Trainer, collator and data; rates, peak, losses, first step's end.

    Shared by the baseline and the Unsloth peer, so the two differ only in the model
    they hand in (``checkpointing``: the Trainer's own gradient checkpointing; the peer
    brings its own) and in ``pad_to`` (every batch padded to that many tokens: one shape
    for a compiler; None pads to the longest row of each batch). Real tokens count the
    attention mask, so padding never counts. ``first_step_at`` is wall-clock
    (``time.time()``), comparable across processes.
    """
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    cuda = torch.cuda.is_available()
    tokenizer.padding_side = "right"
    data = training_rows(tokenizer, rows, micro_batch, steps, seq_len)
    counts: list[tuple[int, int]] = []
    base_collate = collator(tokenizer, pad_to)

    def collate(features):
        batch = base_collate(features)
        counts.append((int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum())))
        return batch

    times: list[float] = []
    first_step_at: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            if not first_step_at:
                first_step_at.append(time.time())

    args = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=micro_batch,
        max_steps=steps,
        learning_rate=2e-4,
        warmup_steps=min(5, steps // 4),
        lr_scheduler_type="cosine",
        optim="adamw_torch",
        bf16=cuda,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        use_cpu=not cuda,
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate, callbacks=[Clock()])
    start = time.perf_counter()
    try:
        trainer.train()
    except torch.cuda.OutOfMemoryError:
        return {"variant": name, "error": "out of memory"}
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    grad_norms = [h.get("grad_norm") for h in trainer.state.log_history if "loss" in h]
    measured = counts[warmup : len(times)]
    span = times[-1] - times[warmup - 1] if warmup else times[-1] - start
    result = {
        "variant": name,
        "real_tokens_per_s": sum(c[0] for c in measured) / span,
        "trained_tokens_per_s": sum(c[1] for c in measured) / span,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "grad_norm_finite": all(g is not None and g == g and abs(g) != float("inf") for g in grad_norms),
        "first_step_at": first_step_at[0],
    }
    del trainer
    return result


def axolotl_qlora_dtypes(model) -> None:
    """Put back into bf16 what Axolotl 0.19's loader puts back for (Q)LoRA after
    ``prepare_model_for_kbit_training`` upcast every non-4-bit weight to fp32: modules named
    ``*norm*``, the embedding tables (``embed_tokens``, and by substring Gemma-3n's per-layer
    ``embed_tokens_per_layer``) and ``lm_head``. A profile of the recipe's step must see the
    recipe's dtypes: an fp32 residual stream doubles the elementwise traffic."""
    import torch

    for name, module in model.named_modules():
        if "norm" in name or any(part in name for part in ("embed_tokens", "lm_head")):
            module.to(torch.bfloat16)


def profile_step(
    model_dir: Path, micro_batch: int, seq_len: int, trace: Path, steps: int = 4, speed: bool = False
) -> dict:
    """One training step of the baseline's model under torch.profiler (CUDA kernels only).

    Same libraries and kernels as the recipe (transformers' Gemma-3n, PEFT LoRA r=32,
    bitsandbytes nf4, gradient checkpointing, bf16 autocast) on ``micro_batch`` full rows
    of ``seq_len`` tokens, like a packed batch. The unprofiled step time is measured in
    the same process, so the GPU's busy share is not distorted by the profiler's overhead.

    ``speed``: the shipped recipe's step instead: Axolotl's dtypes (``axolotl_qlora_dtypes``),
    ``Gemma3nSpeedPlugin``'s fused loss (Liger on CUDA) and its compiled decoder layers, so
    the profile shows what bounds the compiled step. The first step (the compile) is timed
    apart, and the memory the model holds before any step is reported beside the peak.
    """
    from mathpal_train.gemma3n_speed.compile import compile_decoder_layers
    from mathpal_train.gemma3n_speed.patch import FusedLossSettings, patch_gemma3n, unpatch_gemma3n

    if speed:
        patch_gemma3n(FusedLossSettings(enabled=True))
    try:
        model = baseline_model(model_dir, cuda=True, checkpointing_kwargs={"use_reentrant": False})
        if speed:
            axolotl_qlora_dtypes(model)
            compile_decoder_layers(model, "cuda")
        return _profile(model, micro_batch, seq_len, trace, steps, speed)
    finally:
        if speed:
            unpatch_gemma3n()


def _profile(model, micro_batch: int, seq_len: int, trace: Path, steps: int, speed: bool) -> dict:
    """``profile_step``'s measurement on a built model (see there)."""
    import torch

    from benchmarks.profile_trace import summarize

    model.train()  # from_pretrained returns eval mode, where checkpointing and dropout are off
    model_gib = torch.cuda.memory_allocated() / 2**30
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, fused=True)
    ids = torch.randint(3, 4096, (micro_batch, seq_len), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first_step_s = time.perf_counter() - started
    step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - start) / steps
    torch.cuda.reset_peak_memory_stats()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    prof.export_chrome_trace(str(trace))
    summary = summarize(trace, step_s)
    summary.update(
        {
            "micro_batch": micro_batch,
            "seq_len": seq_len,
            "speed": speed,
            "tokens_per_s": micro_batch * seq_len / step_s,
            "first_step_s": first_step_s,
            "model_gib": model_gib,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        }
    )
    trace.unlink()
    return summary  # the model goes with the caller's frame; the caller empties the CUDA cache


# --------------------------------------------------------------------------- production (Axolotl)


def step_summary(steps: list[dict], warmup: int) -> dict:
    """Mean tokens/s per GPU after ``warmup`` steps (None if none logged), peak memory, finiteness."""
    rates = [e["tokens/train_per_sec_per_gpu"] for e in steps[warmup:] if e.get("tokens/train_per_sec_per_gpu")]
    return {
        "tokens_per_s": sum(rates) / len(rates) if rates else None,
        "peak_gib": max((e.get("memory/max_allocated (GiB)", 0) for e in steps), default=None),
        "grad_norm_finite": all(
            e["grad_norm"] == e["grad_norm"] and abs(e["grad_norm"]) != float("inf") for e in steps
        ),
    }


def production_argv(
    model_dir: Path, out: Path, steps: int, gpus: int = 1, flags: tuple[str, ...] = (), sets: list[str] | tuple = ()
) -> list[str]:
    """`mathpal train recipes/production.yml` as every GPU benchmark runs it: the random model, its own
    output folder, a log line per step, then the run's own ``flags`` and ``--set`` changes.

    ``--debug`` shows the job's whole output: the benchmarks time and read lines that the quiet
    terminal leaves to the log (Axolotl's "Starting trainer", the resume line, the plugin's lines)."""
    argv = [sys.executable, "-m", "mathpal_cli", "train", str(REPO / "recipes" / "production.yml"), "--debug"]
    argv += ["--num-gpus", str(gpus), *flags, "--max-steps", str(steps)]
    for change in (f"base_model={model_dir}", f"output_dir={out}", "logging_steps=1", *sets):
        argv += ["--set", change]
    return argv


def run_production(
    work: Path,
    model_dir: Path,
    steps: int,
    warmup: int,
    name: str,
    changes: list[str],
    real_per_trained: float,
    log_dir: Path | None = None,
) -> dict:
    """`mathpal train recipes/production.yml` with the benchmark's overrides (and a variant's changes)."""
    out = fresh_output_dir(work, name)
    argv = production_argv(model_dir, out, steps, sets=changes)
    started = time.perf_counter()
    run = stream_run(argv, cwd=work, log_path=log_dir / f"{out.name}.log" if log_dir else None)
    log = run.log
    (work / f"{out.name}.log").write_text(log)
    if run.returncode != 0:
        tail = log.strip().splitlines()[-3:]
        return {"variant": name, "error": f"exit {run.returncode}: {' | '.join(tail)[:300]}"}
    logs = train_steps(log)
    summary = step_summary(logs, warmup)
    trained = summary["tokens_per_s"] if summary["tokens_per_s"] is not None else float("nan")
    evals = [e["eval_loss"] for e in metric_dicts(log) if "eval_loss" in e]
    profile = summarize_profile(out, logs)
    return {
        "variant": name,
        "eval_loss_start": evals[0] if evals else None,
        "trained_tokens_per_s": trained,
        "real_tokens_per_s": trained * real_per_trained,
        "peak_gib": summary["peak_gib"],
        "loss_first": logs[0]["loss"] if logs else None,
        "loss_last": logs[-1]["loss"] if logs else None,
        "grad_norm_finite": summary["grad_norm_finite"],
        "wall_s": time.perf_counter() - started,
        "time_to_first_step_s": run.first_step_s,
        "trainer_start_s": run.trainer_start_s,
        "eval_s": run.eval_before_first_step_s,
        "first_step_only_s": first_step_only(run),
        **({"profile": profile} if profile else {}),
    }


def fresh_output_dir(work: Path, name: str) -> Path:
    """The row's own output folder, empty: what an earlier call left there is removed first.

    A machine kept warm between calls keeps ``work``; a checkpoint left from an earlier
    call would make ``mathpal train`` resume (the recipes auto-resume), and the row would
    time a few steps of someone else's run.
    """
    out = work / f"out-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
    if out.exists():
        print(f"{name}: removing {out.name} left by an earlier run (a benchmark row starts empty)", flush=True)
        shutil.rmtree(out)
    return out


def first_step_only(run: StreamedRun) -> float | None:
    """Seconds of the first step itself (any compile included): after Axolotl's start and step-0 eval."""
    if run.first_step_s is None or run.trainer_start_s is None:
        return None
    return run.first_step_s - run.trainer_start_s - run.eval_before_first_step_s


@dataclass(frozen=True)
class StreamedRun:
    """A finished subprocess: exit code, its merged output, and when its first training step ended."""

    returncode: int
    log: str
    first_step_s: float | None  # seconds from start to the first logged training step
    eval_before_first_step_s: float  # evaluation runtime logged before it (Axolotl's step-0 eval)
    trainer_start_s: float | None = None  # seconds from start to Axolotl's "Starting trainer" line


def first_step_marks(timed_lines: Iterable[tuple[float, str]]) -> tuple[float | None, float]:
    """(time of the first line holding a training step's metrics, eval runtime logged before it).

    A step's metrics are printed right after its optimizer step (``logging_steps: 1``),
    so the time the line arrives is the end of that step.
    """
    eval_s = 0.0
    for at, line in timed_lines:
        if train_steps(line):
            return at, eval_s
        for entry in metric_dicts(line):
            if isinstance(entry.get("eval_runtime"), float):
                eval_s += entry["eval_runtime"]
    return None, eval_s


def tee_lines(lines: Iterable[str], start: float, timed: list[tuple[float, str]], log: TextIO) -> None:
    """Keep each line of a job's output with its time since ``start``, and write it to ``log`` as it
    comes (a call cut short keeps the log)."""
    for line in lines:
        timed.append((time.perf_counter() - start, line))
        log.write(line)
        log.flush()


def stream_run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, log_path: Path | None = None
) -> StreamedRun:
    """Run ``argv`` with stdout and stderr merged, timing each output line as it arrives.

    ``PYTHONUNBUFFERED`` makes the job's Python processes write each line at once. With
    ``log_path`` each line also goes there as it comes: a call cut short keeps the log.
    """
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    timed: list[tuple[float, str]] = []
    with (
        open(log_path or os.devnull, "w", encoding="utf-8") as log,
        subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as proc,
    ):
        assert proc.stdout is not None
        tee_lines(proc.stdout, start, timed, log)
    first, eval_s = first_step_marks(timed)
    trainer_start = next((at for at, line in timed if TRAINER_START in line), None)
    return StreamedRun(proc.returncode, "".join(line for _, line in timed), first, eval_s, trainer_start)


# --------------------------------------------------------------------------- Unsloth peer


def unsloth_argv(work: Path, model_dir: Path, micro_batch: int, steps: int, warmup: int, seq_len: int) -> list[str]:
    """The peer's command: its own interpreter, so Unsloth is imported before transformers (as it must be)."""
    return [
        sys.executable,
        "-m",
        "benchmarks.unsloth_peer",
        "--work",
        str(work),
        "--model-dir",
        str(model_dir),
        "--micro-batch",
        str(micro_batch),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--seq-len",
        str(seq_len),
    ]


def unsloth_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The peer's environment: no usage statistics sent, telemetry off, nothing fetched from a hub.

    ``UNSLOTH_PYTHONPATH``, when set, goes first on the peer's ``PYTHONPATH`` only: Unsloth and
    the versions it pins (torchao, cut-cross-entropy) installed apart, never seen by Axolotl's rows.
    """
    env = dict(os.environ if base is None else base)
    env.update({"UNSLOTH_DISABLE_STATISTICS": "1", "AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"})
    if env.get("UNSLOTH_PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env["UNSLOTH_PYTHONPATH"], env.get("PYTHONPATH")) if p)
    return env


def run_unsloth_peer(
    work: Path, model_dir: Path, micro_batch: int, steps: int, warmup: int, seq_len: int, log_dir: Path | None = None
) -> dict:
    """The Unsloth row: ``benchmarks/unsloth_peer.py`` in a subprocess; its last line is the result as JSON."""
    name = f"unsloth mb={micro_batch}"
    spawned = time.time()
    argv = unsloth_argv(work, model_dir, micro_batch, steps, warmup, seq_len)
    log_path = (log_dir or work) / f"unsloth-peer-mb{micro_batch}.log"
    run = stream_run(argv, cwd=REPO, env=unsloth_env(), log_path=log_path)
    results = [line for line in run.log.splitlines() if line.startswith(PEER_RESULT)]
    if run.returncode != 0 or not results:
        tail = run.log.strip().splitlines()[-2:]
        return {"variant": name, "error": f"exit {run.returncode}: {' | '.join(tail)[:300]}"}
    result = json.loads(results[-1][len(PEER_RESULT) :])
    if "first_step_at" in result:
        result["time_to_first_step_s"] = result["first_step_at"] - spawned
    return {**result, "variant": name}


def summarize_profile(out: Path, logs: list[dict]) -> dict | None:
    """Kernel-time summary of Axolotl's profiler trace (a variant with ``profiler_steps``), if any.

    The unprofiled step time, to set the GPU's busy time against, comes from the steps
    logged before the profiled one: trained tokens in the step ÷ that step's tokens/s.
    """
    trace = out / "profiler_trace.json"
    if not trace.exists():
        return None
    from benchmarks.profile_trace import format_summary, summarize

    seconds = []
    for before, entry in zip(logs, logs[1:-1]):
        rate = entry.get("tokens/train_per_sec_per_gpu")
        if rate:
            seconds.append((entry["tokens/trainable"] - before["tokens/trainable"]) / rate)
    step_s = sorted(seconds)[len(seconds) // 2] if seconds else None
    summary = summarize(trace, step_s)
    print(format_summary(summary), flush=True)
    trace.unlink()  # hundreds of MB; the summary is what is kept
    return summary


# --------------------------------------------------------------------------- main


def production_changes(variant: str) -> list[str]:
    """The recipe changes of a production variant: its name's (``production-speed`` turns the speed
    plugin's switches off), then the ``KEY=VALUE`` items after ``:``, separated by ``;``.

    Refused (``ValueError``) when the resolved recipe would lose ``RunStatePlugin``: without it the
    run is never marked finished, and the row's adapter cannot be evaluated.
    """
    from mathpal_train.recipes import load_recipe, parse_set, resolve_recipe

    name, _, extra = variant.partition(":")
    if name not in PRODUCTION_VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r}: use baseline, {', '.join(PRODUCTION_VARIANTS)}, "
            "or one of those with :key=value;key=value"
        )
    changes = [*PRODUCTION_VARIANTS[name], *(item for item in extra.split(";") if item.strip())]
    recipe, _ = resolve_recipe(load_recipe(REPO / "recipes" / "production.yml"), {}, parse_set(changes))
    if RUN_STATE_PLUGIN not in (recipe.get("plugins") or []):
        raise ValueError(f"variant {variant!r} drops {RUN_STATE_PLUGIN} from plugins: keep it in the list")
    return changes


def variant_list(text: str) -> list[str]:
    """``--variants``: a comma list of ``baseline`` and production variants (checked before any run)."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    for variant in variants:
        if variant != "baseline":
            production_changes(variant)
    return variants


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(".mathpal/bench/train"))
    parser.add_argument("--shape", choices=["e2b", "tiny"], default="e2b")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the rate")
    parser.add_argument("--problems", type=int, default=4000)
    parser.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help="comma list of baseline, production, production-speed; 'production:key=value;key=value' "
        "for one change (';' between keys)",
    )
    parser.add_argument("--baseline-micro-batches", default="8")
    parser.add_argument("--peer", choices=["unsloth"], help="also run a peer stack on the same model and data")
    parser.add_argument(
        "--peer-micro-batches", default=str(PEER_MICRO_BATCH), help="comma list: one peer run per micro batch"
    )
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--log-dir", type=Path, help="also copy each Axolotl run's log here")
    parser.add_argument(
        "--profile-micro-batches",
        default="",
        help="comma list: profile one step of the baseline's model at these micro batches of --seq-len rows (GPU only)",
    )
    parser.add_argument(
        "--profile-speed",
        action="store_true",
        help="profile the shipped recipe's step instead: Axolotl's dtypes, the plugin's fused loss and compiled layers",
    )
    args = parser.parse_args(argv)
    try:
        args.variants = variant_list(args.variants)
    except ValueError as err:
        parser.error(str(err))
    return args


def _number(value, spec: str) -> str:
    """``value`` formatted, or ``-`` when it is missing or NaN."""
    return format(value, spec) if isinstance(value, (int, float)) and not math.isnan(value) else "-"


def format_table(results: list[dict]) -> str:
    """The results as a text table: one row per variant, an error row as its message."""
    header = (
        f"{'variant':<44} {'trained tok/s':>13} {'real tok/s':>10} {'peak GiB':>8} {'MFU':>6} "
        f"{'loss first→last':>17} {'finite':>6} {'1st step s':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['variant']:<44} {r['error']}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"
        peak_gib = _number(r.get("peak_gib") or None, ".1f")
        losses = f"{_number(r.get('loss_first'), '.3f'):>8}→{_number(r.get('loss_last'), '.3f'):<8}"
        lines.append(
            f"{r['variant']:<44} {_number(r.get('trained_tokens_per_s'), '.0f'):>13} "
            f"{_number(r.get('real_tokens_per_s'), '.0f'):>10} {peak_gib:>8} {mfu:>6} {losses:>17} "
            f"{r.get('grad_norm_finite')!s:>6} {_number(r.get('time_to_first_step_s'), '.1f'):>10}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    import torch

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows, texts = write_data(work, args.problems)
    model_dir = build_model(args.shape, work / f"gemma3n-{args.shape}", texts)
    print(f"model and data ready in {time.perf_counter() - t0:.0f}s: {model_dir}", flush=True)

    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    flops = flops_per_token(config, args.seq_len)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sample = [tokenize(tokenizer, r, args.seq_len) for r in rows[:500]]
    real_per_trained = sum(len(s["input_ids"]) for s in sample) / sum(
        sum(label != -100 for label in s["labels"]) for s in sample
    )
    peak = matmul_tflops() if torch.cuda.is_available() else None
    print(
        f"FLOPs/token {flops['flops_per_token'] / 1e9:.2f} G (linear params {flops['linear_params'] / 1e9:.3f} B); "
        f"real/trained tokens {real_per_trained:.2f}; bf16 matmul {peak and round(peak)} TFLOP/s",
        flush=True,
    )

    profiles = []
    results = []
    summary = {
        "shape": args.shape,
        "steps": args.steps,
        "warmup": args.warmup,
        "seq_len": args.seq_len,
        "flops": flops,
        "real_per_trained": real_per_trained,
        "matmul_tflops": peak,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "results": results,
        "profiles": profiles,
    }

    def save() -> None:
        """The whole summary to ``--json`` (after every profile and row)."""
        if args.json:
            write_text_atomic(args.json, json.dumps(summary, indent=2))

    for mb in [int(x) for x in args.profile_micro_batches.split(",") if x.strip()]:
        from benchmarks.profile_trace import format_summary

        trace = work / f"trace-mb{mb}.json"
        profiles.append(profile_step(model_dir, mb, args.seq_len, trace, speed=args.profile_speed))
        torch.cuda.empty_cache()
        done = profiles[-1]
        print(
            f"\n== profile{' (speed plugin, compiled)' if args.profile_speed else ''}: micro batch {mb} x "
            f"{args.seq_len} tokens, {done['tokens_per_s']:.0f} tokens/s, first step {done['first_step_s']:.1f} s, "
            f"model {done['model_gib']:.1f} GiB, peak {done['peak_gib']:.1f} GiB\n" + format_summary(done),
            flush=True,
        )
        save()  # a call cut short keeps the profiles done

    def record(result: dict) -> None:
        """Keep a row, with its MFU, and write the JSON at once (a call cut short keeps the rows done)."""
        if peak and result.get("real_tokens_per_s"):
            result["mfu"] = flops["flops_per_token"] * result["real_tokens_per_s"] / (peak * 1e12)
        results.append(result)
        print(json.dumps(result), flush=True)
        save()

    for variant in args.variants:
        if variant == "baseline":
            for mb in [int(x) for x in args.baseline_micro_batches.split(",")]:
                record(run_baseline(model_dir, rows, mb, args.steps, args.warmup, args.seq_len))
        else:
            changes = production_changes(variant)
            record(
                run_production(
                    work, model_dir, args.steps, args.warmup, variant, changes, real_per_trained, args.log_dir
                )
            )
    if args.peer == "unsloth":
        for mb in [int(x) for x in args.peer_micro_batches.split(",")]:
            record(run_unsloth_peer(work, model_dir, mb, args.steps, args.warmup, args.seq_len, args.log_dir))

    print("\n" + format_table(results))


if __name__ == "__main__":
    main()
