"""Batched generation gives the answers one-at-a-time generation gives, in input order."""

from __future__ import annotations

from evals.generate import generate_answers, load_model, prompt_messages, stop_token_ids


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
