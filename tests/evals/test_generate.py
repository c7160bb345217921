"""Batched generation gives the answers one-at-a-time generation gives, in input order; continuous
batching gives the eager path's token ids."""

from __future__ import annotations

import pytest

from evals.generate import (
    continuous_batch,
    generate_answers,
    generate_batch,
    load_model,
    prompt_ids,
    prompt_messages,
    static_cache,
    stop_token_ids,
)


def test_stop_tokens_are_eos_and_end_of_turn(tiny_model_dir):
    tokenizer, _ = load_model(str(tiny_model_dir))
    assert stop_token_ids(tokenizer) == [1, 106]


def test_prompt_leaves_out_the_reference(chat_examples):
    roles = [m["role"] for m in prompt_messages(chat_examples[0])]
    assert roles == ["system", "user"]


def test_batched_equals_single_and_keeps_order(tiny_model_dir, chat_examples):
    tokenizer, model = load_model(str(tiny_model_dir))
    examples = chat_examples[:5]
    batched = generate_answers(model, tokenizer, examples, batch_size=5, max_new_tokens=6)
    single = [generate_answers(model, tokenizer, [e], batch_size=1, max_new_tokens=6)[0] for e in examples]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.new_tokens <= 6 for g in batched)
    assert all(g.hit_limit == (g.new_tokens == 6) for g in batched)


def test_min_new_tokens_holds_back_the_stop_tokens(tiny_model_dir, chat_examples):
    tokenizer, model = load_model(str(tiny_model_dir))
    answers = generate_answers(model, tokenizer, chat_examples[:3], batch_size=3, max_new_tokens=7, min_new_tokens=7)
    assert [a.new_tokens for a in answers] == [7, 7, 7] and all(a.hit_limit for a in answers)


# --------------------------------------------------------------------------- continuous batching


def mixed_conversations(chat_examples) -> list[list[dict[str, str]]]:
    """Questions of clearly different prompt lengths (a batch that left padding pads a lot)."""
    conversations = []
    for i, example in enumerate(chat_examples[:6]):
        messages = [dict(m) for m in prompt_messages(example)]
        messages[-1]["content"] = messages[-1]["content"] + " Hãy giải thích từng bước." * (3 * i)
        conversations.append(messages)
    return conversations


def test_continuous_batching_gives_the_eager_token_ids_at_batch_one(tiny_model_dir, chat_examples):
    tokenizer, model = load_model(str(tiny_model_dir))
    (conversation,) = mixed_conversations(chat_examples)[:1]
    (eager,) = generate_batch(model, tokenizer, [conversation], max_new_tokens=12)
    (fast,) = continuous_batch(model, tokenizer, [conversation], max_new_tokens=12)
    assert fast.token_ids and fast.token_ids == eager.token_ids
    assert (fast.text, fast.new_tokens, fast.hit_limit) == (eager.text, eager.new_tokens, eager.hit_limit)


@pytest.mark.slow
def test_continuous_batching_gives_the_eager_token_ids_for_a_mixed_length_batch(tiny_model_dir, chat_examples):
    tokenizer, model = load_model(str(tiny_model_dir))
    conversations = mixed_conversations(chat_examples)
    lengths = [len(prompt_ids(tokenizer, c)) for c in conversations]
    assert max(lengths) - min(lengths) > 40  # left padding fills most of the shortest row
    eager = generate_batch(model, tokenizer, conversations, max_new_tokens=12)
    fast = continuous_batch(model, tokenizer, conversations, max_new_tokens=12)
    assert [g.token_ids for g in fast] == [g.token_ids for g in eager]
    assert len({g.token_ids for g in eager}) > 1  # the answers differ, so order matters


@pytest.mark.slow
def test_continuous_batching_decodes_through_the_adapter(tiny_model_dir, trained_run_dir, chat_examples):
    """A PEFT model: the adapter's answers, and the base model's under disable_adapter (eval's baseline)."""
    tokenizer, model = load_model(str(tiny_model_dir), adapter=str(trained_run_dir))
    conversations = mixed_conversations(chat_examples)[:3]
    tuned = continuous_batch(model, tokenizer, conversations, max_new_tokens=10)
    assert [g.token_ids for g in tuned] == [g.token_ids for g in generate_batch(model, tokenizer, conversations, 10)]
    with model.disable_adapter():
        base = continuous_batch(model, tokenizer, conversations, max_new_tokens=10)
        assert [g.token_ids for g in base] == [g.token_ids for g in generate_batch(model, tokenizer, conversations, 10)]
    assert [g.token_ids for g in base] != [g.token_ids for g in tuned]


def test_both_decodings_give_answers_of_the_lengths_asked_for_with_the_same_tokens(tiny_model_dir, chat_examples):
    """The benchmarks' spread of answer lengths: each answer exactly its length, whichever path decodes it."""
    tokenizer, model = load_model(str(tiny_model_dir))
    lengths = [3, 9, 1, 14, 6, 2]
    conversations = mixed_conversations(chat_examples)
    fast = continuous_batch(model, tokenizer, conversations, 15, lengths=lengths)
    eager = generate_batch(model, tokenizer, conversations, 15, lengths=lengths)  # room for the forced stop
    assert [a.new_tokens for a in fast] == lengths == [a.new_tokens for a in eager]
    assert [a.token_ids for a in fast] == [a.token_ids for a in eager]
    assert not any(a.hit_limit for a in eager)  # ended by the forced stop token, not the limit


def test_generate_answers_takes_either_decoding_and_refuses_others(tiny_model_dir, chat_examples):
    tokenizer, model = load_model(str(tiny_model_dir))
    examples = chat_examples[:5]
    eager = generate_answers(model, tokenizer, examples, batch_size=2, max_new_tokens=6)
    done = []
    fast = generate_answers(
        model, tokenizer, examples, batch_size=2, max_new_tokens=6, decoding="continuous", on_batch=done.append
    )
    assert [g.token_ids for g in fast] == [g.token_ids for g in eager]
    assert done == [1] * 5  # all questions queued at once (2 slots), progress as each answer ends
    static = generate_answers(model, tokenizer, examples, batch_size=2, max_new_tokens=6, decoding="static")
    assert [g.token_ids for g in static] == [g.token_ids for g in eager]
    with pytest.raises(ValueError, match="decoding 'vllm': use one of generate, static, continuous"):
        generate_answers(model, tokenizer, examples, decoding="vllm")


# --------------------------------------------------------------------------- static KV cache


def test_static_cache_gives_the_eager_token_ids_at_batch_one_and_for_a_mixed_length_batch(
    tiny_model_dir, chat_examples
):
    tokenizer, model = load_model(str(tiny_model_dir))
    conversations = mixed_conversations(chat_examples)
    for batch in (conversations[:1], conversations):
        eager = generate_batch(model, tokenizer, batch, max_new_tokens=12)
        fast = generate_batch(model, tokenizer, batch, max_new_tokens=12, static=True)
        assert fast[0].token_ids and [g.token_ids for g in fast] == [g.token_ids for g in eager]
        assert [g.hit_limit for g in fast] == [g.hit_limit for g in eager]


def test_static_cache_length_is_rounded_up_so_that_calls_share_one_shape():
    assert static_cache(100, 64) == {"cache_implementation": "static", "max_cache_len": 512}
    assert static_cache(448, 64)["max_cache_len"] == 512  # exactly full still fits
    assert static_cache(449, 64)["max_cache_len"] == 1024
