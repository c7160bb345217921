"""``mathpal ask``: the trained tutor answers questions, token by token, as it was trained to.

The prompt is built the way training built it: the run's tokenizer (Axolotl saves it, with
the chat template it trained with, beside the adapter), the training system prompt (the run
record's, else the first row of the recipe's training data, else ``prepare-data``'s
default; ``mathpal_train.trained_run``), then the question as the user turn. Generation is
greedy and stops at ``<end_of_turn>``, exactly as ``mathpal eval`` answers (``evals.generate``),
so an answer here is the answer eval grades. Tokens are printed as they come
(transformers' ``TextStreamer``), then the final answer the grader would extract, the time to
the first token and the rate.

Faster answers, the same tokens: ask never needs the base model alone, so the adapter is
merged into the loaded weights (no LoRA matmuls in each decode step); on CUDA the answer is
decoded with a static KV cache, whose decode step transformers compiles on the first
question (paid once per process while the questions fit the cache; ``evals.generate``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from evals.answers import extract_final_answer
from evals.generate import generate_batch, load_model
from mathpal_common.prompt import DEFAULT_PROMPT_SOURCE, DEFAULT_SYSTEM_PROMPT
from mathpal_train.run_record import RUN_RECORD, RunRecord
from mathpal_train.trained_run import load_trained


@dataclass(frozen=True)
class Tutor:
    """A loaded model, its tokenizer, the system prompt it answers under, and where each came from."""

    model: Any
    tokenizer: Any
    system_prompt: str
    description: str

    @property
    def decoding(self) -> str:
        """``static`` on CUDA, where compiling the decode step pays; ``generate`` elsewhere."""
        return "static" if self.model.device.type == "cuda" else "generate"


@dataclass(frozen=True)
class Answer:
    """One answer: the response text, the final answer extracted from it, and what it cost."""

    text: str
    final_answer: str | None
    new_tokens: int
    seconds: float
    hit_limit: bool
    first_token_s: float | None = None  # from the call to the first new token (the prompt's prefill, any compile)


def load_tutor(
    adapter: Path | None = None,
    model: str | None = None,
    allow_unfinished: bool = False,
    allow_other_base: bool = False,
) -> Tutor:
    """The tutor of a finished run (``adapter``: its output folder or recipe; ``model`` overrides its
    base), or a merged model folder (``model`` alone, as ``mathpal merge`` writes it). The adapter
    goes through the loader eval and merge use (``trained_run.load_trained``)."""
    if adapter is not None:
        try:
            trained = load_trained(adapter, model, allow_unfinished, allow_other_base)
        except ValueError as err:
            raise ValueError(f"--adapter {err}") from None
        system_prompt, prompt_source = trained.system_prompt, trained.prompt_source
        tokenizer, loaded = load_model(trained.base_model, str(trained.adapter), tokenizer_path=trained.tokenizer)
        loaded = loaded.merge_and_unload()  # in memory only: the same answers, no LoRA matmuls per step
        where = f"base {trained.base_model} + adapter {trained.adapter} (merged in memory)"
    elif model is not None:
        folder = Path(model)
        if not (folder / "config.json").is_file() and "/" not in model:
            raise ValueError(f"--model {model} is not a model folder: pass a `mathpal merge` output or a hub id")
        recorded = RunRecord.read(folder).system_prompt if folder.is_dir() else None  # a merged folder keeps it
        if recorded:
            system_prompt, prompt_source = recorded, str(folder / RUN_RECORD)
        else:
            system_prompt, prompt_source = DEFAULT_SYSTEM_PROMPT, DEFAULT_PROMPT_SOURCE
        tokenizer, loaded = load_model(model)
        where = f"model {model}"
    else:
        raise ValueError("pass --adapter OUTPUT_DIR (a finished training run) or --model MERGED_DIR")
    return Tutor(loaded, tokenizer, system_prompt, f"{where}; system prompt from {prompt_source}")


def conversation(tutor: Tutor, question: str) -> list[dict[str, str]]:
    """The prompt as training saw it: the system prompt, then the question."""
    return [{"role": "system", "content": tutor.system_prompt}, {"role": "user", "content": question}]


def ask(
    tutor: Tutor,
    question: str,
    max_new_tokens: int = 512,
    write: Callable[[str], None] | None = None,
    decoding: str | None = None,
) -> Answer:
    """Answer ``question`` greedily, passing each decoded piece to ``write`` as it is generated.

    ``decoding``: ``generate`` or ``static`` (``evals.generate``); None: the tutor's own choice."""
    from transformers import TextStreamer

    tokenizer, model = tutor.tokenizer, tutor.model
    first_token: list[float] = []

    class Echo(TextStreamer):
        def put(self, value) -> None:
            if not self.next_tokens_are_prompt and not first_token:
                first_token.append(time.perf_counter())
            super().put(value)

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if write is not None and text:
                write(text)

    static = (decoding or tutor.decoding) == "static"
    started = time.perf_counter()
    echo = Echo(tokenizer, skip_prompt=True, skip_special_tokens=True)
    (answer,) = generate_batch(
        model, tokenizer, [conversation(tutor, question)], max_new_tokens, streamer=echo, static=static
    )
    seconds = time.perf_counter() - started
    first = first_token[0] - started if first_token else None
    return Answer(answer.text, extract_final_answer(answer.text), answer.new_tokens, seconds, answer.hit_limit, first)


def summary_line(answer: Answer) -> str:
    """The line after a streamed answer: the extracted final answer, tokens and time."""
    final = answer.final_answer if answer.final_answer is not None else "none found"
    limit = ", stopped at --max-new-tokens" if answer.hit_limit else ""
    rate = answer.new_tokens / answer.seconds if answer.seconds > 0 else 0.0
    first = f", first after {answer.first_token_s:.2f} s" if answer.first_token_s is not None else ""
    return (
        f"final answer: {final}   ({answer.new_tokens} tokens in {answer.seconds:.1f} s{first}, "
        f"{rate:.0f} tokens/s{limit})"
    )


# --------------------------------------------------------------------------- where questions come from


def questions_from_file(path: Path, limit: int | None = None) -> list[str]:
    """The questions of a file: a JSONL split (each row's user message, or its ``question``),
    else one question per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--file {path} does not exist: pass a text file (one question a line) or a JSONL split")
    questions = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"--file {path} is not UTF-8 text (byte {err.start}): pass a text file or a JSONL split"
        ) from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number} is not a JSON object: write one object a line")
            messages = [m for m in row.get("messages") or [] if isinstance(m, dict)]
            user = [m.get("content") for m in messages if m.get("role") == "user"]
            question = user[0] if user else row.get("question")
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"{path}:{number} has no user message nor 'question'")
            questions.append(question.strip())
        else:
            questions.append(line.strip())
        if limit and len(questions) >= limit:
            break
    if not questions:
        raise ValueError(f"--file {path} holds no question")
    return questions


def questions_from_stdin(stream: TextIO, prompt: Callable[[], None] | None = None) -> Iterator[str]:
    """Questions typed (or piped) one a line, until end of input or an empty line at the prompt.

    Input that is not UTF-8 text (a binary file piped in by mistake) ends it with a one-line ``ValueError``.
    """
    number = 0
    while True:
        if prompt is not None:
            prompt()
        number += 1
        try:
            line = stream.readline()
            line.encode("utf-8")  # a POSIX locale reads undecodable bytes as lone surrogates instead of failing
        except UnicodeError as err:
            raise ValueError(
                f"standard input is not UTF-8 text (line {number}, byte {err.start}): pipe text, one question a line"
            ) from None
        if not line or (prompt is not None and not line.strip()):
            return
        if line.strip():
            yield line.strip()


def ask_all(
    tutor: Tutor, questions: Iterable[str], max_new_tokens: int, write: Callable[[str], None], numbered: bool
) -> list[Answer]:
    """Answer each question in turn, streaming each answer through ``write``."""
    answers = []
    for number, question in enumerate(questions, 1):
        if numbered:
            write(f"\n[{number}] {question}\n")
        answer = ask(tutor, question, max_new_tokens, write)
        write("\n" + summary_line(answer) + "\n")
        answers.append(answer)
    return answers
