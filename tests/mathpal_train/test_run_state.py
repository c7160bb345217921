"""What a run leaves behind: complete and incomplete checkpoints, the finished marker, which adapters to trust."""

from __future__ import annotations

import json

import pytest

from mathpal_train.run_record import RUN_RECORD, read_record, write_record
from mathpal_train.run_state import (
    adapter_problem,
    checkpoint_state,
    clear_finished,
    set_aside_incomplete,
    write_marker,
)


def safetensors_bytes(value: float = 1.0) -> bytes:
    """A real (tiny) safetensors file: one LoRA-shaped tensor."""
    import torch
    from safetensors.torch import save

    return save({"base_model.model.lora_A.weight": torch.full((4, 8), value)})


WHOLE = object()  # a whole safetensors file


def adapter(folder, weights: bytes | None | object = WHOLE):
    """An adapter folder: its config and weights (``WHOLE``, these bytes, or None for none)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    if weights is not None:
        (folder / "adapter_model.safetensors").write_bytes(safetensors_bytes() if weights is WHOLE else weights)
    return folder


def checkpoint(output, step: int, state: str | None = '{"global_step": %d}'):
    folder = adapter(output / f"checkpoint-{step}")
    (folder / "tokens_state.json").write_text("{}")
    if state is not None:
        (folder / "trainer_state.json").write_text(state % step if "%d" in state else state)
    return folder


# The moments a save can be killed at: before the weights, before the trainer state, in the middle of it.
PARTIAL = {
    "tokens only": lambda folder: (folder.mkdir(), (folder / "tokens_state.json").write_text("{}")),
    "weights, no state": lambda folder: adapter(folder),
    "half-written state": lambda folder: (adapter(folder), (folder / "trainer_state.json").write_text('{"glob')),
}


@pytest.mark.parametrize("moment", sorted(PARTIAL))
def test_an_interrupted_save_is_moved_aside_and_the_complete_ones_stay(tmp_path, moment):
    checkpoint(tmp_path, 10)
    checkpoint(tmp_path, 20)
    PARTIAL[moment](tmp_path / "checkpoint-30")
    moved = set_aside_incomplete(tmp_path)
    assert moved == [(tmp_path / "checkpoint-30", tmp_path / "incomplete-checkpoint-30")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-20", "incomplete-checkpoint-30"]
    assert checkpoint_state(tmp_path / "checkpoint-20") == {"global_step": 20}
    assert set_aside_incomplete(tmp_path) == []  # nothing left to move


def test_a_second_interrupted_save_of_the_same_step_is_kept_too(tmp_path):
    (tmp_path / "incomplete-checkpoint-30").mkdir()
    PARTIAL["tokens only"](tmp_path / "checkpoint-30")
    assert set_aside_incomplete(tmp_path) == [(tmp_path / "checkpoint-30", tmp_path / "incomplete-checkpoint-30.2")]


def test_a_finished_runs_adapter_is_trusted_and_an_overwritten_one_is_not(tmp_path):
    out = adapter(tmp_path / "run")
    checkpoint(out, 30)
    assert "not marked finished (in mathpal_run.json) (last checkpoint: checkpoint-30)" in adapter_problem(out)
    (out / "debug.log").write_text("Axolotl's log of the run")
    assert "--allow-unfinished" in adapter_problem(out)
    write_marker(out, 40, 40)
    assert json.loads((out / RUN_RECORD).read_text())["global_step"] == 40
    assert adapter_problem(out) is None
    (out / "adapter_model.safetensors").write_bytes(safetensors_bytes(2.0))  # saved on SIGINT by a later run
    assert "weights changed after the run finished at step 40" in adapter_problem(out)


def test_weightless_and_configless_folders_say_what_they_lack(tmp_path):
    assert "has no adapter_config.json" in adapter_problem(tmp_path)
    assert "no adapter weights (adapter_model.safetensors)" in adapter_problem(adapter(tmp_path / "a", weights=None))
    assert "no adapter weights" in adapter_problem(adapter(tmp_path / "b", weights=b""))


@pytest.mark.parametrize("keep", [0.2, 0.9, 0.999])
def test_weights_cut_short_are_refused_even_with_allow_unfinished(keep, tmp_path):
    """What a full disk or a kill during the save leaves: the file's first bytes."""
    whole = safetensors_bytes()
    run = adapter(tmp_path / "run", whole[: int(len(whole) * keep)])
    write_marker(run, 5, 5)  # even a mark that matches these bytes does not make them loadable
    for allow in (False, True):
        problem = adapter_problem(run, allow_unfinished=allow)
        assert problem.startswith(f"{run / 'adapter_model.safetensors'} is cut short (") and "\n" not in problem
    assert adapter_problem(adapter(tmp_path / "whole", whole)) is None
    assert "is not a safetensors file" in adapter_problem(adapter(tmp_path / "text", b"not weights at all"))


def test_a_complete_checkpoint_can_be_graded_an_incomplete_one_not(tmp_path):
    assert adapter_problem(checkpoint(tmp_path, 10)) is None
    assert "incomplete checkpoint" in adapter_problem(checkpoint(tmp_path, 20, state='{"glob'))


def test_no_marker_without_an_adapter(tmp_path):
    assert write_marker(tmp_path, 1, 1) is None and not (tmp_path / RUN_RECORD).exists()


def test_an_adapter_saved_outside_a_training_run_is_trusted(tmp_path):
    """A PEFT save or a hub download has no run around it that could have been interrupted."""
    assert adapter_problem(adapter(tmp_path / "peft")) is None
    run = adapter(tmp_path / "run")
    (run / "debug.log").write_text("Axolotl's log of the run")
    assert "was not marked finished" in adapter_problem(run)


def test_the_finished_mark_joins_the_run_record_and_a_new_run_clears_only_the_mark(tmp_path):
    out = adapter(tmp_path / "run")
    write_record(out, {"status": "running", "system_prompt": "Bạn là MathPal."})
    write_marker(out, 12, 12)
    assert read_record(out)["system_prompt"] == "Bạn là MathPal." and read_record(out)["finished"] is True
    clear_finished(out)
    assert read_record(out) == {"status": "running", "system_prompt": "Bạn là MathPal."}


def test_allow_unfinished_takes_an_interrupted_runs_weights_but_never_a_weightless_folder(tmp_path):
    run = adapter(tmp_path / "run")
    (run / "debug.log").write_text("Axolotl's log of the run")
    assert adapter_problem(run) is not None and adapter_problem(run, allow_unfinished=True) is None
    assert "no adapter weights" in adapter_problem(adapter(tmp_path / "empty", weights=None), allow_unfinished=True)
