"""What a training run leaves in its ``output_dir``, and whether it can be trusted.

Long runs are stopped by schedulers, Ctrl-C, pre-emption and full disks, and each stop
leaves something behind that looks more finished than it is:

* a kill during a checkpoint save leaves a ``checkpoint-N`` without its trainer state;
  Axolotl resumes from the highest-numbered checkpoint and fails on it, every time.
  ``set_aside_incomplete`` moves such folders out of the way (``incomplete-checkpoint-N``,
  never deleted) so the next run resumes from the last complete one;
* on SIGINT Axolotl saves the current weights as the output folder's adapter, which
  looks exactly like a finished run's. ``RunStatePlugin`` marks the run record
  ``mathpal_run.json`` (``RUN_RECORD``) finished as the very last thing a run that trained
  to the end does, with the sha256 of the adapter it saved; ``adapter_problem`` trusts an
  adapter folder only when that mark matches its weights, and its weights are whole.

``RunStatePlugin`` also keys the tokenised data on its content
(``mathpal_train.training_data.key_prepared_data``) and puts a launch's pending record in
place when it starts training (``mathpal_train.run_folder``).

A checkpoint is complete when its ``trainer_state.json`` parses: the Hugging Face trainer
writes it after the weights, the optimizer and the RNG state.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

from mathpal_common.atomic_files import file_sha256
from mathpal_train.run_record import RUN_RECORD, read_record, write_record

# The fields RunStatePlugin adds when the run trained to the end (and drops when a new run starts).
FINISHED_FIELDS = ("finished", "global_step", "max_steps", "adapter", "adapter_sha256", "finished_at")
TRAINER_STATE = "trainer_state.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
INCOMPLETE_PREFIX = "incomplete-"


def _checkpoint_step(path: Path) -> int | None:
    suffix = path.name.removeprefix("checkpoint-")
    return int(suffix) if path.name.startswith("checkpoint-") and suffix.isdigit() else None


def checkpoint_state(folder: Path) -> dict[str, Any] | None:
    """The trainer state of a complete checkpoint folder; None when the save did not finish."""
    try:
        state = json.loads((Path(folder) / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "global_step" in state else None


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-N`` in ``output_dir``, in step order."""
    if not Path(output_dir).is_dir():
        return []
    found = [(_checkpoint_step(p), p) for p in Path(output_dir).iterdir() if p.is_dir()]
    return sorted((step, p) for step, p in found if step is not None)


def set_aside_incomplete(output_dir: Path) -> list[tuple[Path, Path]]:
    """Move every incomplete ``checkpoint-N`` to ``incomplete-checkpoint-N`` (``.2``, ``.3`` … if taken).

    Returns ``(from, to)`` of each move. Nothing is deleted: a user who wants the partial
    files still has them. The new name is outside the ``checkpoint-*`` pattern, so neither
    Axolotl's resume nor the trainer's checkpoint rotation sees it.
    """
    moved = []
    for _, folder in checkpoints(output_dir):
        if checkpoint_state(folder) is not None:
            continue
        target = folder.with_name(INCOMPLETE_PREFIX + folder.name)
        n = 1
        while target.exists():
            n += 1
            target = folder.with_name(f"{INCOMPLETE_PREFIX}{folder.name}.{n}")
        os.replace(folder, target)
        moved.append((folder, target))
    return moved


def _weights(folder: Path) -> Path | None:
    return next((Path(folder) / name for name in ADAPTER_WEIGHTS if (Path(folder) / name).is_file()), None)


def weights_problem(path: Path) -> str | None:
    """Why a weights file cannot be loaded (cut short by a full disk or a kill), or None when it is whole.

    Reads only the safetensors header (8 bytes of length, a JSON table of byte ranges) and compares
    the file's size with the last range, or opens a ``.bin`` (a zip) at its central directory.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.suffix != ".safetensors":
            with zipfile.ZipFile(path):
                return None
        with path.open("rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            start = fh.read(1)
            if start != b"{":  # every safetensors header is a JSON object
                return f"{path} is not a safetensors file ({size} bytes): the save did not write it"
            if 8 + length > size:
                return f"{path} is cut short ({size} bytes, less than its own header says)"
            header = json.loads(start + fh.read(length - 1))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as err:
        return f"{path} is not a readable weights file ({type(err).__name__})"
    if 8 + length + end > size:
        return f"{path} is cut short ({size} of {8 + length + end} bytes: a full disk or a kill during the save)"
    return None


def adapter_problem(folder: Path, allow_unfinished: bool = False) -> str | None:
    """Why ``folder`` is not a finished run's adapter (one line, with what to do), or None when it is.

    A finished run's ``output_dir`` (its marker matches the weights) and a complete
    ``checkpoint-N`` are both fine to evaluate; anything else is an interrupted or broken run.
    ``allow_unfinished`` accepts an interrupted run's weights; a folder without weights never is.
    """
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        return f"{folder} has no adapter_config.json: pass the output_dir of a finished LoRA run"
    weights = _weights(folder)
    if weights is None or weights.stat().st_size == 0:
        return (
            f"{folder} has adapter_config.json but no adapter weights ({ADAPTER_WEIGHTS[0]}): the run stopped "
            "before saving them; rerun `mathpal train` on its recipe to resume it"
        )
    broken = weights_problem(weights)
    if broken:
        return f"{broken}: rerun `mathpal train` on its recipe, or pass an earlier checkpoint-N"
    if allow_unfinished:
        return None
    if _checkpoint_step(folder) is not None:
        if checkpoint_state(folder) is None:
            return f"{folder} is an incomplete checkpoint (its save did not finish): pass an earlier checkpoint"
        return None
    marker = read_marker(folder)
    last = checkpoints(folder)
    where = f" (last checkpoint: {last[-1][1].name})" if last else ""
    if marker is None and not _is_training_output(folder):
        return None  # an adapter saved by other means (PEFT, the hub): nothing says it was interrupted
    if marker is None:
        return (
            f"{folder} is a training run that was not marked finished (in {RUN_RECORD}){where}: it was "
            "interrupted, or its recipe lacks mathpal_train.run_state.RunStatePlugin; rerun `mathpal train` on "
            "its recipe to finish it, or pass --allow-unfinished to use these weights"
        )
    if marker.get("adapter_sha256") != file_sha256(weights):
        return (
            f"{folder}'s weights changed after the run finished at step {marker.get('global_step')} (an "
            f"interrupted rerun saved over them){where}: rerun `mathpal train` on its recipe, "
            "or pass --allow-unfinished to use them anyway"
        )
    return None


def _is_training_output(folder: Path) -> bool:
    """Whether ``folder`` is a training run's ``output_dir`` (what ``mathpal train`` and Axolotl write there)."""
    return any((folder / name).exists() for name in ("recipe.resolved.yml", "debug.log")) or bool(checkpoints(folder))


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The run record when it says the run finished, else None."""
    record = read_record(folder)
    return record if record.get("finished") is True else None


def clear_finished(folder: Path) -> None:
    """A new run starts in ``folder``: its record no longer says finished (what else it says stays)."""
    record = read_record(folder)
    if any(name in record for name in FINISHED_FIELDS):
        write_record(folder, {k: v for k, v in record.items() if k not in FINISHED_FIELDS})


def write_marker(output_dir: Path, global_step: int, max_steps: int | None) -> Path | None:
    """Mark the run record finished, for the adapter now in ``output_dir``; None when there is no adapter yet."""
    weights = _weights(output_dir)
    if weights is None:
        return None
    record = {
        **read_record(output_dir),
        "finished": True,
        "global_step": global_step,
        "max_steps": max_steps,
        "adapter": weights.name,
        "adapter_sha256": file_sha256(weights),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return write_record(output_dir, record)


def _is_main_process(cfg) -> bool:
    return int(os.environ.get("RANK", cfg.local_rank or 0) or 0) == 0


def _is_local_main_process() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0") or 0) == 0


def __getattr__(name: str):
    """``RunStatePlugin``, defined on first use: it subclasses Axolotl's ``BasePlugin``, and importing
    Axolotl takes seconds that ``mathpal eval`` (which only reads markers) should not pay."""
    if name != "RunStatePlugin":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import logging

    from axolotl.integrations.base import BasePlugin

    log = logging.getLogger("axolotl.mathpal.run_state")

    class RunStatePlugin(BasePlugin):
        """The run's folder tells the truth: ``plugins: [mathpal_train.run_state.RunStatePlugin]``.

        * Before Axolotl loads the datasets, the tokenised cache is keyed on the data files and
          the tokenizer (``key_prepared_data``): no run trains on tokens of other rows.
        * When the trainer exists, right before Axolotl writes the new run's adapter config and
          tokenizer into ``output_dir``, the launch's pending recipe and record replace the
          folder's (``mathpal_train.run_folder.promote_pending``): until then a finished run's
          record stays. A run launched by hand has no pending record: its old mark is removed.
        * Axolotl calls ``post_train`` right after the training loop and again once the adapter,
          tokenizer and model card are saved. The record is marked finished at the call that
          finds the adapter saved after the loop ended, so a run stopped anywhere before that
          (SIGINT's emergency save included, which never reaches ``post_train``) has no mark.
        """

        def __init__(self) -> None:
            super().__init__()
            self.trainer = None
            self.loop_ended_at: float | None = None

        def load_datasets(self, cfg, preprocess: bool = False):
            from mathpal_train.training_data import key_prepared_data

            keyed = key_prepared_data(cfg)
            if _is_local_main_process():
                earlier = keyed.is_dir() and any(p.is_dir() for p in keyed.iterdir())
                how = "tokenised by an earlier run of the same files" if earlier else "tokenising now"
                log.info(f"tokenised data: {keyed} ({how}; keyed on the data files and the tokenizer)")
            return None  # Axolotl loads them, from that cache or afresh

        def post_trainer_create(self, cfg, trainer) -> None:
            from mathpal_train.run_folder import promote_pending

            self.trainer = trainer
            if _is_local_main_process() and not promote_pending(Path(cfg.output_dir)) and _is_main_process(cfg):
                clear_finished(Path(cfg.output_dir))

        def post_train(self, cfg, model) -> None:
            if not _is_main_process(cfg):
                return
            if self.loop_ended_at is None:
                self.loop_ended_at = time.time()
                return
            weights = _weights(Path(cfg.output_dir))
            if weights is None or weights.stat().st_mtime < self.loop_ended_at - 1:
                return
            step = self.trainer.state.global_step if self.trainer is not None else -1
            write_marker(Path(cfg.output_dir), step, cfg.max_steps)

    globals()["RunStatePlugin"] = RunStatePlugin
    return RunStatePlugin
