"""The memory estimate (``mathpal_train.memory``) against every peak measured in docs/performance.md.

    python -m benchmarks.memory_estimate                  # the estimate-vs-measured table (docs/performance.md)
    python -m benchmarks.memory_estimate --fit            # the fitted constants, derived from the "fit" rows
    python -m benchmarks.memory_estimate --baseline-rows  # recompute the baseline runs' longest rows (CPU, ~10 s)

Each row is a run of docs/performance.md (H100 80GB or H200, random-weight E2B-shaped
Gemma-3n): ``production.yml`` with the run's changes applied by the same override machinery
as ``mathpal train --set`` (the runs from before the speed plugin shipped turn it off), or the
baseline script's settings. Rows marked "fit" set the
constants (``fit``; docs/memory.md shows the derivation); the others are checks.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathpal_train.memory import (
    GIB,
    TrainSettings,
    estimate_peak,
    model_shape,
    settings_from_recipe,
)

REPO = Path(__file__).resolve().parents[1]
E2B = "google/gemma-3n-E2B-it"
ROW = 2048  # the benchmarks' sequence_len
# The baseline runs' longest row, in tokens, of the rows each run trained on (30 steps of
# `--baseline-micro-batches` rows, padded to the longest): `--baseline-rows` recomputes them.
BASELINE_LONGEST_ROW = {8: 210, 16: 215, 32: 215, 64: 215}


@dataclass(frozen=True)
class Row:
    """One measured run: what it changed, its peak (None: not measured), and whether it calibrates."""

    label: str
    measured_gib: float | None
    changes: dict[str, Any] = field(default_factory=dict)  # over recipes/production.yml
    baseline: dict[str, Any] | None = None  # TrainSettings of the baseline script instead
    fits: str = ""  # the constant this row calibrates ("slope", "layer", "offload", "fused"); "" for a check
    note: str = ""


def baseline_settings(micro_batch: int, row_tokens: int) -> dict[str, Any]:
    """The baseline of benchmarks/train_throughput.py: bnb nf4 with double quantisation, LoRA r=32,
    gradient checkpointing, and plain PEFT prepare_model_for_kbit_training (unquantised weights in fp32)."""
    from benchmarks.train_throughput import LORA_TARGETS, SKIP_4BIT

    return dict(
        micro_batch=micro_batch,
        row_tokens=row_tokens,
        quant="nf4",
        skip_modules=tuple(SKIP_4BIT),
        lora_r=32,
        lora_targets=tuple(LORA_TARGETS),
        frozen_fp32=True,
    )


def mb(rows: int) -> dict[str, Any]:
    return {"micro_batch_size": rows, "gradient_accumulation_steps": 8 // rows}


# The recipe as it was before the speed plugin shipped: the plugin's switches off.
NO_SPEED = {"gemma3n_fused_loss": False, "gemma3n_compile_layers": False}
PLUGIN = {"gemma3n_compile_layers": False}  # the fused loss alone


def old(rows: int, **changes: Any) -> dict[str, Any]:
    """A run of ``rows`` x (8 / rows) without the speed plugin, plus ``changes``."""
    return {**NO_SPEED, **mb(rows), **changes}


ZERO3_STORAGE = {"bnb_config_kwargs.bnb_4bit_quant_storage": "bfloat16"}
ROWS = [
    Row("without the plugin, micro batch 1 × 8 (shipped until 2026-12)", 15.7, old(1), fits="slope"),
    Row("without the plugin, 2 × 4", 25.0, old(2), fits="slope"),
    Row("without the plugin, 4 × 2", 43.7, old(4), fits="slope"),
    Row("without the plugin, 8 × 1", 80.9, old(8), note="measured on one H200 (2026-11-30)"),
    Row("2 × 4, `gradient_checkpointing: false`", 63.0, old(2, gradient_checkpointing=False), fits="layer"),
    Row("2 × 4, `chunked_cross_entropy: true`", 21.0, old(2, chunked_cross_entropy=True)),
    Row("2 × 4, `activation_offloading: true`", 18.7, old(2, activation_offloading=True), fits="offload"),
    Row("2 × 4, `lora_dropout: 0`", 25.0, old(2, lora_dropout=0.0)),
    Row("2 × 4, `torch_compile: true`", 22.3, old(2, torch_compile=True), note="compile is not modelled"),
    Row("2 × 4, ZeRO-2 × 1 GPU", 22.7, old(2, deepspeed="zero2")),
    Row("2 × 4, ZeRO-3 × 1 GPU (bf16 4-bit storage)", 22.7, old(2, deepspeed="zero3", **ZERO3_STORAGE)),
    Row("speed plugin (fused loss), 1 × 8", 9.3, {**PLUGIN, **mb(1)}, note="H200, 2026-12-04"),
    Row("speed plugin (fused loss), 4 × 2", 18.2, {**PLUGIN, **mb(4)}, fits="fused", note="H200, 2026-12-04"),
    Row("speed plugin (fused loss), 8 × 1", 29.9, {**PLUGIN, **mb(8)}, note="H200, 2026-12-04"),
    Row(
        "speed plugin + compiled layers, 4 × 2 (shipped)",
        17.5,
        {},
        note="H200, 2026-12-04; compile is not modelled",
    ),
    *(
        Row(
            f"baseline, micro batch {n} (longest row {BASELINE_LONGEST_ROW[n]} tokens)",
            peak,
            baseline=baseline_settings(n, BASELINE_LONGEST_ROW[n]),
            note="out of memory on the 80 GB card" if peak is None else "",
        )
        for n, peak in ((8, 19.6), (16, 27.5), (32, 43.2), (64, None))
    ),
    Row("baseline model, profiled step, 1 × 2048 tokens", 21.2, baseline=baseline_settings(1, ROW)),
    Row("baseline model, profiled step, 2 × 2048 tokens", 30.5, baseline=baseline_settings(2, ROW)),
]


def row_settings(row: Row) -> TrainSettings:
    """The settings of a row: production.yml with its changes, or the baseline's."""
    if row.baseline is not None:
        return TrainSettings(**row.baseline)
    from mathpal_train.launch import deepspeed_config
    from mathpal_train.recipes import load_recipe, resolve_recipe

    changes = dict(row.changes)
    if changes.get("deepspeed"):
        changes["deepspeed"] = str(deepspeed_config(changes["deepspeed"]))
    recipe, _ = resolve_recipe(load_recipe(REPO / "recipes" / "production.yml"), {}, list(changes.items()))
    return settings_from_recipe(recipe)


def estimated_gib(row: Row) -> float:
    return estimate_peak(model_shape(E2B), row_settings(row)).total


def table() -> list[str]:
    """The markdown table of docs/performance.md: estimate, measured, difference for every row."""
    lines = ["| run | estimated GiB | measured GiB | estimate − measured | role |", "|---|---:|---:|---:|---|"]
    for row in ROWS:
        estimate = estimated_gib(row)
        if row.measured_gib is None:
            measured, diff = "—", "—"
        else:
            relative = round((estimate - row.measured_gib) / row.measured_gib, 3) + 0.0  # no "-0.0 %"
            measured, diff = f"{row.measured_gib:.1f}", f"{relative:+.1%}"
        role = "fit" if row.fits else "check"
        note = f"; {row.note}" if row.note else ""
        lines.append(f"| {row.label} | {estimate:.1f} | {measured} | {diff} | {role}{note} |")
    return lines


def fit() -> dict[str, float]:
    """The constants of ``mathpal_train.memory``, derived from the "fit" rows (docs/memory.md)."""
    shape = model_shape(E2B)
    slope_rows = [row for row in ROWS if row.fits == "slope"]
    (no_ckpt,) = (row.measured_gib for row in ROWS if row.fits == "layer")
    (offload,) = (row.measured_gib for row in ROWS if row.fits == "offload")
    (fused_row,) = (row for row in ROWS if row.fits == "fused")
    xs = [row_settings(r).micro_batch for r in slope_rows]
    ys = [r.measured_gib for r in slope_rows]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    base = row_settings(slope_rows[0])
    estimate = estimate_peak(shape, base)
    static = estimate.weights + estimate.adapter
    stash = shape.layers * shape.streams * shape.hidden * 2 * ROW / GIB  # per row, checkpointed layer inputs
    width = (shape.streams * shape.hidden + shape.intermediate) * 2 * ROW / GIB  # one copy per row
    # checkpointing on:  slope = logits + stash + layer;  off:  (no_ckpt - intercept) / 2 = logits + layers x layer
    layer = ((no_ckpt - intercept) / 2 - (slope - stash)) / (shape.layers - 1)
    logits = slope - stash - layer
    logit_row = shape.vocab * 2 * ROW / GIB
    fused_per_row = (fused_row.measured_gib - intercept) / row_settings(fused_row).micro_batch - stash - layer
    return {
        "slope_gib_per_row": slope,
        "intercept_gib": intercept,
        "static_gib": static,
        "OVERHEAD_GIB": intercept - static,
        "LOGIT_COPIES": logits / logit_row,
        "LAYER_ACTIVATION_COPIES": layer / width,
        "OFFLOAD_LOGIT_COPIES": ((offload - intercept) / 2 - layer) / logit_row,
        "FUSED_LOSS_LAYER_SETS": fused_per_row / layer,
    }


def baseline_longest_rows(micro_batches=(8, 16, 32, 64), steps: int = 30, problems: int = 4000) -> dict[int, int]:
    """The longest row each baseline run trained on: the benchmark's data and tokenizer, rebuilt on a CPU."""
    import tempfile

    from benchmarks.train_throughput import tokenize, write_data
    from mathpal_train.tiny_model import gemma3n_chat_template, train_tokenizer

    with tempfile.TemporaryDirectory() as work:
        rows, texts = write_data(Path(work), problems)
    tokenizer = train_tokenizer(texts, 4096, gemma3n_chat_template())
    lengths = [len(tokenize(tokenizer, r, ROW)["input_ids"]) for r in rows[: (steps + 1) * max(micro_batches)]]
    return {n: max(lengths[: (steps + 1) * n]) for n in micro_batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", action="store_true", help="print the constants derived from the fit rows")
    parser.add_argument("--baseline-rows", action="store_true", help="recompute the baseline runs' longest rows")
    args = parser.parse_args()
    if args.baseline_rows:
        print(baseline_longest_rows())
    elif args.fit:
        for name, value in fit().items():
            print(f"{name:<26} {value:.4f}")
    else:
        print("\n".join(table()))


if __name__ == "__main__":
    main()
