"""The production recipe under DeepSpeed: ZeRO-2 / ZeRO-3 on N GPUs, resume after a kill, adapter check.

Same E2B-shaped random-weight Gemma-3n and sample-corpus data as
``benchmarks/train_throughput.py``. For each ``--stages`` × ``--gpus`` it runs

    mathpal train recipes/production.yml --num-gpus N --deepspeed STAGE ...

with the effective batch held at ``--effective-batch`` sequences (micro batch 2 ×
accumulation × N), and reports tokens/s per GPU (Axolotl's
``tokens/train_per_sec_per_gpu`` after ``--warmup`` steps), peak memory, the loss per
step and the per-GPU efficiency against the same stage on the fewest GPUs.

``--resume STAGE:N`` also kills that run with SIGKILL once its first checkpoint is
on disk, runs the same command again, and checks that it continued from that
checkpoint (``auto_resume_from_checkpoints: true`` in the recipe) to the last step.
Every finished run's adapter is loaded back with ``peft.PeftModel.from_pretrained``
on the base model, the check that a ZeRO-3 save is a normal PEFT adapter.

    python -m benchmarks.train_multi_gpu --work /tmp/bench --gpus 1,2,4 --stages zero2,zero3 \\
        --resume zero2:2 --json multi_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.train_throughput import build_model, step_summary, write_data
from mathpal_train.train_log import train_steps

REPO = Path(__file__).resolve().parents[1]

ZERO3_QUANT = "bnb_config_kwargs.bnb_4bit_quant_storage=bfloat16"  # ZeRO-3 shards only bf16-stored 4-bit


def train_argv(
    model_dir: Path, out: Path, stage: str, gpus: int, steps: int, accumulation: int, save_steps: int
) -> list[str]:
    """The `mathpal train` command of one run (the benchmark's overrides only)."""
    argv = [
        sys.executable,
        "-m",
        "mathpal_cli",
        "train",
        str(REPO / "recipes" / "production.yml"),
        "--num-gpus",
        str(gpus),
        "--deepspeed",
        stage,
        "--max-steps",
        str(steps),
        "--set",
        f"base_model={model_dir}",
        "--set",
        f"output_dir={out}",
        "--set",
        "logging_steps=1",
        "--set",
        f"gradient_accumulation_steps={accumulation}",
        "--set",
        f"save_steps={save_steps}",
        "--set",
        "eval_steps=1000",
    ]
    if stage == "zero3":
        argv += ["--set", ZERO3_QUANT]
    return argv


def summarize_run(name: str, log: str, warmup: int, returncode: int) -> dict:
    """Rates, memory and losses of one run from its log."""
    if returncode != 0:
        tail = log.strip().splitlines()[-3:]
        return {"run": name, "error": f"exit {returncode}: {' | '.join(tail)[:400]}"}
    logs = train_steps(log)
    summary = step_summary(logs, warmup)
    return {
        "run": name,
        "tokens_per_s_per_gpu": summary["tokens_per_s"],
        "peak_gib": summary["peak_gib"],
        "losses": [e["loss"] for e in logs],
        "grad_norm_finite": summary["grad_norm_finite"],
        "resumed_from": (
            re.findall(
                r"checkpoint-(\d+)",
                " ".join(line for line in log.splitlines() if re.search(r"resum", line, re.IGNORECASE)),
            )
            or [None]
        )[0],
    }


def run(argv: list[str], cwd: Path, log_path: Path, kill_when: Path | None = None) -> tuple[int, str, bool]:
    """Run a command; with ``kill_when``, SIGKILL its process group once that file exists."""
    with log_path.open("w") as fh:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        killed = False
        while proc.poll() is None:
            if kill_when is not None and kill_when.exists():
                time.sleep(2)  # let the checkpoint's other files land
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                proc.wait()
                break
            time.sleep(1)
    return proc.returncode, log_path.read_text(errors="replace"), killed


def adapter_check(model_dir: Path, out: Path) -> dict:
    """Load the saved adapter the plain PEFT way; count its tensors and check none is empty."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    try:
        tensors = load_file(str(out / "adapter_model.safetensors"))
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
        model = PeftModel.from_pretrained(base, out)
    except Exception as err:  # noqa: BLE001 - reported, it is what the check is for
        return {"adapter_loads": False, "error": f"{type(err).__name__}: {err}"[:300]}
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    b_max = max((float(t.abs().max()) for n, t in tensors.items() if "lora_B" in n and t.numel()), default=0.0)
    result = {
        "adapter_loads": True,
        "tensors": len(tensors),
        "lora_params_in_model": len(loaded),
        "empty_tensors": sum(1 for t in tensors.values() if t.numel() == 0),
        "max_abs_lora_B": b_max,
    }
    del model, base
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(".mathpal/bench/multi-gpu"))
    parser.add_argument("--gpus", default="1", help="comma list of GPU counts")
    parser.add_argument("--stages", default="zero2,zero3")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--effective-batch", type=int, default=8, help="sequences per optimizer step, all GPUs")
    parser.add_argument("--resume", default="", help="STAGE:N to kill after its first checkpoint and rerun")
    parser.add_argument("--problems", type=int, default=4000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--log-dir", type=Path)
    args = parser.parse_args()

    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log_dir = (args.log_dir or work).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    _, texts = write_data(work, args.problems)
    model_dir = build_model("e2b", work / "gemma3n-e2b", texts)
    results: list[dict] = []

    def dump() -> None:  # after every run, so a run cut short by a time limit keeps what finished
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "steps": args.steps,
                        "warmup": args.warmup,
                        "effective_batch": args.effective_batch,
                        "results": results,
                    },
                    indent=2,
                )
            )

    def record(entry: dict) -> None:
        results.append(entry)
        print(json.dumps(entry), flush=True)
        dump()

    resume_stage, _, resume_gpus = args.resume.partition(":")
    save_steps = max(1, args.steps // 2)
    for stage in [s.strip() for s in args.stages.split(",") if s.strip()]:
        for gpus in [int(g) for g in args.gpus.split(",") if g.strip()]:
            name = f"{stage} x{gpus}"
            out = work / f"out-{stage}-{gpus}"
            accumulation = max(1, args.effective_batch // (2 * gpus))
            argv = train_argv(model_dir, out, stage, gpus, args.steps, accumulation, save_steps)
            started = time.perf_counter()
            if stage == resume_stage and str(gpus) == resume_gpus:
                marker = out / f"checkpoint-{save_steps}" / "trainer_state.json"
                code, log, killed = run(argv, work, log_dir / f"{out.name}-killed.log", kill_when=marker)
                first = summarize_run(name + " (killed)", log, 0, 0 if killed else code)
                first.update({"killed_after_checkpoint": killed, "wall_s": time.perf_counter() - started})
                record(first)
                started = time.perf_counter()
                code, log, _ = run(argv, work, log_dir / f"{out.name}.log")
                entry = summarize_run(name + " (rerun)", log, 0, code)
                if "error" not in entry:
                    state = (
                        json.loads((out / "trainer_state.json").read_text())
                        if (out / "trainer_state.json").exists()
                        else {}
                    )
                    entry.update(
                        {"steps_after_resume": len(entry["losses"]), "final_global_step": state.get("global_step")}
                    )
            else:
                code, log, _ = run(argv, work, log_dir / f"{out.name}.log")
                entry = summarize_run(name, log, args.warmup, code)
            entry.update(
                {
                    "stage": stage,
                    "gpus": gpus,
                    "gradient_accumulation_steps": accumulation,
                    "wall_s": time.perf_counter() - started,
                }
            )
            if "error" not in entry:
                entry.update(adapter_check(model_dir, out))
            record(entry)

    base = {}
    for r in results:
        if r.get("tokens_per_s_per_gpu") and "(killed)" not in r["run"] and "(rerun)" not in r["run"]:
            base.setdefault(r["stage"], r)
            r["per_gpu_efficiency"] = r["tokens_per_s_per_gpu"] / base[r["stage"]]["tokens_per_s_per_gpu"]
    print(f"\n{'run':<22} {'tok/s/GPU':>9} {'eff.':>5} {'peak GiB':>8} {'loss first→last':>17} adapter")
    for r in results:
        if "error" in r:
            print(f"{r['run']:<22} {r['error']}")
            continue
        rate = f"{r['tokens_per_s_per_gpu']:.0f}" if r.get("tokens_per_s_per_gpu") else "-"
        eff = f"{100 * r['per_gpu_efficiency']:.0f}%" if r.get("per_gpu_efficiency") else "-"
        losses = f"{r['losses'][0]:.3f}→{r['losses'][-1]:.3f}" if r.get("losses") else "-"
        print(
            f"{r['run']:<22} {rate:>9} {eff:>5} {r.get('peak_gib') or '-':>8} {losses:>17} "
            f"{r.get('adapter_loads', '-')} resumed_from={r.get('resumed_from')}"
        )
    dump()


if __name__ == "__main__":
    main()
