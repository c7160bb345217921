"""The memory estimate: within 15 % of every peak measured on the H100, from the model's own counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from benchmarks.memory_estimate import E2B, ROWS, estimated_gib, row_settings, table
from mathpal_cli import app
from mathpal_train.memory import (
    TOLERANCE,
    TrainSettings,
    estimate_peak,
    fit_warning,
    lora_params,
    memory_lines,
    model_shape,
    settings_from_recipe,
)

REPO = Path(__file__).resolve().parents[2]
MEASURED = [row for row in ROWS if row.measured_gib is not None]


@pytest.mark.parametrize("row", MEASURED, ids=lambda r: r.label)
def test_estimate_is_within_15_percent_of_each_measured_peak(row):
    estimate = estimated_gib(row)
    assert abs(estimate - row.measured_gib) <= TOLERANCE * row.measured_gib, (estimate, row.measured_gib)


def test_the_checks_are_most_of_the_rows():
    """Four constants are fitted (on six rows); the other rows check the formula."""
    assert len([r for r in MEASURED if not r.fits]) >= 2 * len([r for r in MEASURED if r.fits])


def test_docs_show_the_current_table():
    performance = (REPO / "docs" / "performance.md").read_text(encoding="utf-8")
    assert "\n".join(table()) in performance


def test_e2b_counts_are_the_documented_ones():
    shape = model_shape(E2B)
    assert round(shape.total_params / 1e9, 3) == 4.435
    assert round(sum(i * o for _, i, o in shape.linear) / 1e9, 3) == 2.421
    per_layer = [n for name, kind, n in shape.params if name == "model.embed_tokens_per_layer"]
    assert per_layer == [262_144 * 30 * 256]
    production = settings_from_recipe(yaml.safe_load((REPO / "recipes" / "production.yml").read_text()))
    # LoRA r=32 on q/k/v/o/gate/up/down: 32 x (in + out) each; the 10 KV-shared layers have no k/v projections.
    qo_mlp, kv = 32 * ((2048 + 2048) * 2 + (2048 + 8192) * 3), 32 * (2048 + 512) * 2
    assert lora_params(shape, production) == 30 * qo_mlp + 20 * kv


def test_a_local_folder_is_read_from_its_config(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    shape = model_shape(str(tiny_model_dir))
    assert shape.total_params == sum(p.numel() for p in model.parameters())
    assert (shape.layers, shape.vocab) == (model.config.num_hidden_layers, model.config.vocab_size)


def test_what_the_settings_change(monkeypatch):
    shape = model_shape(E2B)
    base = row_settings(ROWS[1])  # production at micro batch 2
    plain = estimate_peak(shape, base)
    int8 = estimate_peak(shape, TrainSettings(**{**base.__dict__, "quant": "int8", "skip_modules": ()}))
    assert 0.5 < int8.weights - plain.weights < 1.5  # 1.9 B quantised weights at 1 byte instead of ~0.52
    fused = estimate_peak(shape, TrainSettings(**{**base.__dict__, "fused_ce": True}))
    assert fused.logits < plain.logits / 5 and fused.total < plain.total - 12
    assert "fused loss 2.7" in fused.line() and "logits" not in fused.line()
    sharded = estimate_peak(shape, TrainSettings(**{**base.__dict__, "gpus": 4, "zero_stage": 3}))
    assert sharded.weights == pytest.approx(plain.weights / 4)
    assert plain.per_row == pytest.approx(9.3, abs=0.1)


def test_warns_when_it_does_not_fit():
    estimate = estimate_peak(model_shape(E2B), row_settings(ROWS[1]))  # 25.0 GiB
    over = fit_warning(estimate, 24.0, "--gpu-memory")
    assert over.startswith("estimated peak 25.0 GiB exceeds the 24.0 GiB of --gpu-memory: lower micro_batch_size")
    assert "\n" not in over
    assert "may not fit" in fit_warning(estimate, 28.0, "--gpu-memory")  # within the estimate's 15 %
    assert fit_warning(estimate, 80.0, "--gpu-memory") is None


def test_an_unknown_model_is_a_line_not_an_error():
    lines, warning = memory_lines({"base_model": "someone/other-model"}, gpu_memory=24)
    assert lines == [
        "peak GPU memory:  not estimated (no architecture known offline for someone/other-model: "
        "pass a local model folder)"
    ]
    assert warning is None


def test_cli_validate_prints_the_estimate_and_warns_for_a_small_card(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("train", "validation"):
        (tmp_path / "data" / f"{name}.jsonl").write_text('{"messages": []}\n')
    production = str(REPO / "recipes" / "production.yml")
    runner = CliRunner()
    fits = runner.invoke(app, ["validate", production, "--gpu-memory", "24"], terminal_width=400)
    assert fits.exit_code == 0, fits.output
    assert "  peak GPU memory:  ~18.2 GiB per GPU (±15%)" in fits.output and "warning" not in fits.output
    too_big = runner.invoke(
        app, ["validate", production, "--gpu-memory", "24", "--set", "micro_batch_size=8"], terminal_width=400
    )
    assert too_big.exit_code == 0, too_big.output
    (warning,) = [line for line in too_big.output.splitlines() if line.startswith("warning: ")]
    assert "estimated peak 30.1 GiB exceeds the 24.0 GiB of --gpu-memory" in warning


def test_the_speed_plugin_counts_as_a_fused_loss_where_it_runs():
    from mathpal_train.launch import deepspeed_config

    production = yaml.safe_load((REPO / "recipes" / "production.yml").read_text())
    assert settings_from_recipe(production).fused_ce  # shipped with the plugin
    assert not settings_from_recipe({**production, "gemma3n_fused_loss": False}).fused_ce
    zero3 = {**production, "deepspeed": str(deepspeed_config("zero3"))}
    assert not settings_from_recipe(zero3, gpus=2).fused_ce  # lm_head sharded: the plugin runs the unfused loss
    assert settings_from_recipe({**production, "deepspeed": str(deepspeed_config("zero2"))}, gpus=2).fused_ce
    assert not settings_from_recipe({**production, "fsdp_config": {"fsdp_version": 2}}).fused_ce
    without = {**production, "plugins": ["mathpal_train.run_state.RunStatePlugin"]}
    assert not settings_from_recipe(without).fused_ce
