"""`mathpal eval` and `mathpal score` as a user runs them: real tiny model, real comet_ml offline."""

from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner

from mathpal_cli import app
from mathpal_common.comet import flatten_metrics, read_offline_assets, read_offline_metrics

runner = CliRunner()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights, so tuned and base answers differ."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(
        r=4, target_modules=r"model.layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj", init_lora_weights=False
    )
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(out)
    return out


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_eval_baseline_end_to_end_on_the_tiny_model(tiny_model_dir, adapter_dir, chat_examples, in_tmp):
    data = write_jsonl(in_tmp / "test.jsonl", chat_examples[:4])
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tiny_model_dir),
            "--adapter",
            str(adapter_dir),
            "--baseline",
            "--data",
            str(data),
            "--batch-size",
            "2",
            "--max-new-tokens",
            "5",
            "--report-dir",
            "reports/e2e",
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    report = in_tmp / "reports" / "e2e"
    assert sorted(p.name for p in report.iterdir()) == [
        "accuracy_by_topic.png",
        "comet",
        "metrics.json",
        "report.md",
        "samples.jsonl",
    ]
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["models"]) == {"base", "tuned"} and metrics["n"] == 4 and metrics["command"] == "eval"
    assert set(metrics["generation"]["problems_per_s"]) == {"base", "tuned"}
    samples = [json.loads(line) for line in (report / "samples.jsonl").read_text().splitlines()]
    assert [s["model"] for s in samples] == ["base"] * 4 + ["tuned"] * 4
    assert all(isinstance(s["correct"], bool) and s["new_tokens"] <= 5 for s in samples)
    assert [s["prediction"] for s in samples[:4]] != [s["prediction"] for s in samples[4:]]
    for name in ("base", "tuned"):
        rows = [s for s in samples if s["model"] == name]
        assert metrics["models"][name]["accuracy"] == pytest.approx(sum(s["correct"] for s in rows) / 4)
        assert set(metrics["models"][name]["by_topic"]) == {"four_operations", "money"}
    comparison = metrics["comparison"]
    for metric in ("accuracy", "relevance", "completeness", "clarity"):
        row = comparison[metric]
        assert row["difference"] == pytest.approx(
            metrics["models"]["tuned"][metric] - metrics["models"]["base"][metric], abs=1e-5
        )
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    assert 0 <= comparison["accuracy"]["mcnemar"]["p_value"] <= 1
    # the Comet archive carries what metrics.json says, the samples table and the chart
    (archive,) = (report / "comet").glob("*.zip")
    expected = flatten_metrics(metrics)
    logged = read_offline_metrics(archive)
    assert {k: logged[k] for k in expected} == expected
    files = read_offline_assets(archive)
    assert files["accuracy_by_topic.png"][1] == (report / "accuracy_by_topic.png").read_bytes()
    assert len(files["samples.csv"][1].decode("utf-8").strip().splitlines()) > 8  # header + 8 rows (some multi-line)
    # the console: the summary table with problems/s and the verdict sentence
    assert "problems/s" in result.output and "McNemar" in result.output
    assert "of 4 problems; 95% CI" in result.output and f"report: {report.relative_to(in_tmp)}" in result.output


@pytest.mark.slow
def test_eval_with_continuous_batching_grades_the_same_answers(tiny_model_dir, adapter_dir, chat_examples, in_tmp):
    """--decoding continuous: the same predictions, grades and metrics as the default, for base and tuned."""
    data = write_jsonl(in_tmp / "test.jsonl", chat_examples[:5])
    reports = {}
    for decoding in ("generate", "continuous"):
        argv = ["eval", "--model", str(tiny_model_dir), "--adapter", str(adapter_dir), "--baseline"]
        argv += ["--data", str(data), "--batch-size", "3", "--max-new-tokens", "8", "--no-comet"]
        result = runner.invoke(app, [*argv, "--decoding", decoding, "--report-dir", f"r-{decoding}"])
        assert result.exit_code == 0, result.output
        reports[decoding] = in_tmp / f"r-{decoding}"
    samples = {d: (r / "samples.jsonl").read_text().splitlines() for d, r in reports.items()}
    assert samples["continuous"] == samples["generate"] and len(samples["generate"]) == 10
    metrics = {d: json.loads((r / "metrics.json").read_text()) for d, r in reports.items()}
    assert metrics["continuous"]["generation"]["decoding"] == "continuous"
    assert metrics["continuous"]["models"] == metrics["generate"]["models"]
    refused = runner.invoke(app, ["eval", "--data", str(data), "--decoding", "vllm"])
    assert refused.exit_code == 2 and "vllm" in refused.output


def test_help_lists_score():
    result = runner.invoke(app, ["--help"], terminal_width=200)
    line = next(line for line in result.output.splitlines() if " score " in line)
    assert "Grade answers you already have" in line
    usage = runner.invoke(app, ["score", "--help"], terminal_width=200)
    assert usage.exit_code == 0 and "PREDICTIONS" in usage.output and "--report-dir" in usage.output


def score_rows(n_right_base: int, n_right_tuned: int, total: int) -> list[dict]:
    rows = []
    for model, right in (("base", n_right_base), ("tuned", n_right_tuned)):
        for i in range(total):
            answer = "1.200 đồng" if i < right else "1.100 đồng"
            rows.append(
                {
                    "model": model,
                    "id": f"q{i}",
                    "question": f"Bài {i}",
                    "answer": "1 200 đồng",
                    "prediction": f"Ta có 1.000 + 200 = 1.200 (đồng)\n**Đáp số:** {answer}",
                    "topic": "money",
                }
            )
    return rows


def test_score_writes_the_same_report_and_says_if_it_is_noise(in_tmp):
    predictions = write_jsonl(in_tmp / "preds.jsonl", score_rows(10, 22, 30))
    result = runner.invoke(app, ["score", str(predictions), "--report-dir", "out", "--no-comet"], terminal_width=240)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (in_tmp / "out").iterdir()) == [
        "accuracy_by_topic.png",
        "metrics.json",
        "report.md",
        "samples.jsonl",
    ]
    metrics = json.loads((in_tmp / "out" / "metrics.json").read_text())
    assert metrics["comparison"]["accuracy"]["mcnemar"] == {
        "tuned_only_correct": 12,
        "base_only_correct": 0,
        "p_value": pytest.approx(2 / 4096),
    }
    assert (
        "The tuned model solves 40.0 points more problems than the base model (22 vs 10 of 30 problems" in result.output
    )
    assert "unlikely to be noise" in result.output


def test_score_with_a_key_and_no_server_keeps_the_report_and_an_archive(in_tmp, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/clientlib/"
    monkeypatch.setenv("COMET_API_KEY", "not-a-real-key")
    monkeypatch.setenv("COMET_URL_OVERRIDE", url)
    predictions = write_jsonl(in_tmp / "preds.jsonl", score_rows(1, 2, 3))
    result = runner.invoke(app, ["score", str(predictions), "--report-dir", "out"], terminal_width=400)
    assert result.exit_code == 0, result.output
    (archive,) = (in_tmp / "out" / "comet").glob("*.zip")
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: CometML server {url} unreachable within 10 s (ConnectionError); report kept, "
        f"logged offline to out/comet/{archive.name} (upload with `comet upload`)"
    ]
    metrics = json.loads((in_tmp / "out" / "metrics.json").read_text())
    logged = read_offline_metrics(archive)
    assert {k: logged[k] for k in flatten_metrics(metrics)} == flatten_metrics(metrics)


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["score", "missing.jsonl"], None, "missing.jsonl does not exist: pass a JSONL file"),
        (["score", "p.jsonl"], '{"question": "q", "answer": "1"}\n', "p.jsonl:1 has no 'prediction'"),
        (["score", "p.jsonl"], '{"question": "q", "answer": "1", "prediction": "1"}\n{oops\n', "p.jsonl:2 is not JSON"),
        (
            ["score", "p.jsonl"],
            '{"model": "base", "id": "a", "question": "q", "answer": "1", "prediction": "1"}\n'
            '{"model": "tuned", "id": "b", "question": "q", "answer": "1", "prediction": "1"}\n',
            "models 'base' and 'tuned' answer different problems",
        ),
        (
            ["eval", "--data", "p.jsonl", "--baseline"],
            '{"messages": [], "answer": "1"}\n',
            "--baseline compares the model with and without its adapter: pass --adapter too",
        ),
        (
            ["eval", "--data", "p.jsonl", "--adapter", "nowhere"],
            '{"messages": [], "answer": "1"}\n',
            "--adapter nowhere does not exist: pass a finished run's output_dir",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, content, message, in_tmp):
    if content is not None:
        (in_tmp / "p.jsonl").write_text(content, encoding="utf-8")
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not (in_tmp / "reports").exists()


def test_eval_refuses_an_adapter_on_another_base_model_than_it_names(trained_run_dir, tiny_model_dir, in_tmp):
    """The check eval shares with ask and merge: PEFT would load the adapter on any model of its shape."""
    import shutil

    other = shutil.copytree(tiny_model_dir, in_tmp / "other-base")
    split = write_jsonl(
        in_tmp / "test.jsonl",
        [json.loads(line) for line in (trained_run_dir.parents[1] / "data" / "test.jsonl").read_text().splitlines()],
    )
    args = ["eval", "--adapter", str(trained_run_dir), "--data", str(split), "--model", str(other), "--no-comet"]
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: --adapter {trained_run_dir} was trained on {tiny_model_dir}, not {other}: pass --model "
        f"{tiny_model_dir}, or --allow-other-base if {other} is a copy of it"
    )
    assert not (in_tmp / "reports").exists()
    allowed = runner.invoke(app, [*args, "--allow-other-base", "--limit", "1", "--max-new-tokens", "2"])
    assert allowed.exit_code == 0, allowed.output
