"""The whole CPU pipeline, as a user runs it: Qdrant → data → tiny model → Axolotl LoRA → eval.

Slow (a few minutes): Axolotl really trains through `accelerate launch`. Smaller
than `make demo` (fewer problems and steps), same commands.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mathpal_common.comet import flatten_metrics, read_offline_key, read_offline_metrics
from mathpal_train.train_log import eval_loss_history

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def mathpal(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "mathpal_cli", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"mathpal {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    mathpal("seed-qdrant", "--problems", "400", cwd=work)
    mathpal("prepare-data", "--val-fraction", "0.05", "--test-fraction", "0.05", cwd=work)
    mathpal("tiny-model", "--vocab-size", "1024", cwd=work)
    train = mathpal(
        "train",
        str(REPO / "recipes" / "smoke.yml"),
        "--max-steps",
        "40",
        "--set",
        "eval_steps=20",
        "--set",
        "use_comet=true",
        cwd=work,
    )
    mathpal(
        "eval",
        "--adapter",
        "outputs/smoke",
        "--baseline",
        "--limit",
        "6",
        "--max-new-tokens",
        "48",
        "--report-dir",
        "reports/e2e",
        cwd=work,
    )
    ask = ["ask", "--file", "data/test.jsonl", "--limit", "1", "--max-new-tokens", "24"]
    asked = mathpal(*ask, "--adapter", "outputs/smoke", cwd=work)
    merged = mathpal("merge", "outputs/smoke", cwd=work)
    asked_merged = mathpal(*ask, "--model", "outputs/smoke/merged", cwd=work)
    return work, train, (asked, merged, asked_merged)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_splits_exist_and_are_disjoint(pipeline):
    work, _, _ = pipeline
    splits = {name: read_jsonl(work / "data" / f"{name}.jsonl") for name in ("train", "validation", "test")}
    assert all(splits.values()), {k: len(v) for k, v in splits.items()}
    ids = [{row["id"] for row in rows} for rows in splits.values()]
    questions = [{row["messages"][1]["content"].casefold() for row in rows} for rows in splits.values()]
    for group in (ids, questions):
        assert not (group[0] & group[1]) and not (group[0] & group[2]) and not (group[1] & group[2])
    manifest = json.loads((work / "data" / "manifest.json").read_text())
    assert manifest["counts"]["splits"] == {k: len(v) for k, v in splits.items()}
    assert manifest["counts"]["duplicates"] > 0  # the sample collection has re-crawled problems


def test_training_ran_through_accelerate_and_eval_loss_fell(pipeline):
    work, train, _ = pipeline
    assert "launch" in train.stdout and "-m axolotl.cli.train" in train.stdout
    losses = eval_loss_history(work / "outputs" / "smoke")
    assert len(losses) >= 2, losses
    assert losses[-1][1] < losses[0][1] * 0.9, losses


def test_adapter_loads_with_peft_and_generates(pipeline):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work, _, _ = pipeline
    base = AutoModelForCausalLM.from_pretrained(work / ".mathpal" / "tiny-gemma3n")
    model = PeftModel.from_pretrained(base, work / "outputs" / "smoke")
    tokenizer = AutoTokenizer.from_pretrained(work / ".mathpal" / "tiny-gemma3n")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Lan có 5 quả táo."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_metrics_file_and_comet_archive_agree(pipeline):
    work, _, _ = pipeline
    report = work / "reports" / "e2e"
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["models"]) == {"base", "tuned"} and metrics["n"] == 6
    samples = read_jsonl(report / "samples.jsonl")
    assert len(samples) == 12 and all(isinstance(s["correct"], bool) for s in samples)
    (archive,) = (report / "comet").glob("*.zip")
    logged = read_offline_metrics(archive)
    expected = flatten_metrics(metrics)
    assert {name: logged[name] for name in expected} == expected
    # The evaluation adds to the training run's experiment, where the model artifact is too.
    key = json.loads((work / "outputs" / "smoke" / "mathpal_run.json").read_text())["comet"]["experiment_key"]
    assert read_offline_key(archive) == key
    training = sorted((work / "outputs" / "smoke" / "comet").glob("*.zip"))
    assert {read_offline_key(a) for a in training} == {key} and len(training) == 2


def answer_of(ask: subprocess.CompletedProcess) -> str:
    """What `mathpal ask` answered: everything after its `tutor:` line, less the timing."""
    lines = ask.stdout.splitlines()
    assert lines[0].startswith("tutor: ") and lines[-1].startswith("final answer: "), ask.stdout
    return "\n".join([*lines[1:-1], lines[-1].split("   (")[0]])


def test_the_trained_tutor_answers_and_its_merged_model_answers_the_same(pipeline):
    work, _, (asked, merged, asked_merged) = pipeline
    assert "system prompt from outputs/smoke/mathpal_run.json" in asked.stdout
    assert f"Merged model written to {Path('outputs/smoke/merged')}" in merged.stdout
    assert answer_of(asked).startswith("\n[1] ") and answer_of(asked) == answer_of(asked_merged)


def test_eval_ask_and_merge_load_the_same_thing_from_the_trained_run(pipeline, tmp_path):
    """The one loader on a run Axolotl really trained (the check is the one of the unit test)."""
    from tests.mathpal_commands.test_evaluate import assert_one_loader

    work = pipeline[0]
    assert_one_loader(work / "outputs" / "smoke", (work / ".mathpal" / "tiny-gemma3n").resolve(), tmp_path)
