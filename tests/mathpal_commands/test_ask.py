"""`mathpal ask` on the tiny Gemma-3n: the training prompt, streaming, the same answer eval grades."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.generate import generate_batch, load_model
from mathpal_cli import app
from mathpal_commands.ask import ask, conversation, load_tutor, questions_from_file, summary_line
from tests.conftest import SYSTEM

runner = CliRunner()


@pytest.fixture(scope="module")
def tutor(trained_run_dir):
    return load_tutor(trained_run_dir)


def test_the_prompt_is_the_training_one(tutor, trained_run_dir, chat_examples):
    assert tutor.system_prompt == SYSTEM  # the run's data, not prepare-data's default
    assert f"system prompt from {trained_run_dir / 'mathpal_run.json'}" in tutor.description
    question = chat_examples[0]["messages"][1]["content"]
    rendered = tutor.tokenizer.apply_chat_template(
        conversation(tutor, question), add_generation_prompt=True, tokenize=False
    )
    # Axolotl's gemma3n template: the system text folded into the first user turn, then the model's turn.
    assert rendered.startswith(f"<bos><start_of_turn>user\n{SYSTEM}\n\n{question}<end_of_turn>\n")
    assert rendered.endswith("<start_of_turn>model\n")


def test_answers_are_the_ones_eval_generates(tutor, chat_examples):
    for example in chat_examples[:3]:
        question = example["messages"][1]["content"]
        pieces: list[str] = []
        answer = ask(tutor, question, max_new_tokens=12, write=pieces.append)
        (expected,) = generate_batch(tutor.model, tutor.tokenizer, [conversation(tutor, question)], 12)
        assert "".join(pieces).strip() == answer.text == expected.text
        assert answer.new_tokens == expected.new_tokens and answer.hit_limit == expected.hit_limit


def test_the_adapter_is_merged_in_memory_and_answers_with_the_tokens_of_the_attached_one(
    tutor, trained_run_dir, tiny_model_dir, chat_examples
):
    assert not hasattr(tutor.model, "peft_config") and "merged in memory" in tutor.description
    tokenizer, attached = load_model(str(tiny_model_dir), str(trained_run_dir), tokenizer_path=str(trained_run_dir))
    assert hasattr(attached, "peft_config")  # eval's model: the adapter attached, the baseline under it
    conversations = [conversation(tutor, e["messages"][1]["content"]) for e in chat_examples[:3]]
    merged = generate_batch(tutor.model, tutor.tokenizer, conversations, 24)
    assert [g.token_ids for g in merged] == [
        g.token_ids for g in generate_batch(attached, tokenizer, conversations, 24)
    ]
    assert merged[0].token_ids


def test_static_decoding_answers_as_the_default_and_is_chosen_on_cuda_only(tutor, chat_examples):
    assert tutor.decoding == "generate"  # a CPU: nothing compiles, a static cache only costs
    question = chat_examples[1]["messages"][1]["content"]
    default = ask(tutor, question, max_new_tokens=16, decoding="generate")
    static = ask(tutor, question, max_new_tokens=16, decoding="static")
    assert (static.text, static.new_tokens, static.hit_limit) == (default.text, default.new_tokens, default.hit_limit)


def test_the_summary_gives_the_time_to_the_first_token(tutor, chat_examples):
    answer = ask(tutor, chat_examples[2]["messages"][1]["content"], max_new_tokens=8)
    assert answer.first_token_s is not None and 0 < answer.first_token_s <= answer.seconds
    assert f"first after {answer.first_token_s:.2f} s" in summary_line(answer)


@contextmanager
def scripted(tutor, text: str):
    """Make the model write ``text`` then ``<end_of_turn>``: each forward call (the prompt, then
    one per new token) gets a large bias on the next scripted token's logit."""
    import torch

    script = [*tutor.tokenizer(text, add_special_tokens=False)["input_ids"], 106, 106]
    calls = iter(script)

    def steer(_module, _inputs, logits):
        bias = torch.zeros(logits.shape[-1])
        bias[next(calls)] = 1e4
        return logits + bias

    handle = tutor.model.get_output_embeddings().register_forward_hook(steer)
    try:
        yield len(script) - 2
    finally:
        handle.remove()


def test_tokens_stream_as_they_come_and_stop_at_end_of_turn(tutor):
    text = "Số quyển vở của hai bạn là:\n12 + 30 = 42 (quyển vở)\nĐáp số: 42 quyển vở"
    pieces: list[str] = []
    with scripted(tutor, text) as tokens:
        answer = ask(tutor, "Tính 12 + 30.", max_new_tokens=200, write=pieces.append)
    assert len(pieces) >= 3 and "".join(pieces).strip() == text  # line by line, as generated
    assert answer.text == text and answer.new_tokens == tokens and not answer.hit_limit  # stopped at <end_of_turn>
    assert answer.final_answer == "42 quyển vở"


def test_questions_from_a_jsonl_split_or_a_text_file(tmp_path, chat_examples):
    split = tmp_path / "test.jsonl"
    split.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in chat_examples[:3]), encoding="utf-8")
    assert questions_from_file(split, limit=2) == [e["messages"][1]["content"] for e in chat_examples[:2]]
    text = tmp_path / "q.txt"
    text.write_text("Tính 2 + 3.\n\n  Tính 4 x 5.  \n", encoding="utf-8")
    assert questions_from_file(text) == ["Tính 2 + 3.", "Tính 4 x 5."]


def test_cli_asks_an_argument_a_file_and_stdin(trained_run_dir, tiny_model_dir, tmp_path):
    common = ["ask", "--adapter", str(trained_run_dir), "--max-new-tokens", "6"]
    one = runner.invoke(app, [*common, "Tính 12 + 30."], terminal_width=300)
    assert one.exit_code == 0, one.output
    assert one.output.startswith(
        f"tutor: base {tiny_model_dir} + adapter {trained_run_dir} (merged in memory); system prompt from "
    )
    assert len(re.findall(r"final answer: .*\((\d) tokens in [\d.]+ s", one.output)) == 1, one.output
    questions = tmp_path / "q.txt"
    questions.write_text("Tính 12 + 30.\nTính 5 x 6.\n", encoding="utf-8")
    from_file = runner.invoke(app, [*common, "--file", str(questions)], terminal_width=300)
    assert from_file.exit_code == 0, from_file.output
    assert "[1] Tính 12 + 30." in from_file.output and "[2] Tính 5 x 6." in from_file.output
    assert from_file.output.count("final answer: ") == 2
    piped = runner.invoke(app, common, input="Tính 12 + 30.\n\nTính 5 x 6.\n", terminal_width=300)
    assert piped.exit_code == 0, piped.output
    assert piped.output.count("final answer: ") == 2 and "[2] Tính 5 x 6." in piped.output


@pytest.fixture()
def run_copy(trained_run_dir, tmp_path):
    """A finished run's folder of our own, to break."""
    return Path(shutil.copytree(trained_run_dir, tmp_path / "run"))


def one_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_ask_takes_only_an_adapter_eval_would_take(run_copy, tiny_model_dir, tmp_path):
    """The check eval, ask and merge share: finished mark, whole weights, the base model it names."""
    ask = ["ask", "--max-new-tokens", "2", "--adapter", str(run_copy)]
    record = json.loads((run_copy / "mathpal_run.json").read_text())
    interrupted = {k: v for k, v in record.items() if k not in ("finished", "adapter_sha256")}
    (run_copy / "mathpal_run.json").write_text(json.dumps(interrupted))
    error = one_error(runner.invoke(app, [*ask, "Tính 2 + 3."], terminal_width=400))
    assert error.startswith(f"error: --adapter {run_copy} is a training run that was not marked finished")
    assert runner.invoke(app, [*ask, "--allow-unfinished", "Tính 2 + 3."]).exit_code == 0
    (run_copy / "mathpal_run.json").write_text(json.dumps(record))
    other = Path(shutil.copytree(tiny_model_dir, tmp_path / "other-base"))
    error = one_error(runner.invoke(app, [*ask, "--model", str(other), "Tính 2 + 3."], terminal_width=400))
    assert error == (
        f"error: --adapter {run_copy} was trained on {tiny_model_dir}, not {other}: pass --model {tiny_model_dir}, "
        f"or --allow-other-base if {other} is a copy of it"
    )
    ok = runner.invoke(app, [*ask, "--model", str(other), "--allow-other-base", "Tính 2 + 3."], terminal_width=400)
    assert ok.exit_code == 0 and ok.output.startswith(f"tutor: base {other} + adapter"), ok.output
    weights = run_copy / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a save cut short by a full disk
    error = one_error(runner.invoke(app, [*ask, "Tính 2 + 3."], terminal_width=400))
    assert error.startswith(f"error: --adapter {weights} is cut short (")


@pytest.mark.parametrize("question", ["", "   "])
def test_an_empty_question_is_refused(question, trained_run_dir):
    result = runner.invoke(app, ["ask", "--adapter", str(trained_run_dir), question], terminal_width=400)
    assert one_error(result).startswith("error: the question is empty: ask something")


@pytest.mark.slow
def test_binary_stdin_and_empty_stdin_are_one_line(trained_run_dir, tmp_path):
    ask = [sys.executable, "-m", "mathpal_cli", "ask", "--adapter", str(trained_run_dir), "--max-new-tokens", "2"]
    binary = subprocess.run(ask, input=b"\x89PNG\r\n\x1a\n\xff\xfe", capture_output=True, timeout=300)
    empty = subprocess.run(ask, input=b"", capture_output=True, timeout=300)
    for result, message in (
        (binary, "error: standard input is not UTF-8 text (line 1, byte 0): pipe text, one question a line"),
        (empty, "error: no question on standard input: pass one as an argument, with --file, or one a line on stdin"),
    ):
        assert result.returncode == 2 and b"Traceback" not in result.stderr, result.stderr[-2000:]
        assert result.stderr.decode().strip().splitlines()[-1] == message


@pytest.mark.parametrize(
    "args, message",
    [
        (["Hỏi?"], "pass --adapter OUTPUT_DIR (a finished training run) or --model MERGED_DIR"),
        (["--adapter", "nowhere", "Hỏi?"], "--adapter nowhere does not exist: pass a finished run's output_dir"),
        (["--model", "nowhere", "Hỏi?"], "--model nowhere is not a model folder"),
        (["--adapter", ".", "--file", "missing.txt"], "--file missing.txt does not exist"),
    ],
)
def test_cli_errors_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["ask", *args], terminal_width=300)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
