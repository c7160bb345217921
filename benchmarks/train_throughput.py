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
- ``production``: ``recipes/production.yml`` as shipped, through ``mathpal train``
  with only the model path, step count, logging interval and output dir overridden
  (the data sits at the recipe's own ``data/`` path inside the work dir).
- ``production:KEY=VALUE[,KEY=VALUE]``: the recipe with one change, for speed-ups.

Per variant it prints tokens/s after warm-up (solution tokens, the ones trained
on, as Axolotl counts them, and all real tokens), peak GPU memory, MFU, and the
loss at the first and last step, as one table; ``--json`` writes it too.

    python -m benchmarks.train_throughput --work /tmp/bench --steps 40 \\
        --variants baseline,production --baseline-micro-batches 8 --json results.json

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
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from mathpal_train.train_log import metric_dicts, train_steps

REPO = Path(__file__).resolve().parents[1]

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
    from mathpal_train.demo.corpus import generate_problems

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
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "right"
    data = [tokenize(tokenizer, r, seq_len) for r in rows[: steps * micro_batch + micro_batch]]
    model = baseline_model(model_dir, cuda)
    counts: list[tuple[int, int]] = []
    base_collate = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)

    def collate(features):
        batch = base_collate(features)
        counts.append((int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum())))
        return batch

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(model_dir.parent / f"baseline-mb{micro_batch}"),
        per_device_train_batch_size=micro_batch,
        max_steps=steps,
        learning_rate=2e-4,
        warmup_steps=min(5, steps // 4),
        lr_scheduler_type="cosine",
        optim="adamw_torch",
        bf16=cuda,
        gradient_checkpointing=cuda,
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
        return {"variant": f"baseline mb={micro_batch}", "error": "out of memory"}
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    grad_norms = [h.get("grad_norm") for h in trainer.state.log_history if "loss" in h]
    measured = counts[warmup : len(times)]
    span = times[-1] - times[warmup - 1] if warmup else times[-1] - start
    result = {
        "variant": f"baseline mb={micro_batch}",
        "real_tokens_per_s": sum(c[0] for c in measured) / span,
        "trained_tokens_per_s": sum(c[1] for c in measured) / span,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "grad_norm_finite": all(g is not None and g == g and abs(g) != float("inf") for g in grad_norms),
    }
    del trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return result


def profile_step(model_dir: Path, micro_batch: int, seq_len: int, trace: Path, steps: int = 4) -> dict:
    """One training step of the baseline's model under torch.profiler (CUDA kernels only).

    Same libraries and kernels as the recipe (transformers' Gemma-3n, PEFT LoRA r=32,
    bitsandbytes nf4, gradient checkpointing, bf16 autocast) on ``micro_batch`` full rows
    of ``seq_len`` tokens, like a packed batch. The unprofiled step time is measured in
    the same process, so the GPU's busy share is not distorted by the profiler's overhead.
    """
    import torch

    from benchmarks.profile_trace import summarize

    model = baseline_model(model_dir, cuda=True, checkpointing_kwargs={"use_reentrant": False})
    model.train()  # from_pretrained returns eval mode, where checkpointing and dropout are off
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, fused=True)
    ids = torch.randint(3, 4096, (micro_batch, seq_len), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
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
            "tokens_per_s": micro_batch * seq_len / step_s,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        }
    )
    trace.unlink()
    return summary  # the model goes with this frame; the caller empties the CUDA cache


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
    out = work / f"out-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
    argv = [
        sys.executable,
        "-m",
        "mathpal_cli",
        "train",
        str(REPO / "recipes" / "production.yml"),
        "--num-gpus",
        "1",
        "--max-steps",
        str(steps),
        "--set",
        f"base_model={model_dir}",
        "--set",
        f"output_dir={out}",
        "--set",
        "logging_steps=1",
    ]
    for change in changes:
        argv += ["--set", change]
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (work / f"{out.name}.log").write_text(log)
    if log_dir:
        (log_dir / f"{out.name}.log").write_text(log)
    if proc.returncode != 0:
        tail = log.strip().splitlines()[-3:]
        return {"variant": name, "error": f"exit {proc.returncode}: {' | '.join(tail)[:300]}"}
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
        **({"profile": profile} if profile else {}),
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(".mathpal/bench/train"))
    parser.add_argument("--shape", choices=["e2b", "tiny"], default="e2b")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the rate")
    parser.add_argument("--problems", type=int, default=4000)
    parser.add_argument(
        "--variants",
        default="baseline,production",
        help="comma list; 'production:key=value;key=value' for one change (';' between keys)",
    )
    parser.add_argument("--baseline-micro-batches", default="8")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--log-dir", type=Path, help="also copy each Axolotl run's log here")
    parser.add_argument(
        "--profile-micro-batches",
        default="",
        help="comma list: profile one step of the baseline's model at these micro batches of --seq-len rows (GPU only)",
    )
    args = parser.parse_args()

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
    for mb in [int(x) for x in args.profile_micro_batches.split(",") if x.strip()]:
        from benchmarks.profile_trace import format_summary

        profiles.append(profile_step(model_dir, mb, args.seq_len, work / f"trace-mb{mb}.json"))
        torch.cuda.empty_cache()
        print(
            f"\n== profile: micro batch {mb} x {args.seq_len} tokens, {profiles[-1]['tokens_per_s']:.0f} tokens/s, "
            f"peak {profiles[-1]['peak_gib']:.1f} GiB\n" + format_summary(profiles[-1]),
            flush=True,
        )

    results = []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if variant == "baseline":
            for mb in [int(x) for x in args.baseline_micro_batches.split(",")]:
                results.append(run_baseline(model_dir, rows, mb, args.steps, args.warmup, args.seq_len))
                print(json.dumps(results[-1]), flush=True)
        elif variant.startswith("production"):
            changes = variant.split(":", 1)[1].split(";") if ":" in variant else []
            results.append(
                run_production(
                    work, model_dir, args.steps, args.warmup, variant, changes, real_per_trained, args.log_dir
                )
            )
            print(json.dumps(results[-1]), flush=True)
    for r in results:
        if peak and r.get("real_tokens_per_s"):
            r["mfu"] = flops["flops_per_token"] * r["real_tokens_per_s"] / (peak * 1e12)

    header = (
        f"{'variant':<44} {'trained tok/s':>13} {'real tok/s':>10} {'peak GiB':>8} {'MFU':>6} "
        f"{'loss first→last':>17} finite"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['variant']:<44} {r['error']}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"
        peak_gib = f"{r['peak_gib']:.1f}" if r.get("peak_gib") else "-"
        print(
            f"{r['variant']:<44} {r['trained_tokens_per_s']:>13.0f} {r['real_tokens_per_s']:>10.0f} {peak_gib:>8} "
            f"{mfu:>6} {r['loss_first']:>8.3f}→{r['loss_last']:<8.3f} {r['grad_norm_finite']}"
        )
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
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
