"""`run_eval` end to end on the tiny model with a LoRA adapter: report files agree with each other."""

from __future__ import annotations

import json

import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from evals.comet_log import flatten_metrics, read_offline_metrics
from evals.evaluate import EvalSettings, read_examples, run_eval


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights, so tuned and base answers differ."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules=r"model.layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj",
                        init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture()
def test_file(tmp_path, chat_examples):
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in chat_examples[:4]))
    return path


def test_report_with_baseline(tiny_model_dir, adapter_dir, test_file, tmp_path, monkeypatch):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    settings = EvalSettings(model=str(tiny_model_dir), data=test_file, adapter=str(adapter_dir), baseline=True,
                            batch_size=2, max_new_tokens=5, report_dir=tmp_path / "report")
    report_dir, metrics = run_eval(settings)
    assert sorted(p.name for p in report_dir.iterdir()) == ["comet", "metrics.json", "report.md", "samples.jsonl"]
    assert json.loads((report_dir / "metrics.json").read_text()) == metrics
    assert set(metrics["models"]) == {"base", "tuned"} and metrics["n"] == 4
    samples = [json.loads(line) for line in (report_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["model"] for s in samples] == ["base"] * 4 + ["tuned"] * 4
    assert all(isinstance(s["correct"], bool) for s in samples)
    for name in ("base", "tuned"):
        rows = [s for s in samples if s["model"] == name]
        assert metrics["models"][name]["accuracy"] == pytest.approx(sum(s["correct"] for s in rows) / 4)
    assert [s["prediction"] for s in samples[:4]] != [s["prediction"] for s in samples[4:]]
    assert metrics["comparison"]["accuracy"] == pytest.approx(
        metrics["models"]["tuned"]["accuracy"] - metrics["models"]["base"]["accuracy"])
    archives = list((report_dir / "comet").glob("*.zip"))
    assert len(archives) == 1
    logged = read_offline_metrics(archives[0])
    expected = flatten_metrics(metrics)
    assert {k: logged[k] for k in expected} == expected
    assert "| base | 4 |" in (report_dir / "report.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]  # no staging left


def test_read_examples_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [], "answer": "1"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2 is not JSON"):
        read_examples(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="has no examples"):
        read_examples(empty)
