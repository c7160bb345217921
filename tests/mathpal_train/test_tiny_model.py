"""The tiny Gemma-3n: real classes, Gemma's special ids, Axolotl's template, trainable."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3nForCausalLM

from mathpal_train.tiny_model import END_OF_TURN_ID, write_tiny_model

TEXTS = [
    "Một cửa hàng có 1.200 kg gạo, đã bán 3/4 số gạo. Hỏi còn lại bao nhiêu ki-lô-gam gạo?",
    "Số gạo đã bán là:\n1.200 × 3 : 4 = 900 (kg)\nSố gạo còn lại là:\n1.200 - 900 = 300 (kg)\nĐáp số: 300 kg",
    "Bạn là MathPal, gia sư toán cho học sinh lớp 5 và lớp 6.",
] * 30


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_model(TEXTS, tmp_path_factory.mktemp("m") / "tiny", vocab_size=400, seed=1)


def test_checkpoint_loads_as_gemma3n_with_gemma_special_ids(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert isinstance(model, Gemma3nForCausalLM)
    ids = {
        t: tokenizer.convert_tokens_to_ids(t) for t in ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]
    }
    assert ids == {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<start_of_turn>": 105, "<end_of_turn>": END_OF_TURN_ID}
    assert model.config.vocab_size == len(tokenizer)
    assert list(model.generation_config.eos_token_id) == [1, END_OF_TURN_ID]


def test_chat_template_is_gemma3n(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    messages = [
        {"role": "system", "content": "Hệ thống"},
        {"role": "user", "content": "Câu hỏi"},
        {"role": "assistant", "content": "Lời giải"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<bos><start_of_turn>user\nHệ thống\n\nCâu hỏi<end_of_turn>\n<start_of_turn>model\nLời giải<end_of_turn>\n"
    )
    assert tokenizer.decode(tokenizer("Đáp số: 12,5 kg", add_special_tokens=False)["input_ids"]) == "Đáp số: 12,5 kg"


def test_pad_rows_are_not_zero_and_padded_gradients_are_finite(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert model.model.embed_tokens.weight[0].abs().sum() > 0
    assert model.model.embed_tokens_per_layer.weight[0].abs().sum() > 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    batch = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_same_seed_same_weights(tiny_dir, tmp_path):
    again = write_tiny_model(TEXTS, tmp_path / "again", vocab_size=400, seed=1)
    assert (again / "model.safetensors").read_bytes() == (tiny_dir / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_text() == (tiny_dir / "tokenizer.json").read_text()
