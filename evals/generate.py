"""Batched greedy generation through the model's chat template.

Three ways to decode, the same greedy answers:

- ``generate`` (the default): left padding keeps every prompt's last token at the same
  position, so one ``generate`` call answers a whole batch with the KV cache. A batch
  runs until its longest answer ends.
- ``static``: the same, with transformers' static KV cache, sized in steps of
  ``STATIC_CACHE_STEP`` tokens and kept for later calls. On CUDA transformers then compiles
  the decode step (CUDA graphs), once per cache shape: a decode step of Gemma-3n is bound by
  kernel launches, not by the GPU's arithmetic. On a CPU nothing is compiled and the fixed
  cache only costs: ``mathpal ask`` takes this path on CUDA alone.
- ``continuous``: transformers' continuous batching (``continuous_batching_context_manager``,
  a paged KV cache): every question is a request, and a finished answer frees its slot
  for the next question at once, so short answers no longer wait for long ones.

Generation stops at ``<end_of_turn>`` as well as ``<eos>`` (Gemma ends a model turn with
the former).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Decoding = Literal["generate", "static", "continuous"]
DECODINGS: tuple[str, ...] = ("generate", "static", "continuous")
# The static cache's length is rounded up to a multiple of this: calls whose prompt and answer fit
# reuse one cache, and on CUDA one compiled decode step (transformers keeps the largest cache).
STATIC_CACHE_STEP = 512
# The paged KV cache on a CPU: blocks sized to the work (transformers sizes it from free GPU memory).
CPU_CACHE_BLOCK = 32
CPU_BATCH_TOKENS = 1024


@dataclass(frozen=True)
class Generation:
    """One model response and how it ended."""

    text: str
    new_tokens: int
    hit_limit: bool  # stopped by max_new_tokens rather than an end-of-turn token
    token_ids: tuple[int, ...] = ()  # the answer's tokens, the stop token left out (equivalence checks)


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


def prompt_ids(tokenizer, conversation: list[dict[str, str]]) -> list[int]:
    """The token ids of one conversation's prompt, through the chat template, ready for the answer."""
    encoded = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


def finished(tokenizer, tokens: Sequence[int], stops: list[int]) -> Generation:
    """An answer's text from its new tokens: cut at the first stop token (a batch pads after it)."""
    tokens = list(tokens)
    ended = next((i for i, tok in enumerate(tokens) if tok in stops), None)
    kept = tokens[:ended] if ended is not None else [t for t in tokens if t != tokenizer.pad_token_id]
    text = tokenizer.decode(kept, skip_special_tokens=True).strip()
    return Generation(text=text, new_tokens=len(kept), hit_limit=ended is None, token_ids=tuple(kept))


def generate_batch(
    model,
    tokenizer,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    min_new_tokens: int = 0,
    streamer: Any = None,
    lengths: Sequence[int] | None = None,
    static: bool = False,
) -> list[Generation]:
    """Greedy answers for one batch of conversations.

    ``min_new_tokens`` (benchmarks only) holds back the stop tokens until that many tokens are
    out, so every batch size does the same work; ``lengths`` (benchmarks only) makes answer i
    exactly ``lengths[i]`` tokens, the batch running until its longest ends. A transformers
    ``streamer`` (batches of one) gets the text as it is generated (``mathpal ask``).
    ``static``: decode with a static KV cache (the ``static`` decoding above).
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
            **({"logits_processor": [exact_lengths(lengths, inputs["input_ids"].shape[1], stops)]} if lengths else {}),
            **(static_cache(inputs["input_ids"].shape[1], max_new_tokens) if static else {}),
        )
    new = output[:, inputs["input_ids"].shape[1] :]
    return [finished(tokenizer, row, stops) for row in new.tolist()]


def static_cache(prompt_width: int, max_new_tokens: int) -> dict[str, Any]:
    """``generate``'s arguments for a static KV cache that holds the prompt and the answer, its length
    rounded up to a multiple of ``STATIC_CACHE_STEP`` (so that most calls reuse one cache shape)."""
    needed = prompt_width + max_new_tokens
    return {
        "cache_implementation": "static",
        "max_cache_len": math.ceil(needed / STATIC_CACHE_STEP) * STATIC_CACHE_STEP,
    }


def exact_lengths(lengths: Sequence[int], prompt_width: int, stops: list[int]):
    """A logits processor that ends answer i after exactly ``lengths[i]`` tokens: stop tokens held
    back before, the first stop token forced then (benchmarks: a realistic spread of lengths)."""
    import torch
    from transformers import LogitsProcessor

    class ExactLengths(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            step = input_ids.shape[1] - prompt_width
            ending = torch.tensor([step >= n for n in lengths], device=scores.device)
            scores[:, stops] = float("-inf")
            scores[ending] = float("-inf")
            scores[ending, stops[0]] = 0.0
            return scores

    return ExactLengths()


def continuous_batch(
    model,
    tokenizer,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    lengths: Sequence[int] | None = None,
    slots: int | None = None,
    on_answer: Callable[[], None] | None = None,
) -> list[Generation]:
    """Greedy answers for all ``conversations`` through transformers' continuous batching.

    At most ``slots`` answers are decoded at once (None: as many as the cache holds); each
    finished answer's slot goes to the next question, and ``on_answer`` is called.
    ``lengths`` (benchmarks only): answer i is exactly ``lengths[i]`` tokens (stop tokens
    ignored), to give the batch a realistic spread of answer lengths. A PEFT model decodes
    through its base model, whose layers carry the adapter. Raises ``RuntimeError`` when a
    request fails or the manager stops before every answer is in (transformers' own
    ``generate_batch`` only logs those).
    """
    import torch
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    stops = stop_token_ids(tokenizer)
    prompts = [prompt_ids(tokenizer, c) for c in conversations]
    limits = list(lengths) if lengths is not None else [max_new_tokens] * len(prompts)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    cuda = inner.device.type == "cuda"
    cache = ContinuousBatchingConfig(max_requests_per_batch=slots)
    if not cuda:  # sized to the work: transformers would size it from GPU memory
        blocks = sum(math.ceil((len(p) + n) / CPU_CACHE_BLOCK) for p, n in zip(prompts, limits, strict=True))
        layers = inner.config.get_text_config().num_hidden_layers  # at most one cache group a layer
        cache = ContinuousBatchingConfig(
            block_size=CPU_CACHE_BLOCK,
            num_blocks=layers * blocks,
            max_batch_tokens=CPU_BATCH_TOKENS,
            max_requests_per_batch=slots,
        )
    config = GenerationConfig(
        max_new_tokens=max(limits), do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id
    )
    results: dict[str, Any] = {}
    with (
        torch.inference_mode(),
        inner.continuous_batching_context_manager(
            generation_config=config, continuous_batching_config=cache, warmup=cuda, block=True, timeout=5
        ) as manager,
    ):
        for i, (prompt, limit) in enumerate(zip(prompts, limits, strict=True)):
            eos = -1 if lengths is not None else stops
            manager.add_request(prompt, request_id=f"q{i}", max_new_tokens=limit, eos_token_id=eos)
        while len(results) < len(prompts):
            result = manager.get_result(timeout=1)
            if result is None:
                if not manager.is_running():
                    raise RuntimeError(
                        f"continuous batching stopped with {len(prompts) - len(results)} questions unanswered"
                    )
                continue
            if result.error:
                raise RuntimeError(f"continuous batching failed on question {result.request_id}: {result.error}")
            if result.is_finished():
                results[result.request_id] = result
                if on_answer:
                    on_answer()
    return [finished(tokenizer, results[f"q{i}"].generated_tokens, stops) for i in range(len(prompts))]


def generate_answers(
    model,
    tokenizer,
    examples: list[dict[str, Any]],
    batch_size: int = 8,
    max_new_tokens: int = 256,
    on_batch: Callable[[int], None] | None = None,
    min_new_tokens: int = 0,
    decoding: Decoding = "generate",
    lengths: Sequence[int] | None = None,
) -> list[Generation]:
    """Answers for every example, in order, ``batch_size`` prompts per ``generate`` call.

    Prompts are sorted by length inside the run so each batch pads little, then
    put back in the input order (``decoding="static"``: the same, with a static KV cache).
    With ``decoding="continuous"`` all questions go to
    continuous batching at once, ``batch_size`` of them decoded at a time, a finished
    answer's slot refilled at once; ``min_new_tokens`` is for the ``generate`` path only.
    ``lengths`` (benchmarks only): example i's answer is exactly ``lengths[i]`` tokens.
    """
    if decoding not in DECODINGS:
        raise ValueError(f"decoding {decoding!r}: use one of {', '.join(DECODINGS)}")
    if decoding == "continuous":
        conversations = [prompt_messages(e) for e in examples]
        return continuous_batch(
            model,
            tokenizer,
            conversations,
            max_new_tokens,
            lengths=lengths,
            slots=batch_size,
            on_answer=(lambda: on_batch(1)) if on_batch else None,
        )
    order = sorted(range(len(examples)), key=lambda i: sum(len(m["content"]) for m in prompt_messages(examples[i])))
    results: dict[int, Generation] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        conversations = [prompt_messages(examples[i]) for i in chunk]
        wanted = [lengths[i] for i in chunk] if lengths is not None else None
        outputs = generate_batch(
            model,
            tokenizer,
            conversations,
            max_new_tokens,
            min_new_tokens,
            lengths=wanted,
            static=decoding == "static",
        )
        results.update(zip(chunk, outputs))
        if on_batch:
            on_batch(len(chunk))
    return [results[i] for i in range(len(examples))]
