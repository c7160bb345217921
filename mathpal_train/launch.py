"""How a recipe runs: the launch plan (GPUs, DeepSpeed, nodes), the exact ``accelerate launch`` argv, the job.

``plan_launch`` holds the policy (how many GPUs, which DeepSpeed preset by default, what a
multi-node run needs) and ``build_launch_argv`` turns a plan into the argv, a list that is
run without a shell. ``prepare_run`` resolves and validates the recipe and writes nothing,
so a refused run or a dry run leaves every folder as it was. ``run_logged`` runs the job,
copying its output to the run's log and (filtered, unless ``--debug``) to the terminal; the
job outlives what it writes to: a closed terminal or pipe, a full disk under the log.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathpal_common import comet
from mathpal_train.recipes import RESOLVED_RECIPE_NAME, load_recipe, origins, parse_set, resolve_recipe
from mathpal_train.run_folder import PENDING_DIR

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
# Every recipe `mathpal train` launches has it (added to the resolved recipe when the recipe lacks it):
# it keys the tokenised data on its content, keeps a finished run until the new one trains, marks it finished.
RUN_STATE_PLUGIN = "mathpal_train.run_state.RunStatePlugin"
# The stops `mathpal train` passes on to the job, and as what: the job ignores SIGHUP (a closed terminal
# hangs up the whole process group), so a hangup stops it exactly as SIGTERM does.
STOP_SIGNALS = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM}
# The job's last lines kept in memory, to name its error when it fails (the log may be on a full disk).
TAIL_LINES = 200
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(: .*)?$")
# The launcher's own errors, which only say that a worker failed: the worker's error is the one to name.
LAUNCHER_ERRORS = ("subprocess.CalledProcessError", "torch.distributed.elastic.multiprocessing.errors.ChildFailedError")


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
    """A validated run, ready to launch: the argv, the resolved recipe (not yet written), the overrides
    applied and what validation found (``summary``: the numbers, and notes for the user)."""

    argv: list[str]
    resolved: dict[str, Any]
    applied: list[tuple[str, Any, str]]
    summary: Any = None  # mathpal_train.validate.RecipeSummary
    plan: LaunchPlan | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.resolved["output_dir"])

    @property
    def resolved_path(self) -> Path:
        """Where the resolved recipe lives once the run trains (``pending/`` holds it until then)."""
        return self.output_dir / RESOLVED_RECIPE_NAME

    @property
    def log_path(self) -> Path:
        return self.output_dir / TRAINING_LOG


def resolve(recipe: Path, sets: list[str], flags: list[tuple], env: dict[str, str] | None = None):
    """The recipe with environment and flag overrides applied, and the ``(key, value, source)`` list.

    A bad file or ``--set`` is a ``ValueError`` with one line.
    """
    base = load_recipe(recipe)
    sets_ = [(key, value, "--set") for key, value in parse_set(sets)]
    return resolve_recipe(base, dict(os.environ if env is None else env), [*flags, *sets_])


def prepare_run(
    recipe: Path, plan: LaunchPlan, flags: list[tuple], sets: list[str], check_folder: bool = True
) -> PreparedRun:
    """Resolve the overrides, validate everything and build the argv, writing nothing: every refusal
    (``ValueError``: a bad file, a bad override, a ``RecipeError``) and a dry run leave every folder
    as it was. The recipe gets ``RUN_STATE_PLUGIN`` when it lacks it (an override like any other).
    ``check_folder`` (not for a dry run) also refuses an output folder that cannot take the run now:
    not writable, or held by a live run."""
    from mathpal_train.run_folder import check_free
    from mathpal_train.validate import validate_recipe

    if plan.deepspeed is not None:
        flags = [("deepspeed", str(plan.deepspeed), "--deepspeed"), *flags]
    resolved, applied = resolve(recipe, sets, flags)
    if "output_dir" not in resolved:
        raise LaunchError(f"recipe {recipe}: output_dir is missing: add one so checkpoints have a home")
    plugins = list(resolved.get("plugins") or [])
    if RUN_STATE_PLUGIN not in plugins:
        resolved["plugins"] = [*plugins, RUN_STATE_PLUGIN]
        applied.append(("plugins", resolved["plugins"], "mathpal train (the run record)"))
    summary = validate_recipe(resolved, recipe, max(plan.gpus, 1) * plan.num_machines, origins(applied))
    if check_folder and not plan.machine_rank:
        check_free(Path(resolved["output_dir"]))
    launched = Path(resolved["output_dir"]) / PENDING_DIR / RESOLVED_RECIPE_NAME
    return PreparedRun(build_launch_argv(launched, plan), resolved, applied, summary, plan)


@dataclass(frozen=True)
class JobEnd:
    """How a job ended: the code ``mathpal train`` exits with, the stop it passed on, what went wrong."""

    code: int  # the job's exit status, or 128 + the signal that stopped it
    stop: int | None = None  # the signal this process received and passed on; None: the job ended by itself
    log_problem: str | None = None  # why the log is incomplete (a full disk); None when it holds everything
    last_error: str | None = None  # the job's last exception line, to say in one line why it failed
    tail: list[str] = field(default_factory=list, repr=False)


def run_logged(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    show: Callable[[str], str | None] | None = None,
    pass_fds: tuple[int, ...] = (),
    warn: Callable[[str], None] | None = None,
) -> JobEnd:
    """Run ``argv``, copying its output to ``log_path`` and to the terminal, until it ends.

    The terminal gets every byte (``show`` None, ``--debug``) or the lines ``show`` turns into
    text. Neither copy can end the job: a terminal or pipe that closes (``| head``, a hung-up
    ssh) is dropped, and the log goes on; a log that cannot be written (a full disk) is
    dropped with one ``warn`` line, and the terminal goes on.

    SIGINT, SIGTERM or SIGHUP to this process goes to every process of the job: sent to
    ``accelerate`` alone, the worker it started is reparented to init and trains on. So this
    process becomes the job's subreaper (orphans of the job are reparented here, not to
    init) and signals the whole tree. SIGHUP is passed on as SIGTERM (the job ignores SIGHUP,
    so that a terminal that closes stops it through here, as a scheduler's SIGTERM does; under
    ``nohup`` both ignore it). Axolotl saves on SIGINT; whatever still runs ``STOP_GRACE_S``
    after the first stop (or at a second one) is killed, and so is anything the job leaves
    behind when it ends. The job stays in this process's group, so a stop sent to the group
    (a terminal's Ctrl-C, a scheduler) reaches it directly too. After a stop the code is 128 +
    the signal number, whatever the job returned (Axolotl exits 0 after its SIGINT save), so a
    scheduler sees that the run was stopped. ``pass_fds`` stay open in the job (the folder lock).
    """
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
            _signal_job(job, before, STOP_SIGNALS[signum])
        else:
            _signal_job(job, before, signal.SIGKILL)

    copy = _Copy(log_path, show, warn)
    _set_subreaper(True)
    hangup_ignored = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    # SIGINT/SIGTERM handlers first: a child must not inherit an ignored SIGINT from our parent,
    # and a stop that arrives while the job starts must still reach it. SIGHUP is ignored while
    # the job starts, so that it inherits that, then handled here (unless our parent ignored it).
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=pass_fds)
        job.append(proc)
        if not hangup_ignored:
            signal.signal(signal.SIGHUP, stop)
        if stops:
            _signal_job(job, before, STOP_SIGNALS[stops[0]])
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            copy.write(chunk)
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        killer.cancel()
        _signal_job(job, before, signal.SIGKILL, reap=True)  # nothing of the job outlives it
        _set_subreaper(False)
        copy.close()
    code = 128 - code if code < 0 else code  # killed by a signal no one here sent (the OOM killer)
    return JobEnd(
        code=128 + stops[0] if stops else code,
        stop=stops[0] if stops else None,
        log_problem=copy.log_problem,
        last_error=next((line for line in reversed(copy.tail) if _worker_error(line)), None),
        tail=list(copy.tail),
    )


def _worker_error(line: str) -> bool:
    """Whether ``line`` is an exception line of the job's own code, not of the launcher around it."""
    return bool(EXCEPTION_LINE.match(line)) and not line.startswith(LAUNCHER_ERRORS)


class _Copy:
    """The job's output to the log file and the terminal, each dropped at its first failed write."""

    def __init__(self, log_path: Path, show: Callable[[str], str | None] | None, warn: Callable[[str], None] | None):
        self.log_path, self.show, self.warn = Path(log_path), show, warn
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.partial = b""
        self.terminal = True
        self.log_problem: str | None = None
        self.log = None
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as err:
            self._drop_log(err)

    def write(self, chunk: bytes) -> None:
        if self.log is not None:
            try:
                self.log.write(chunk)
            except OSError as err:
                self._drop_log(err)
        lines, self.partial = self._lines(self.partial + chunk)
        if self.show is None:
            self._to_terminal(chunk)
            return
        for line in lines:
            shown = self.show(line)
            if shown is not None:
                self._to_terminal((shown + "\n").encode("utf-8", "replace"))

    def _lines(self, data: bytes) -> tuple[list[str], bytes]:
        """Complete lines (ended by a newline or tqdm's carriage return) and the rest; tail updated."""
        *complete, rest = re.split(rb"[\r\n]", data)
        lines = [raw.decode("utf-8", "replace") for raw in complete]
        self.tail.extend(line for line in lines if line.strip())
        return lines, rest[-65536:]

    def _to_terminal(self, data: bytes) -> None:
        if not self.terminal:
            return
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (OSError, ValueError):  # the reader went away (| head, a closed ssh): training goes on
            from mathpal_common.terminal import silence_stdout

            self.terminal = False
            silence_stdout()

    def _drop_log(self, err: OSError) -> None:
        self.log_problem = f"cannot write {self.log_path}: {os.strerror(err.errno) if err.errno else err}"
        if self.log is not None:
            try:
                self.log.close()
            except OSError:
                pass
        self.log = None
        if self.warn is not None:
            self.warn(f"{self.log_problem}: the rest of the job's output is not logged; training goes on")

    def close(self) -> None:
        if self.partial.strip():
            self.tail.append(self.partial.decode("utf-8", "replace"))
        if self.log is not None:
            try:
                self.log.close()
            except OSError:
                pass


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
