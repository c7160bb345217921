"""The whole-run benchmark's CPU-checkable parts: the loss curves it compares and the commands it runs."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.train_whole_run import compare_curves, loss_curve, main, whole_run_argv
from mathpal_train.recipes import parse_set


def test_curves_agree_only_within_tolerance_at_every_step():
    exact = {5: 8.0, 10: 6.0, 15: 4.0}
    close = compare_curves({5: 8.04, 10: 6.03, 15: 4.02}, exact, 0.01)
    assert close["agree"] and close["steps_compared"] == 3
    assert close["max_relative_diff"] == pytest.approx(0.005) and close["worst_step"] in (5, 10, 15)
    drift = compare_curves({5: 8.0, 10: 6.0, 15: 4.1}, exact, 0.01)
    assert not drift["agree"] and drift["worst_step"] == 15 and drift["max_relative_diff"] == pytest.approx(0.025)


def test_a_missing_step_or_a_nan_is_not_agreement():
    exact = {5: 8.0, 10: 6.0}
    assert not compare_curves({5: 8.0}, exact, 0.01)["agree"]  # a run that stopped early
    assert not compare_curves({5: 8.0, 10: math.nan}, exact, 0.01)["agree"]
    assert not compare_curves({}, {}, 0.01)["agree"]


def test_the_curve_comes_from_the_last_checkpoints_log_history(tmp_path):
    """After a resume the last checkpoint's history holds the steps before the kill and the rerun's."""
    state = tmp_path / "checkpoint-20" / "trainer_state.json"
    state.parent.mkdir()
    history = [{"loss": 9.0, "step": 5}, {"eval_loss": 8.5, "step": 10}, {"loss": 8.0, "step": 10}]
    history += [{"loss": 7.0, "step": 15}, {"loss": 6.5, "step": 20}, {"train_runtime": 3.0, "step": 20}]
    state.write_text(json.dumps({"log_history": history}))
    assert loss_curve(tmp_path, 20) == {5: 9.0, 10: 8.0, 15: 7.0, 20: 6.5}
    assert loss_curve(tmp_path, 40) == {}


def test_the_runs_use_the_shipped_recipe_with_only_the_schedule_changed(tmp_path):
    import argparse

    args = argparse.Namespace(steps=120, learning_rate=2e-3, save_steps=40, logging_steps=5)
    argv = whole_run_argv(tmp_path / "m", tmp_path / "out", args, ["gemma3n_fused_loss=false"])
    assert argv[2:5] == ["mathpal_cli", "train", argv[4]] and argv[4].endswith("recipes/production.yml")
    assert argv[5] == "--debug"  # the whole output: the benchmarks time and read lines the quiet terminal hides
    sets = dict(parse_set([argv[i + 1] for i, a in enumerate(argv) if a == "--set"]))
    # production_argv's logging_steps=1 first, then the benchmark's own, which wins as the last --set does
    assert [a for a in argv if a.startswith("logging_steps=")] == ["logging_steps=1", "logging_steps=5"]
    assert sets["logging_steps"] == 5
    assert sets["learning_rate"] == 2e-3 and sets["save_steps"] == 40 and sets["warmup_steps"] == 12
    assert sets["gemma3n_fused_loss"] is False and argv[argv.index("--max-steps") + 1] == "120"


def test_save_steps_must_divide_the_run(capsys):
    with pytest.raises(SystemExit):
        main(["--steps", "100", "--save-steps", "40"])
    assert "--save-steps 40 does not divide --steps 100" in capsys.readouterr().err


def test_together_needs_no_kill(capsys):
    """Two runs at once cannot include a kill-and-rerun: the rerun's resume would race the other run."""
    with pytest.raises(SystemExit):
        main(["--together"])
    assert "--together needs --no-kill" in capsys.readouterr().err
