"""benchmarks/eval_throughput.py: the E2B shape it builds, and a run of its GPU mode at toy width on the CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread():
    """Toy-size matmuls gain nothing from a second thread, and on a shared 2-core machine a
    descheduled OpenMP thread stalls each of them by milliseconds (0.7 s → 20 s seen)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("eval_throughput", REPO / "benchmarks" / "eval_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_e2b_config_is_gemma_3n_e2b_text_tower(bench):
    config = bench.e2b_text_config()
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (30, 2048, [8192] * 30)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (8, 2, 256)
    assert config.num_kv_shared_layers == 10
    assert config.activation_sparsity_pattern == [0.95] * 10 + [0.0] * 20
    assert (config.vocab_size, config.vocab_size_per_layer_input, config.hidden_size_per_layer_input) == (
        262_400,
        262_144,
        256,
    )
    assert (config.laurel_rank, config.altup_num_inputs, config.sliding_window) == (64, 4, 512)
    assert [i for i, kind in enumerate(config.layer_types) if kind == "full_attention"] == [4, 9, 14, 19, 24, 29]
    assert config.final_logit_softcapping == 30.0 and config.tie_word_embeddings is True
    assert config.rope_parameters["full_attention"]["rope_theta"] == 1e6
    assert config.rope_parameters["sliding_attention"]["rope_theta"] == 1e4
    # ids with no per-layer embedding row are never generated (an out-of-range index on CUDA)
    assert bench.ids_without_per_layer_input(config) == list(range(262_144, 262_400))


def test_e2b_model_has_e2b_parameter_count_without_allocating_it(bench):
    import torch
    from transformers import Gemma3nForCausalLM

    with torch.device("meta"):
        model = Gemma3nForCausalLM(bench.e2b_text_config())
    assert model.model.embed_tokens_per_layer.weight.shape == (262_144, 30 * 256)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.435e9, rel=1e-3)


def test_gpu_mode_runs_at_tiny_shape_on_the_cpu(bench, tiny_model_dir, tmp_path):
    out = tmp_path / "bench.json"
    results = bench.main(
        [
            "--gpu-e2b",
            "--tiny-shape",
            "--tokenizer",
            str(tiny_model_dir),
            "--batch-sizes",
            "1,3",
            "--max-new-tokens",
            "3",
            "--min-problems",
            "3",
            "--rounds",
            "1",
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == results
    assert results["model"].startswith("tiny-shape Gemma-3n, random weights")
    assert [(b["batch_size"], b["problems"]) for b in results["batches"]] == [(1, 3), (3, 3)]
    assert all(b["new_tokens"] == 3 * b["problems"] for b in results["batches"])  # fixed-length answers
    assert results["best_batch_size"] in (1, 3) and results["speedup_over_batch_1"] > 0
    assert results["machine"]["gpu"] is None


def test_random_model_never_generates_ids_without_a_per_layer_row(bench, tiny_model_dir):
    """A toy model whose last 50 ids have no per-layer row, biased towards those ids: generation
    must still only produce ids the per-layer table has (on CUDA, anything else is a crash)."""
    import torch
    from transformers import AutoTokenizer

    from evals.generate import generate_answers

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = bench.e2b_text_config(tiny=True, vocab_size=len(tokenizer) + 50)
    config.vocab_size_per_layer_input = len(tokenizer)
    model = bench.build_random_model(config, "cpu", torch.float32)
    with torch.no_grad():  # tied head: make the per-layer-less ids the likeliest outputs
        model.model.embed_tokens.weight[len(tokenizer) :] *= 50
    examples = [{"messages": [{"role": "user", "content": "Lan có 12 quyển vở."}]}]
    (answer,) = generate_answers(model, tokenizer, examples, batch_size=1, max_new_tokens=6, min_new_tokens=6)
    assert answer.new_tokens == 6


def test_gpu_mode_without_gpu_says_what_to_do(bench):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="--gpu-e2b needs a CUDA GPU: add --tiny-shape"):
        bench.main(["--gpu-e2b"])


@pytest.mark.slow
def test_varied_answer_lengths_with_both_decodings(bench, tiny_model_dir, tmp_path):
    """The benchmark's realistic mode: each problem its own answer length, the same lengths for every
    row; generate and continuous decoding each give every answer exactly its length."""
    results = bench.main(
        ["--model", str(tiny_model_dir), "--batch-sizes", "1,4", "--min-problems", "4", "--rounds", "1"]
        + ["--answer-lengths", "2-9", "--decodings", "generate,continuous", "--json", str(tmp_path / "b.json")]
    )
    rows = results["batches"]
    assert [(r["decoding"], r["batch_size"]) for r in rows] == [
        ("generate", 1),
        ("generate", 4),
        ("continuous", 1),
        ("continuous", 4),
    ]
    lengths = bench.answer_lengths("2-9", 4)
    assert len(set(lengths)) > 1 and all(2 <= n <= 9 for n in lengths)
    assert {r["new_tokens"] for r in rows} == {sum(lengths)}  # the same work in every row
    assert results["answer_lengths"] == "2-9"
    assert "| continuous | 4 |" in bench.render(results)


def test_static_rows_and_ask_rows_at_tiny_shape(bench, tiny_model_dir, tmp_path):
    """The static-cache row decodes what the default row decodes, and ``--ask`` times the first question
    (any compile) apart from the rest, with the time to the first token."""
    results = bench.main(
        ["--gpu-e2b", "--tiny-shape", "--tokenizer", str(tiny_model_dir), "--batch-sizes", "2"]
        + ["--max-new-tokens", "3", "--min-problems", "2", "--rounds", "1", "--decodings", "generate,static"]
        + ["--ask", "2"]
    )
    generate, static = results["batches"]
    assert (generate["decoding"], static["decoding"]) == ("generate", "static")
    assert generate["new_tokens"] == static["new_tokens"] == 6 and static["warmup_s"] > 0
    asked = results["ask"]
    assert [(r["decoding"], r["questions"]) for r in asked] == [("generate", 2), ("static", 2)]
    assert all(r["first_call_s"] > 0 and r["new_tokens"] > 0 and r["first_token_s"] > 0 for r in asked)
    assert "| static | 2 |" in bench.render(results)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--answer-lengths", "400-50"], "--answer-lengths '400-50': write LO-HI"),
        (["--answer-lengths", "fifty"], "--answer-lengths 'fifty': write LO-HI"),
        (["--decodings", "generate,vllm"], "--decodings vllm: use generate, static, continuous"),
    ],
)
def test_bad_modes_are_refused_before_any_model_loads(bench, argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err
