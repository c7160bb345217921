"""The shipped recipe over a whole run: loss parity with and without the speed plugin, resume, and after.

Where ``benchmarks/train_throughput.py`` times a few steps, this checks what a user
relies on across a run, on a GPU (the plugin's Liger path and compiled layers are CUDA
only), with the random-weight Gemma-3n and sample-corpus data of the throughput
benchmark:

1. **Resume under compile.** ``mathpal train recipes/production.yml`` as shipped (speed
   plugin, compiled layers), killed with SIGKILL to its process group once its first
   checkpoint is on disk, then the same command again: it must resume from that
   checkpoint and end with a finite loss.
2. **Loss parity.** The same recipe with the plugin's switches off
   (``gemma3n_fused_loss`` and ``gemma3n_compile_layers`` false), same seed, data and
   schedule, uninterrupted. The two loss curves (from the final checkpoint's
   ``trainer_state.json``, every logged step) must agree within ``--tolerance``.
3. **After training.** ``mathpal eval`` (base and tuned), ``mathpal ask`` and
   ``mathpal merge`` on the adapter of run 1, then ``mathpal ask`` on the merged model.

The learning rate defaults to one at which the loss clearly falls for the chosen shape
(the recipe's 2e-4 barely moves a random model in a hundred steps). ``--shape tiny`` is
the tiny Gemma-3n (minutes); ``--shape e2b`` the E2B-shaped one (each run minutes).

    python -m benchmarks.train_whole_run --work /tmp/whole --shape tiny --steps 120 --json whole.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.train_multi_gpu import processes_with, run
from benchmarks.train_throughput import PRODUCTION_VARIANTS, build_model, fresh_output_dir, production_argv, write_data
from mathpal_common.atomic_files import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LEARNING_RATE = {"tiny": 2e-3, "e2b": 1e-3}
QUESTION = "Một cửa hàng có 245 kg gạo, đã bán 87 kg. Hỏi cửa hàng còn lại bao nhiêu ki-lô-gam gạo?"


def whole_run_argv(model_dir: Path, out: Path, args: argparse.Namespace, changes: list[str]) -> list[str]:
    """The shipped recipe with the benchmark's schedule: steps, learning rate, warm-up, logging, saving."""
    sets = [
        f"learning_rate={args.learning_rate}",
        f"warmup_steps={max(1, args.steps // 10)}",
        f"save_steps={args.save_steps}",
        f"logging_steps={args.logging_steps}",
        *changes,
    ]
    # production_argv sets logging_steps=1 first; the --set given later wins.
    return production_argv(model_dir, out, args.steps, sets=sets)


def wait_gone(text: str, timeout: float = 30.0) -> list[str]:
    """Wait until no process mentions ``text`` (a killed run's output folder); what is left after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := processes_with(text)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def loss_curve(out: Path, steps: int) -> dict[int, float]:
    """Step -> training loss, from the last checkpoint's ``trainer_state.json`` (its log history spans a
    resume: the entries up to the checkpoint it resumed from, then the rerun's)."""
    state = out / f"checkpoint-{steps}" / "trainer_state.json"
    if not state.is_file():
        return {}
    history = json.loads(state.read_text()).get("log_history", [])
    return {int(e["step"]): float(e["loss"]) for e in history if "loss" in e and "step" in e}


def compare_curves(fast: dict[int, float], exact: dict[int, float], tolerance: float) -> dict:
    """Relative difference of two loss curves at every step both logged; ``agree`` when all are within
    ``tolerance`` and both curves have the same steps, all finite."""
    steps = sorted(set(fast) & set(exact))
    diffs = {s: abs(fast[s] - exact[s]) / abs(exact[s]) for s in steps if exact[s]}
    finite = all(math.isfinite(v) for v in (*fast.values(), *exact.values()))
    worst = max(diffs, key=diffs.get) if diffs else None
    return {
        "steps_compared": len(steps),
        "same_steps": set(fast) == set(exact) and bool(steps),
        "max_relative_diff": diffs[worst] if worst is not None else None,
        "worst_step": worst,
        "finite": finite,
        "agree": bool(diffs) and finite and set(fast) == set(exact) and max(diffs.values()) <= tolerance,
        "first": {"step": steps[0], "fast": fast[steps[0]], "exact": exact[steps[0]]} if steps else None,
        "last": {"step": steps[-1], "fast": fast[steps[-1]], "exact": exact[steps[-1]]} if steps else None,
    }


def command(argv: list[str], cwd: Path, log: Path, timeout: float = 300) -> dict:
    """Run one `mathpal` command after training; exit code, seconds and the last lines of its output."""
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=timeout)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        code, output = None, f"timed out after {timeout} s: {err}"
    log.write_text(output)
    return {
        "command": " ".join(argv[2:]),
        "exit_code": code,
        "seconds": round(time.perf_counter() - started, 1),
        "tail": output.strip().splitlines()[-4:],
    }


def after_training(work: Path, out: Path, log_dir: Path) -> list[dict]:
    """eval (base and tuned), ask, merge, and ask on the merged model: each as a user runs it."""
    cli = [sys.executable, "-m", "mathpal_cli"]
    merged = work / "merged"
    steps = [
        (
            "eval",
            # No --model: eval takes the run's own base model from its record.
            [*cli, "eval", "--adapter", str(out), "--baseline"]
            + ["--data", "data/validation.jsonl", "--limit", "32", "--max-new-tokens", "64"]
            + ["--no-comet", "--report-dir", str(work / "report")],
        ),
        ("ask", [*cli, "ask", "--adapter", str(out), "--max-new-tokens", "64", QUESTION]),
        ("merge", [*cli, "merge", str(out), "--out", str(merged)]),
        ("ask-merged", [*cli, "ask", "--model", str(merged), "--max-new-tokens", "64", QUESTION]),
    ]
    return [{"step": name, **command(argv, work, log_dir / f"after-{name}.log")} for name, argv in steps]


def shipped_run(model_dir: Path, out: Path, work: Path, log_dir: Path, args: argparse.Namespace) -> dict:
    """The shipped recipe; unless ``--no-kill``, killed (SIGKILL to its group) once its first checkpoint
    is on disk and run again with the same command, which must resume from it."""
    argv = whole_run_argv(model_dir, out, args, [])
    marker = out / f"checkpoint-{args.save_steps}" / "trainer_state.json"
    started = time.perf_counter()
    killed = run(argv, work, log_dir / "shipped-killed.log", stop_when=None if args.no_kill else marker)
    left = wait_gone(str(out))  # the rerun must not meet a job still writing there
    rerun = killed if args.no_kill else run(argv, work, log_dir / "shipped-rerun.log")
    resumed = [line for line in rerun.log.splitlines() if "resum" in line.lower() and "checkpoint-" in line]
    return {
        "run": "shipped" if args.no_kill else "shipped (killed after its first checkpoint, then rerun)",
        "killed": killed.stopped,
        "left_running_after_kill": left,
        "time_to_first_step_s": killed.first_step_s,
        "rerun_exit_code": rerun.code,
        "rerun_time_to_first_step_s": rerun.first_step_s,
        "resumed_line": resumed[0].strip()[-160:] if resumed else None,
        "final_loss": loss_curve(out, args.steps).get(args.steps),
        "wall_s": round(time.perf_counter() - started, 1),
        "alongside_exact": args.together,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(".mathpal/bench/whole-run"))
    parser.add_argument("--shape", choices=["tiny", "e2b"], default="tiny")
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps of each run (>= 100 for the proof)")
    parser.add_argument("--save-steps", type=int, default=40, help="checkpoint interval; must divide --steps")
    parser.add_argument("--logging-steps", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, help="default: 2e-3 (tiny), 1e-3 (e2b)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest relative loss difference allowed")
    parser.add_argument("--problems", type=int, default=4000)
    parser.add_argument("--skip-after", action="store_true", help="do not run eval, ask and merge")
    parser.add_argument("--no-kill", action="store_true", help="run the shipped recipe once, without the kill")
    parser.add_argument(
        "--together", action="store_true", help="with --no-kill: train both runs at once (half the wall time)"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--log-dir", type=Path)
    args = parser.parse_args(argv)
    if args.steps % args.save_steps:
        parser.error(
            f"--save-steps {args.save_steps} does not divide --steps {args.steps}: the last checkpoint "
            "holds the loss curve"
        )
    if args.together and not args.no_kill:
        parser.error("--together needs --no-kill: a killed run and its rerun cannot share the GPU with another")
    args.learning_rate = args.learning_rate or DEFAULT_LEARNING_RATE[args.shape]

    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log_dir = (args.log_dir or work).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    _, texts = write_data(work, args.problems)
    model_dir = build_model(args.shape, work / f"gemma3n-{args.shape}", texts)
    summary: dict = {"shape": args.shape, "steps": args.steps, "learning_rate": args.learning_rate, "runs": []}

    def dump() -> None:
        if args.json:
            write_text_atomic(args.json, json.dumps(summary, indent=2))

    # 1. The shipped recipe, killed after its first checkpoint and run again.
    # 2. The same recipe without the plugin's fused loss and compile, uninterrupted.
    # With --together (and --no-kill) both train at once: a tiny model leaves the GPU mostly idle.
    fast_out = fresh_output_dir(work, "shipped")
    exact_out = fresh_output_dir(work, "without-speed")
    # Side by side, each run tokenises into its own cache (the two would write the same one at once).
    own_cache = [f"dataset_prepared_path={work / 'prepared-without-speed'}"] if args.together else []
    exact_argv = whole_run_argv(model_dir, exact_out, args, [*PRODUCTION_VARIANTS["production-speed"], *own_cache])
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = time.perf_counter()
        exact_job = pool.submit(run, exact_argv, work, log_dir / "without-speed.log") if args.together else None
        summary["runs"].append(shipped_run(model_dir, fast_out, work, log_dir, args))
        dump()
        exact_run = exact_job.result() if exact_job else run(exact_argv, work, log_dir / "without-speed.log")
    exact = loss_curve(exact_out, args.steps)
    fast = loss_curve(fast_out, args.steps)
    summary["runs"].append(
        {
            "run": "without the speed plugin's switches",
            "exit_code": exact_run.code,
            "time_to_first_step_s": exact_run.first_step_s,
            "final_loss": exact.get(args.steps),
            "wall_s": round(time.perf_counter() - started, 1),
            "alongside_shipped": args.together,
        }
    )
    summary["parity"] = compare_curves(fast, exact, args.tolerance)
    summary["curves"] = {"shipped": fast, "without_speed": exact}
    dump()

    # 3. What a user runs next, on the shipped recipe's adapter.
    if not args.skip_after and summary["runs"][0]["rerun_exit_code"] == 0:
        summary["after_training"] = after_training(work, fast_out, log_dir)
        dump()
    print(json.dumps({k: v for k, v in summary.items() if k != "curves"}, indent=2), flush=True)


if __name__ == "__main__":
    main()
