"""``mathpal merge``: a finished run's adapter folded into its base model, as one standalone folder.

The merge is PEFT's own ``merge_and_unload`` (W + scale x B A for every LoRA layer), the
one Axolotl's legacy merge calls too; nothing here computes weights. The base is loaded
unquantised, at the run's compute dtype (bf16 for the GPU recipes, fp32 for the CPU one):
a QLoRA adapter trained against nf4 weights is merged into the bf16 weights those
approximate, which is what Axolotl's ``merge_lora`` does as well.

The folder holds what ``from_pretrained`` needs and what training used to build prompts:
the weights, the run's tokenizer with its chat template, and the run's recipe and record
(so ``mathpal ask --model FOLDER`` finds the training system prompt). It is written
atomically (``staged_dir``): a failed or killed merge leaves the previous folder, or none.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mathpal_common.atomic_files import check_writable, staged_dir
from mathpal_train.recipes import RESOLVED_RECIPE_NAME
from mathpal_train.run_record import RUN_RECORD
from mathpal_train.trained_run import load_trained

MERGED_DIR_NAME = "merged"


def merge_dtype(recipe: dict):
    """The dtype the run computed in: bf16 or fp16 when the recipe trains in it, else fp32."""
    import torch

    if recipe.get("bf16") or recipe.get("load_in_4bit") or recipe.get("load_in_8bit"):
        return torch.bfloat16
    if recipe.get("fp16"):
        return torch.float16
    return torch.float32


def merge_adapter(
    source: Path,
    out: Path | None = None,
    base_model: str | None = None,
    allow_unfinished: bool = False,
    allow_other_base: bool = False,
) -> Path:
    """Merge the run of ``source`` (its output folder or recipe) into ``out`` (default ``<output_dir>/merged``);
    ``base_model`` replaces the run's (a local copy of the hub model, with ``allow_other_base``).

    The run is loaded as eval and ask load it (``trained_run.load_trained``), and the
    output folder is checked for writability before anything loads."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trained = load_trained(source, base_model, allow_unfinished, allow_other_base)
    run = trained.run
    out = Path(out) if out is not None else run.output_dir / MERGED_DIR_NAME
    if out.resolve() == run.output_dir.resolve():
        raise ValueError(f"--out {out} is the run's own folder: merge into a new folder")
    check_writable(out)
    dtype = merge_dtype(run.recipe)
    model = AutoModelForCausalLM.from_pretrained(trained.base_model, dtype=dtype)
    with torch.no_grad():
        merged = PeftModel.from_pretrained(model, trained.adapter).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(trained.tokenizer)
    with staged_dir(out) as staging:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if (run.output_dir / RESOLVED_RECIPE_NAME).is_file():
            shutil.copy2(run.output_dir / RESOLVED_RECIPE_NAME, staging / RESOLVED_RECIPE_NAME)
        merged_from = {"adapter": str(trained.adapter), "base_model": trained.base_model}
        record = {
            **run.record,
            "merged": {**merged_from, "dtype": str(dtype).removeprefix("torch.")},
            "system_prompt": trained.system_prompt,
        }
        (staging / RUN_RECORD).write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return out
