"""How a recipe runs: the launch plan (GPUs, DeepSpeed, nodes), the exact ``accelerate launch`` argv, the job.

``plan_launch`` holds the policy (how many GPUs, which DeepSpeed preset by default, what a
multi-node run needs) and ``build_launch_argv`` turns a plan into the argv, a list that is
run without a shell. ``prepare_run`` resolves, validates and writes the recipe before
anything starts, so a refused run writes nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mathpal_train import comet
from mathpal_train.atomic_files import check_writable
from mathpal_train.recipes import RESOLVED_RECIPE_NAME, load_recipe, parse_set, resolve_recipe, write_resolved_recipe

# Where `mathpal train` copies the job's output, inside the recipe's output_dir.
TRAINING_LOG = Path("logs") / "training.log"
# The DeepSpeed presets of this checkout, by name (also found when mathpal runs from another folder).
DEEPSPEED_DIR = Path(__file__).resolve().parents[1] / "deepspeed_configs"
DEEPSPEED_PRESETS = {"zero1": "zero1.json", "zero2": "zero2.json", "zero3": "zero3_bf16.json"}
# Several GPUs and no choice made: ZeRO-2 shards optimizer state and gradients. (Not yet measured
# against plain DDP on several GPUs: benchmarks/train_multi_gpu.py --stages ddp,zero2,zero3.)
DEFAULT_MULTI_GPU_PRESET = "zero2"
# `--deepspeed none`: plain DDP (accelerate's own data parallelism), no DeepSpeed.
NO_DEEPSPEED = "none"
DEFAULT_MAIN_PROCESS_PORT = 29500
# After SIGINT/SIGTERM, how long the job may take to save and exit before it is killed.
STOP_GRACE_S = 20.0

# Environment the launched job always gets: Axolotl sends telemetry unless told not to.
LAUNCH_ENV = {"AXOLOTL_DO_NOT_TRACK": "1"}


class LaunchError(ValueError):
    """A launch that cannot work as asked (GPUs, DeepSpeed, nodes); the message is one line."""


@dataclass(frozen=True)
class LaunchPlan:
    """Where a run goes: ``gpus`` per machine (0 = the CPU), a DeepSpeed config, the machines."""

    gpus: int
    deepspeed: Path | None = None
    num_machines: int = 1
    machine_rank: int | None = None
    main_process_ip: str | None = None
    main_process_port: int | None = None

    @property
    def processes(self) -> int:
        """accelerate's ``--num_processes``: one per GPU on every machine (one for a CPU run)."""
        return max(self.gpus, 1) * self.num_machines


def deepspeed_config(choice: str) -> Path | None:
    """The config file of a preset name (zero1, zero2, zero3) or a JSON path the user gave; None for ``none``."""
    if choice == NO_DEEPSPEED:
        return None
    if choice in DEEPSPEED_PRESETS:
        local = Path("deepspeed_configs") / DEEPSPEED_PRESETS[choice]
        return local if local.is_file() else DEEPSPEED_DIR / DEEPSPEED_PRESETS[choice]
    path = Path(choice)
    if path.suffix != ".json":
        raise LaunchError(f"--deepspeed {choice}: unknown ZeRO stage; use zero1, zero2, zero3, none or a JSON file")
    if not path.is_file():
        raise LaunchError(f"--deepspeed {choice}: {path} not found; use zero1, zero2, zero3, none or a JSON file")
    return path


def plan_launch(
    num_gpus: int | None,
    deepspeed: str | None = None,
    env: dict[str, str] | None = None,
    num_machines: int = 1,
    machine_rank: int | None = None,
    main_process_ip: str | None = None,
    main_process_port: int | None = None,
    check_visible: bool = True,
) -> LaunchPlan:
    """The plan for ``--num-gpus``/``--deepspeed``/the node flags; a ``LaunchError`` when it cannot run.

    No ``num_gpus``: every visible GPU. More than one GPU and no ``deepspeed``: the default
    preset; ``deepspeed="none"`` asks for plain DDP. ``check_visible`` refuses more GPUs than
    this machine shows (off for a dry run, which may plan for another machine).
    """
    env = dict(os.environ if env is None else env)
    seen = visible_gpus(env) if num_gpus is None or (num_gpus and check_visible) else None
    if num_gpus and check_visible and num_gpus > seen:
        raise LaunchError(
            f"--num-gpus {num_gpus} asked for, but {seen} GPU(s) visible: lower it, or --num-gpus 0 for the CPU"
        )
    gpus = seen if num_gpus is None else num_gpus
    if gpus > 1 and not deepspeed:
        deepspeed = DEFAULT_MULTI_GPU_PRESET
    if num_machines > 1 and (machine_rank is None or not main_process_ip):
        raise LaunchError(f"--num-machines {num_machines} needs --machine-rank and --main-process-ip")
    return LaunchPlan(
        gpus=gpus,
        deepspeed=deepspeed_config(deepspeed) if deepspeed else None,
        num_machines=num_machines,
        machine_rank=machine_rank,
        main_process_ip=main_process_ip,
        main_process_port=main_process_port,
    )


def accelerate_executable() -> str:
    """The ``accelerate`` of this Python's environment, so an unactivated venv still works."""
    sibling = Path(sys.executable).parent / "accelerate"
    return str(sibling) if sibling.exists() else (shutil.which("accelerate") or "accelerate")


def visible_gpus(env: dict[str, str]) -> int:
    """GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else what torch sees."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
        return len(ids)
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def build_launch_argv(recipe_path: Path, plan: LaunchPlan) -> list[str]:
    """The ``accelerate launch … -m axolotl.cli.train RECIPE`` argv (a list: no shell involved)."""
    argv = [
        accelerate_executable(),
        "launch",
        "--num_processes",
        str(plan.processes),
        "--num_machines",
        str(plan.num_machines),
    ]
    if plan.num_machines > 1:
        argv += [
            "--machine_rank",
            str(plan.machine_rank),
            "--main_process_ip",
            str(plan.main_process_ip),
            "--main_process_port",
            str(plan.main_process_port or DEFAULT_MAIN_PROCESS_PORT),
        ]
    if plan.gpus == 0:
        argv += ["--cpu", "--mixed_precision", "no"]
    elif plan.processes > 1:
        argv.append("--multi_gpu")
    argv += ["--dynamo_backend", "no", "-m", "axolotl.cli.train", str(recipe_path)]
    return argv


@dataclass(frozen=True)
class PreparedRun:
    """A validated run, ready to launch: the argv, the resolved recipe (written), the overrides applied."""

    argv: list[str]
    resolved_path: Path
    resolved: dict[str, Any]
    applied: list[tuple[str, Any, str]]

    @property
    def output_dir(self) -> Path:
        return Path(self.resolved["output_dir"])

    @property
    def log_path(self) -> Path:
        return self.output_dir / TRAINING_LOG


def resolve(recipe: Path, sets: list[str], flags: list[tuple[str, Any]], env: dict[str, str] | None = None):
    """The recipe with environment and flag overrides applied, and the ``(key, value, source)`` list.

    A bad file or ``--set`` is a ``ValueError`` with one line.
    """
    base = load_recipe(recipe)
    return resolve_recipe(base, dict(os.environ if env is None else env), [*flags, *parse_set(sets)])


def prepare_run(recipe: Path, plan: LaunchPlan, flags: list[tuple[str, Any]], sets: list[str]) -> PreparedRun:
    """Resolve the overrides, validate everything, write the resolved recipe into its output_dir
    and build the argv. Every refusal (``ValueError``: a bad file, a bad override, a
    ``RecipeError``) comes before anything is written."""
    from mathpal_train.validate import validate_recipe

    if plan.deepspeed is not None:
        flags = [("deepspeed", str(plan.deepspeed)), *flags]
    resolved, applied = resolve(recipe, sets, flags)
    if "output_dir" not in resolved:
        raise LaunchError(f"recipe {recipe}: output_dir is missing: add one so checkpoints have a home")
    validate_recipe(resolved, recipe, max(plan.gpus, 1) * plan.num_machines)
    check_writable(Path(resolved["output_dir"]) / RESOLVED_RECIPE_NAME)
    resolved_path = write_resolved_recipe(resolved, Path(resolved["output_dir"]))
    return PreparedRun(build_launch_argv(resolved_path, plan), resolved_path, resolved, applied)


def run_logged(argv: list[str], env: dict[str, str], log_path: Path) -> int:
    """Run ``argv``, copying its output to the console and to ``log_path``; return its exit code.

    SIGINT or SIGTERM to this process goes to every process of the job: sent to
    ``accelerate`` alone, the worker it started is reparented to init and trains on. So this
    process becomes the job's subreaper (orphans of the job are reparented here, not to
    init) and signals the whole tree. Axolotl saves on SIGINT; whatever still runs
    ``STOP_GRACE_S`` after the first stop (or at a second one) is killed, and so is anything
    the job leaves behind when it ends. The job stays in this process's group, so a stop
    sent to the group (a terminal's Ctrl-C, a scheduler) reaches it directly too. After a
    stop the return is 128 + the signal number, whatever the job returned (Axolotl exits 0
    after its SIGINT save), so a scheduler sees that the run was stopped.
    """
    import signal
    import subprocess
    import threading

    stops: list[int] = []
    job: list[subprocess.Popen] = []
    before = _children(os.getpid())
    killer = threading.Timer(STOP_GRACE_S, lambda: _signal_job(job, before, signal.SIGKILL))
    killer.daemon = True

    def stop(signum: int, _frame) -> None:
        stops.append(signum)
        if len(stops) == 1:
            killer.start()
            _signal_job(job, before, signum)
        else:
            _signal_job(job, before, signal.SIGKILL)

    log_path.parent.mkdir(parents=True, exist_ok=True)
    _set_subreaper(True)
    # Handlers first: a child must not inherit an ignored SIGINT from our parent, and a stop
    # that arrives while the job starts must still reach it.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with log_path.open("ab") as log:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            job.append(proc)
            if stops:
                _signal_job(job, before, stops[0])
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                log.write(chunk)
            code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        killer.cancel()
        _signal_job(job, before, signal.SIGKILL, reap=True)  # nothing of the job outlives it
        _set_subreaper(False)
    return 128 + stops[0] if stops else code


def _process_tree() -> dict[int, set[int]]:
    """Parent pid → the pids of its children, for every process (one read of /proc; empty without one)."""
    tree: dict[int, set[int]] = {}
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return tree
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, set()).add(int(entry.name))
    return tree


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    return _process_tree().get(pid, set())


def _signal_job(job: list, before: set[int], signum: int, reap: bool = False) -> None:
    """Send ``signum`` to every process of the job: its launcher, their descendants, and the
    orphans of the job that this process adopted as subreaper (children it did not have before)."""
    tree = _process_tree()
    roots = {proc.pid for proc in job if proc.poll() is None} | (tree.get(os.getpid(), set()) - before)
    seen: set[int] = set()
    pending = list(roots)
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        pending.extend(tree.get(pid, ()))
    for pid in seen:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
    if reap:  # adopted orphans are our children now: collect their exit, so none stays a zombie
        for pid in seen - {proc.pid for proc in job}:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _set_subreaper(on: bool) -> None:
    """Linux's PR_SET_CHILD_SUBREAPER: orphaned descendants are reparented to this process, not init."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, int(on), 0, 0, 0)  # 36 = PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def launch_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the launched job: the caller's, with telemetry off."""
    env = dict(os.environ if base is None else base)
    env.update(LAUNCH_ENV)
    return env


def prepare_job(run: PreparedRun, debug: bool = False) -> tuple[dict[str, str], list[str]]:
    """What comes right before the launch: the job's environment, and one line for each thing the
    user should know (incomplete checkpoints set aside so the run resumes, Comet gone offline)."""
    from mathpal_train.run_state import set_aside_incomplete

    notes = [
        f"{src} is an incomplete checkpoint (its save was interrupted): moved to {dst}; resuming from the "
        "last complete one"
        for src, dst in set_aside_incomplete(run.output_dir)
    ]
    env = launch_env()  # telemetry off
    comet_settings, fallback = comet.job_env(env, run.output_dir)  # offline without a reachable server
    env.update(comet_settings)
    if debug:
        env["AXOLOTL_LOG_LEVEL"] = "DEBUG"
    if fallback:
        notes.append(
            f"CometML {fallback}: this run logs to the offline archive {run.output_dir / 'comet'} "
            "(upload it with `comet upload`)"
        )
    return env, notes
