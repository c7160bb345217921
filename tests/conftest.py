"""Shared fixtures: a tiny Gemma-3n and a few chat examples, made locally."""

from __future__ import annotations

import os

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
