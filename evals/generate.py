"""Batched greedy generation through the model's chat template.

Left padding keeps every prompt's last token at the same position, so one
``generate`` call answers a whole batch with the KV cache; generation stops at
``<end_of_turn>`` as well as ``<eos>`` (Gemma ends a model turn with the former).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Generation:
    """One model response and how it ended."""

    text: str
    new_tokens: int
    hit_limit: bool  # stopped by max_new_tokens rather than an end-of-turn token


def load_model(model_path: str, adapter: str | None = None, tokenizer_path: str | None = None):
    """Tokenizer and model (with the LoRA adapter attached when given), in eval mode.

    The adapter is attached, not merged, so ``model.disable_adapter()`` gives the
    base model back for a baseline without loading the weights twice. ``tokenizer_path``:
    a training run's folder, whose tokenizer carries the chat template it trained with.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or model_path)
    tokenizer.padding_side = "left"
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    if torch.cuda.is_available():
        model = model.to("cuda")
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    return tokenizer, model


def stop_token_ids(tokenizer) -> list[int]:
    """``<eos>`` and, when the vocabulary has it, ``<end_of_turn>``."""
    ids = [tokenizer.eos_token_id]
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.append(end_of_turn)
    return [i for i in dict.fromkeys(ids) if i is not None]


def prompt_messages(example: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation up to the user's question (the reference answer is left out)."""
    return [m for m in example["messages"] if m["role"] != "assistant"]


def generate_batch(
    model,
    tokenizer,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    min_new_tokens: int = 0,
    streamer: Any = None,
) -> list[Generation]:
    """Greedy answers for one batch of conversations.

    ``min_new_tokens`` (benchmarks only) holds back the stop tokens until that many tokens are
    out, so every batch size does the same work. A transformers ``streamer`` (batches of one)
    gets the text as it is generated (``mathpal ask``).
    """
    import torch

    inputs = tokenizer.apply_chat_template(
        conversations, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    stops = stop_token_ids(tokenizer)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,
            **({"min_new_tokens": min_new_tokens} if min_new_tokens else {}),
            **({"streamer": streamer} if streamer is not None else {}),
        )
    new = output[:, inputs["input_ids"].shape[1] :]
    results = []
    for row in new.tolist():
        ended = next((i for i, tok in enumerate(row) if tok in stops), None)
        kept = row[:ended] if ended is not None else [t for t in row if t != tokenizer.pad_token_id]
        text = tokenizer.decode(kept, skip_special_tokens=True).strip()
        results.append(Generation(text=text, new_tokens=len(kept), hit_limit=ended is None))
    return results


def generate_answers(
    model,
    tokenizer,
    examples: list[dict[str, Any]],
    batch_size: int = 8,
    max_new_tokens: int = 256,
    on_batch: Callable[[int], None] | None = None,
    min_new_tokens: int = 0,
) -> list[Generation]:
    """Answers for every example, in order, ``batch_size`` prompts per ``generate`` call.

    Prompts are sorted by length inside the run so each batch pads little, then
    put back in the input order.
    """
    order = sorted(range(len(examples)), key=lambda i: sum(len(m["content"]) for m in prompt_messages(examples[i])))
    results: dict[int, Generation] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        conversations = [prompt_messages(examples[i]) for i in chunk]
        outputs = generate_batch(model, tokenizer, conversations, max_new_tokens, min_new_tokens)
        results.update(zip(chunk, outputs))
        if on_batch:
            on_batch(len(chunk))
    return [results[i] for i in range(len(examples))]
