"""The production recipe on N GPUs: plain DDP, ZeRO-2, ZeRO-3; resume after a kill, SIGTERM, adapter check.

Same E2B-shaped random-weight Gemma-3n and sample-corpus data as
``benchmarks/train_throughput.py``. For each ``--stages`` × ``--gpus`` it runs

    mathpal train recipes/production.yml --num-gpus N --deepspeed STAGE ...

(``ddp`` is ``--deepspeed none``) with the effective batch held at ``--effective-batch``
sequences (``--micro-batch`` × accumulation × N), and reports tokens/s per GPU (Axolotl's
``tokens/train_per_sec_per_gpu`` after ``--warmup`` steps), its efficiency against the same
stage on the fewest GPUs, peak memory, time to first step and the loss per step.

``--resume STAGE:N`` also kills that run (SIGKILL to its process group, as a pre-emption
does) once its first checkpoint is on disk, runs the same command again, and checks that it
continued from that checkpoint to the last step. ``--sigterm STAGE:N`` sends SIGTERM to
``mathpal`` alone once a checkpoint is on disk (as a scheduler does) and reports the exit
code, how long the job took to go, and any process of it still running. Every finished
run's adapter is loaded back with ``peft.PeftModel.from_pretrained`` on the base model,
the check that a ZeRO-3 save is a normal PEFT adapter.

Every run gets the NCCL settings the lent GPU machines require (NVLink multicast off:
``NCCL_SETTINGS``), unless the environment sets them already.

    python -m benchmarks.train_multi_gpu --work /tmp/bench --gpus 1,2 --stages ddp,zero2,zero3 \\
        --resume ddp:2 --sigterm ddp:2 --json multi_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.train_throughput import (
    build_model,
    first_step_marks,
    production_argv,
    step_summary,
    tee_lines,
    write_data,
)
from mathpal_train.train_log import train_steps

REPO = Path(__file__).resolve().parents[1]

ZERO3_QUANT = "bnb_config_kwargs.bnb_4bit_quant_storage=bfloat16"  # ZeRO-3 shards only bf16-stored 4-bit
# NVLink multicast off: what the lent H200 machines require of every NCCL job.
NCCL_SETTINGS = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def deepspeed_flag(stage: str) -> str:
    """``mathpal train --deepspeed`` for a benchmark stage: ``ddp`` is plain DDP (``none``)."""
    return "none" if stage == "ddp" else stage


def train_argv(
    model_dir: Path,
    out: Path,
    stage: str,
    gpus: int,
    steps: int,
    accumulation: int,
    save_steps: int,
    micro_batch: int = 2,
) -> list[str]:
    """The `mathpal train` command of one run (the benchmark's overrides only)."""
    sets = [f"micro_batch_size={micro_batch}", f"gradient_accumulation_steps={accumulation}"]
    sets += [f"save_steps={save_steps}", "eval_steps=1000"]
    argv = production_argv(model_dir, out, steps, gpus, ("--deepspeed", deepspeed_flag(stage)), sets)
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


def processes_with(text: str) -> list[str]:
    """Command lines of the running processes (not zombies) that mention ``text``, e.g. a run's output folder."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmd and state != "Z" and entry.name != str(os.getpid()):
            found.append(cmd)
    return found


@dataclass
class Run:
    """One `mathpal train` process as the benchmark saw it."""

    code: int
    log: str
    stopped: bool = False
    first_step_s: float | None = None
    exit_after_stop_s: float | None = None
    left_running: list[str] = field(default_factory=list)


def run(
    argv: list[str],
    cwd: Path,
    log_path: Path,
    stop_when: Path | None = None,
    stop_signal: int = signal.SIGKILL,
    env: dict[str, str] | None = None,
    output_dir: Path | None = None,
) -> Run:
    """Run a command, timing its output lines; once ``stop_when`` exists, stop it with ``stop_signal``.

    SIGKILL goes to the whole process group (a pre-emption); any other signal to ``mathpal``
    alone (a scheduler), and then whatever of the job still runs (processes that mention
    ``output_dir``) is reported.
    """
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    timed: list[tuple[float, str]] = []
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    log_file = log_path.open("w", encoding="utf-8")
    reader = threading.Thread(target=tee_lines, args=(proc.stdout, start, timed, log_file), daemon=True)
    reader.start()
    stopped, exit_after = False, None
    while proc.poll() is None:
        if stop_when is not None and stop_when.exists():
            time.sleep(2)  # let the checkpoint's other files land
            sent = time.perf_counter()
            if stop_signal == signal.SIGKILL:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(stop_signal)
            proc.wait()
            stopped, exit_after = True, time.perf_counter() - sent
            break
        time.sleep(0.5)
    reader.join(timeout=30)
    log_file.close()
    log = "".join(line for _, line in timed)
    first, _ = first_step_marks(timed)
    left = processes_with(str(output_dir)) if stopped and output_dir is not None else []
    return Run(proc.returncode, log, stopped, first, exit_after, left)


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


def stage_gpus(text: str) -> tuple[str, int | None]:
    """``STAGE:N`` of ``--resume``/``--sigterm`` (empty: none)."""
    stage, _, gpus = text.partition(":")
    return stage, int(gpus) if gpus else None


def one_run(args, work: Path, log_dir: Path, model_dir: Path, stage: str, gpus: int, record) -> None:
    """The runs of one stage × GPU count: plain, or killed and rerun, or stopped with SIGTERM and rerun."""
    name = f"{stage} x{gpus}"
    out = work / f"out-{stage}-{gpus}"
    accumulation = max(1, args.effective_batch // (args.micro_batch * gpus))
    save_steps = max(1, args.steps // 2)
    argv = train_argv(model_dir, out, stage, gpus, args.steps, accumulation, save_steps, args.micro_batch)
    env = {**NCCL_SETTINGS, **os.environ}
    checkpoint = out / f"checkpoint-{save_steps}" / "trainer_state.json"
    stops = [
        (sig, label)
        for sig, label, wanted in ((signal.SIGKILL, "killed", args.resume), (signal.SIGTERM, "SIGTERM", args.sigterm))
        if stage_gpus(wanted) == (stage, gpus)
    ]
    for sig, label in stops:
        started = time.perf_counter()
        # A SIGTERM run gets a folder of its own: a kill's rerun then resumes from the kill's checkpoint.
        target = out if sig == signal.SIGKILL else out.with_name(f"{out.name}-sigterm")
        stop_argv = argv if sig == signal.SIGKILL else [str(target) if a == str(out) else a for a in argv]
        stop_argv = [f"output_dir={target}" if a == f"output_dir={out}" else a for a in stop_argv]
        marker = target / checkpoint.relative_to(out)
        first = run(stop_argv, work, log_dir / f"{out.name}-{label}.log", marker, sig, env, target)
        entry = summarize_run(f"{name} ({label})", first.log, 0, 0 if first.stopped else first.code)
        entry.update(
            {
                "stopped": first.stopped,
                "exit_code": first.code,
                "wall_s": time.perf_counter() - started,
                "exit_after_stop_s": first.exit_after_stop_s,
                "left_running": first.left_running,
            }
        )
        record(entry)
    started = time.perf_counter()
    done = run(argv, work, log_dir / f"{out.name}.log", env=env)
    entry = summarize_run(f"{name} (rerun)" if stops else name, done.log, 0 if stops else args.warmup, done.code)
    entry.update(
        {
            "stage": stage,
            "gpus": gpus,
            "micro_batch_size": args.micro_batch,
            "gradient_accumulation_steps": accumulation,
            "wall_s": time.perf_counter() - started,
            "time_to_first_step_s": done.first_step_s,
        }
    )
    if "error" not in entry:
        if stops and (out / "trainer_state.json").exists():
            entry["final_global_step"] = json.loads((out / "trainer_state.json").read_text()).get("global_step")
        entry.update(adapter_check(model_dir, out))
    record(entry)


def format_table(results: list[dict]) -> str:
    """The benchmark's table: per-GPU rate and efficiency, memory, time to first step, losses, adapter."""
    lines = [
        f"{'run':<24} {'tok/s/GPU':>9} {'eff.':>5} {'peak GiB':>8} {'1st step s':>10} {'adapter':>7}  loss per step"
    ]
    for r in results:
        if "error" in r:
            lines.append(f"{r['run']:<24} {r['error']}")
            continue
        rate = f"{r['tokens_per_s_per_gpu']:.0f}" if r.get("tokens_per_s_per_gpu") else "-"
        eff = f"{100 * r['per_gpu_efficiency']:.0f}%" if r.get("per_gpu_efficiency") else "-"
        first = f"{r['time_to_first_step_s']:.0f}" if r.get("time_to_first_step_s") else "-"
        losses = " ".join(f"{loss:.3f}" for loss in r.get("losses") or []) or "-"
        extra = ""
        if "exit_code" in r:
            extra = (
                f"  exit {r['exit_code']} after {r.get('exit_after_stop_s') or 0:.1f} s, left {len(r['left_running'])}"
            )
        elif r.get("resumed_from"):
            extra = f"  resumed from checkpoint-{r['resumed_from']}"
        lines.append(
            f"{r['run']:<24} {rate:>9} {eff:>5} {r.get('peak_gib') or '-':>8} {first:>10} "
            f"{str(r.get('adapter_loads', '-')):>7}  {losses}{extra}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(".mathpal/bench/multi-gpu"))
    parser.add_argument("--gpus", default="1", help="comma list of GPU counts")
    parser.add_argument("--stages", default="ddp,zero2,zero3", help="ddp (no DeepSpeed), zero1, zero2, zero3")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--effective-batch", type=int, default=8, help="sequences per optimizer step, all GPUs")
    parser.add_argument("--micro-batch", type=int, default=2, help="sequences per GPU per micro step")
    parser.add_argument("--resume", default="", help="STAGE:N to kill after its first checkpoint and rerun")
    parser.add_argument("--sigterm", default="", help="STAGE:N to stop with SIGTERM after its first checkpoint")
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

    for stage in [s.strip() for s in args.stages.split(",") if s.strip()]:
        for gpus in [int(g) for g in args.gpus.split(",") if g.strip()]:
            one_run(args, work, log_dir, model_dir, stage, gpus, record)

    base = {}
    for r in results:
        if r.get("tokens_per_s_per_gpu") and "stage" in r and "(rerun)" not in r["run"]:
            base.setdefault(r["stage"], r)
            r["per_gpu_efficiency"] = r["tokens_per_s_per_gpu"] / base[r["stage"]]["tokens_per_s_per_gpu"]
    print("\n" + format_table(results))
    dump()


if __name__ == "__main__":
    main()
