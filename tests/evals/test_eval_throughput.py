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
    assert [r["adapter"] for r in asked] == [None, None]
    # float32 on the CPU: the static path decodes the eager path's tokens exactly
    assert "same_tokens" not in generate
    assert (static["same_tokens"], static["first_divergence"], static["stopped_early"]) == (1.0, None, 0)
    assert asked[1]["same_text"] == 1.0 and "same_text" not in asked[0]
    table = bench.render(results)
    assert "| static | 2 |" in table and "| 100.0% |" in table


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


def test_agreement_counts_equal_answers_and_says_where_the_others_part(bench):
    """same_tokens is per answer; first_divergence the median first differing index of those that differ;
    an answer that is the start of the eager one ended at a stop token the eager row held back."""
    reference = [(1, 2, 3, 4), (1, 2, 3, 4), (5, 6, 7, 8), (9, 9, 9, 9)]
    answers = [(1, 2, 3, 4), (1, 2, 0, 4), (5, 0, 7, 8), (9, 9)]
    assert bench.agreement(reference, answers) == {
        "same_tokens": 0.25,
        "first_divergence": 2,  # median of 2, 1 and 2
        "stopped_early": 1,
    }
    assert bench.agreement(reference, reference) == {
        "same_tokens": 1.0,
        "first_divergence": None,
        "stopped_early": 0,
    }


def test_adapter_is_random_lora_on_the_recipes_targets_and_changes_the_output(bench, tiny_model_dir):
    """--adapter-rank attaches LoRA to every attention and MLP projection (the recipes' regex), with
    non-zero B matrices, so that the adapter really changes the logits (PEFT starts B at zero)."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = bench.e2b_text_config(tiny=True, vocab_size=len(tokenizer))
    model = bench.build_random_model(config, "cpu", torch.float32)
    projections = {name for name, _ in model.named_modules() if name.endswith("_proj") and ".layers." in name}
    model = bench.attach_adapter(model, 4)
    adapted = {name.removeprefix("base_model.model.") for name, m in model.named_modules() if hasattr(m, "lora_B")}
    assert adapted == projections and len(projections) >= 5 * config.num_hidden_layers
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.shape[1] == 4 and p.abs().sum() > 0 for p in lora_b)
    assert not model.training
    ids = torch.tensor([tokenizer("Lan có 12 quyển vở.")["input_ids"]])
    with torch.no_grad():
        attached = model(input_ids=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids).logits
    assert not torch.allclose(attached, base, atol=1e-4)


def test_ask_rows_with_an_adapter_run_attached_then_merged(bench, tiny_model_dir, monkeypatch):
    """Ask's eager row decodes with the adapter attached, its fast row merged (as mathpal ask loads it);
    --ask-max-new-tokens caps the ask answers apart from the batch rows' length."""
    real = bench.measure_ask
    lora_layers: list[int] = []  # per ask row: the LoRA layers of the model it decoded with

    def counting(model, *args, **kwargs):
        lora_layers.append(sum(hasattr(m, "lora_B") for m in model.modules()))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(bench, "measure_ask", counting)
    results = bench.main(
        ["--gpu-e2b", "--tiny-shape", "--tokenizer", str(tiny_model_dir), "--batch-sizes", "2"]
        + ["--max-new-tokens", "8", "--min-problems", "2", "--rounds", "1", "--decodings", "generate,static"]
        + ["--ask", "2", "--ask-max-new-tokens", "2", "--adapter-rank", "4"]
    )
    assert "LoRA r=4 attached (float32 adapter weights" in results["model"]
    assert results["adapter_rank"] == 4 and results["ask_max_new_tokens"] == 2
    assert all(r["new_tokens"] == 8 * r["problems"] for r in results["batches"])  # the batch rows keep 8
    asked = results["ask"]
    assert [(r["decoding"], r["adapter"]) for r in asked] == [("generate", "attached"), ("static", "merged")]
    assert lora_layers[0] > 0 and lora_layers[1] == 0  # merged in place, not only labelled so
    assert all("error" not in r and 0 < r["new_tokens"] <= 2 * r["questions"] for r in asked)
    assert 0.0 <= asked[1]["same_text"] <= 1.0
    table = bench.render(results)
    assert "| generate | attached | 2 |" in table and "| static | merged | 2 |" in table


def test_adapter_rank_needs_the_random_model(bench, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--adapter-rank", "4"])
    assert exit_info.value.code == 2
    assert "--adapter-rank needs --gpu-e2b" in capsys.readouterr().err


def test_a_failing_row_is_recorded_and_the_run_goes_on(bench, tiny_model_dir, tmp_path, monkeypatch, capsys):
    """A row that raises (out of memory, a compile error) becomes an error row; the rows before it are in
    the JSON already when it runs, and the rows after it are still measured."""
    import evals.generate

    out = tmp_path / "bench.json"
    real = evals.generate.generate_answers
    on_disk_when_it_failed: list[dict] = []

    def static_batch_1_breaks(*args, **kwargs):
        if kwargs.get("decoding") == "static" and kwargs.get("batch_size") == 1:
            on_disk_when_it_failed.append(json.loads(out.read_text()))
            raise RuntimeError("static broke\nsecond line")
        return real(*args, **kwargs)

    monkeypatch.setattr(evals.generate, "generate_answers", static_batch_1_breaks)
    results = bench.main(
        ["--gpu-e2b", "--tiny-shape", "--tokenizer", str(tiny_model_dir), "--batch-sizes", "1,2"]
        + ["--max-new-tokens", "3", "--min-problems", "2", "--rounds", "1"]
        + ["--decodings", "generate,static", "--json", str(out)]
    )
    rows = results["batches"]
    assert [(r["decoding"], r["batch_size"]) for r in rows] == [
        ("generate", 1),
        ("generate", 2),
        ("static", 1),
        ("static", 2),
    ]
    assert rows[2] == {"decoding": "static", "batch_size": 1, "error": "RuntimeError: static broke"}
    assert all("error" not in r and r["new_tokens"] == 6 for r in rows[:2] + rows[3:])
    assert rows[3]["same_tokens"] == 1.0
    assert [[r["decoding"] for r in disk["batches"]] for disk in on_disk_when_it_failed] == [["generate", "generate"]]
    assert json.loads(out.read_text()) == results
    assert results["speedup_over_batch_1"] > 0
    captured = capsys.readouterr()
    assert "Traceback" in captured.err and "static batch 1 failed: RuntimeError: static broke" in captured.err
    assert "| static | 1 | failed: RuntimeError: static broke |" in captured.out


def test_static_rows_hold_stop_tokens_back_like_generate_rows(bench, monkeypatch):
    """With fixed-length answers, the static row's timed call holds the stop tokens back as the generate
    row's does: otherwise an answer that reaches a stop token would count as a divergence."""
    from types import SimpleNamespace

    import evals.generate
    from evals.generate import Generation

    timed: dict[str, int] = {}

    def fake(model, tokenizer, examples, batch_size, max_new_tokens, min_new_tokens=0, decoding="generate", **kw):
        if max_new_tokens > 4:  # not the generate row's short warm-up
            timed[decoding] = min_new_tokens
        return [Generation("x", 5, True, (7,) * 5) for _ in examples]

    monkeypatch.setattr(evals.generate, "generate_answers", fake)
    for decoding in ("generate", "static"):
        row, tokens = bench.measure(SimpleNamespace(device="cpu"), None, [{}] * 2, 2, 5, 2, 1, True, decoding)
        assert row["new_tokens"] == 10 and tokens == [(7,) * 5] * 2
    assert timed == {"generate": 5, "static": 5}


def test_render_says_when_every_row_failed(bench):
    results = {
        "model": "m",
        "max_new_tokens": 3,
        "fixed_length": True,
        "answer_lengths": None,
        "machine": {},
        "batches": [{"decoding": "generate", "batch_size": 1, "error": "OutOfMemoryError: CUDA | out of memory"}],
        "ask": [{"decoding": "generate", "adapter": "attached", "error": "RuntimeError: boom"}],
    }
    table = bench.render(bench.summarise(results))
    assert "| generate | 1 | failed: OutOfMemoryError: CUDA \\| out of memory |" in table
    assert "| generate | attached | failed: RuntimeError: boom |" in table
    assert "every row failed" in table
    assert results["best_batch_size"] is None and results["speedup_over_batch_1"] is None
