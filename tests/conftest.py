"""Shared fixtures: a tiny Gemma-3n and a few chat examples, made locally."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Tests never reach a hub and never send telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
os.environ.pop("COMET_API_KEY", None)

SYSTEM = "Bạn là MathPal, gia sư toán cho học sinh lớp 5 và lớp 6."


def chat_example(i: int) -> dict:
    """A small but real problem in our JSONL format (numbers computed, not typed)."""
    a, b = 12 + 7 * i, 30 + 11 * i
    return {
        "id": f"ex{i:03d}",
        "entry_id": f"{i:024x}",
        "grade_id": "grade_5" if i % 2 else "grade_6",
        "topic": "four_operations" if i % 3 else "money",
        "answer": f"{a + b} quyển vở",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": f"Lan có {a} quyển vở, Mai có {b} quyển vở. Hỏi hai bạn có tất cả bao nhiêu quyển vở?",
            },
            {
                "role": "assistant",
                "content": f"Số quyển vở của hai bạn là:\n{a} + {b} = {a + b} (quyển vở)\nĐáp số: {a + b} quyển vở",
            },
        ],
    }


@pytest.fixture(scope="session")
def chat_examples() -> list[dict]:
    return [chat_example(i) for i in range(12)]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, chat_examples):
    """A tiny Gemma-3n checkpoint whose tokenizer was trained on the examples."""
    from mathpal_train.tiny_model import write_tiny_model

    texts = [m["content"] for e in chat_examples for m in e["messages"]] * 5
    return write_tiny_model(texts, tmp_path_factory.mktemp("tiny") / "tiny-gemma3n", vocab_size=400, seed=1)


def write_recipe_inputs(folder: Path, tiny_model: Path, rows: int = 40) -> Path:
    """What the recipes point at, inside ``folder``: ``data/{train,validation}.jsonl`` of real chat rows
    and ``.mathpal/tiny-gemma3n`` (a link to a tiny model). Returns ``folder``."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name, count in (("train", rows), ("validation", 4)):
        text = "".join(json.dumps(chat_example(i), ensure_ascii=False) + "\n" for i in range(count))
        (folder / "data" / f"{name}.jsonl").write_text(text, encoding="utf-8")
    (folder / ".mathpal").mkdir(exist_ok=True)
    link = folder / ".mathpal" / "tiny-gemma3n"
    if not link.exists():
        link.symlink_to(Path(tiny_model).absolute())
    return folder


LORA_TARGETS = r"model.layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj"


@pytest.fixture(scope="session")
def trained_run_dir(tmp_path_factory, tiny_model_dir, chat_examples):
    """A finished run's folder as `mathpal train` leaves it, without the minutes of training: a LoRA
    adapter with random (non-zero) weights on the tiny model, the tokenizer, the resolved recipe,
    a data export with its manifest, and the run record (status finished, a Comet key, the finished mark)."""
    import hashlib
    import json

    import yaml
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mathpal_train.recipes import RESOLVED_RECIPE_NAME
    from mathpal_train.run_record import write_record
    from mathpal_train.run_state import write_marker
    from mathpal_train.train_job import start_record

    work = tmp_path_factory.mktemp("run")
    data = work / "data"
    data.mkdir()
    splits = {"train": chat_examples[:8], "validation": chat_examples[8:10], "test": chat_examples[10:]}
    for name, rows in splits.items():
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in rows)
        (data / f"{name}.jsonl").write_text(text, encoding="utf-8")
    manifest = {
        "source": {"collection": "vector_exams"},
        "counts": {"splits": {name: len(rows) for name, rows in splits.items()}},
        "files": {f"{n}.jsonl": hashlib.sha256((data / f"{n}.jsonl").read_bytes()).hexdigest() for n in splits},
    }
    (data / "manifest.json").write_text(json.dumps(manifest) + "\n", encoding="utf-8")
    out = work / "outputs" / "tiny"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(model, LoraConfig(r=4, target_modules=LORA_TARGETS, init_lora_weights=False)).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    recipe = {
        "base_model": str(tiny_model_dir),
        "model_type": "Gemma3nForCausalLM",
        "chat_template": "gemma3n",
        "adapter": "lora",
        "lora_r": 4,
        "lora_target_modules": LORA_TARGETS,
        "datasets": [{"path": str(data / "train.jsonl"), "ds_type": "json", "type": "chat_template"}],
        "output_dir": str(out),
        "use_comet": True,
        "bf16": False,
    }
    (out / RESOLVED_RECIPE_NAME).write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    record = start_record(recipe, {})
    write_record(out, {**record, "status": "finished"})
    write_marker(out, 1, 1)  # as RunStatePlugin marks a run that trained to the end
    return out
