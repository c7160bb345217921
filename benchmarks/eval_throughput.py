"""Problems per second of ``mathpal eval``'s generation: batch 1 against larger batches.

Runs the eval's own code (``evals.generate.generate_answers``: chat template, left padding,
KV cache, greedy) on sample problems of the bundled corpus, once per batch size, and prints
a table with each size's rate and its speed-up over batch 1.

    python -m benchmarks.eval_throughput                      # CPU, the tiny Gemma-3n
    python -m benchmarks.eval_throughput --model DIR          # any checkpoint
    python -m benchmarks.eval_throughput --gpu-e2b --tokenizer .mathpal/tiny-gemma3n
                                                              # E2B-shaped, random weights, bf16, CUDA
    python -m benchmarks.eval_throughput --gpu-e2b --tiny-shape   # the same mode at toy width (CPU ok)

Every answer is exactly ``--max-new-tokens`` tokens long (the stop tokens are held back
until then; ``--stop-at-eos`` turns that off), so every batch size does the same work and
the rates compare batching, not answer lengths.  A random-weight model is fine here: speed
depends on shapes, not on what the weights say.

``--answer-lengths 50-400`` gives each problem its own answer length instead, drawn (seeded,
uniform) from that range, as a real tutor's answers differ several-fold: then a ``generate``
batch runs until its longest answer ends, and ``continuous`` decoding refills the slot of
each finished answer. ``--decodings generate,static,continuous`` measures each path (a row
each per batch size), on the same problems and lengths; ``static`` decodes with a static KV
cache, which transformers compiles on CUDA. Every row reports its warm-up call's seconds
apart (``warmup_s``: for ``static`` on CUDA, the compile; its warm-up decodes the timed
answers' length, so that the timed batches reuse the compiled shape).

``--ask N`` adds ``mathpal ask``'s rows: N questions at batch 1 through
``mathpal_commands.ask.ask``, once per decoding among ``generate`` and ``static``: the first
question's seconds (any compile, paid once per process) apart, then new tokens/s and the
mean time to the first token over the others. ``--ask-max-new-tokens N`` caps their answers
apart from the batch rows' (batch 1 is the slow case on a GPU).

``--adapter-rank R`` (with ``--gpu-e2b``) attaches a random LoRA adapter of rank R to the
recipes' target modules, non-zero so that it changes the answers: ``mathpal eval`` decodes with
its adapter attached. The ask ``generate`` row then runs attached (ask's eager path), and the
model is merged in place before the ask ``static`` row (ask's fast path merges at load), so the
ask rows are measured last.

Every row that is not ``generate`` reports its agreement with the ``generate`` row of the same
batch size (``same_tokens``: the fraction of answers with the same token ids;
``first_divergence``: the median index of the first differing token among the others; bf16
kernels of another path may differ in the last bit, and greedy decoding then picks another
token); the ask ``static`` row compares its answers' text with the ask ``generate`` row's
(``same_text``). A row that fails is recorded with its error and the run goes on; ``--json``
is rewritten after every row, so a run killed at a time limit keeps every row measured so far.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mathpal_train.tiny_model import e2b_text_config  # noqa: F401 - the one E2B builder (tests use it from here)

GEMMA_PAD, GEMMA_EOS, GEMMA_BOS, GEMMA_END_OF_TURN = 0, 1, 2, 106

# The recipes' lora_target_modules (recipes/*.yml): the text tower's attention and MLP projections.
LORA_TARGET_MODULES = r"model.(language_model.)?layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj"


def ids_without_per_layer_input(config) -> list[int]:
    """Token ids that have a row in the main embedding but none in the per-layer one (E2B:
    262,144 … 262,399, the audio/vision tokens).

    ``Gemma3nForCausalLM`` looks the per-layer table up with raw ids (only the multimodal
    ``Gemma3nModel`` masks those ids), so generating one is an out-of-range index on the GPU.
    A trained model never writes them as text; a random one can, so they are suppressed.
    """
    return list(range(config.vocab_size_per_layer_input, config.vocab_size))


def build_random_model(config, device: str, dtype, seed: int = 0):
    """Random-weight ``Gemma3nForCausalLM`` built directly on ``device`` in ``dtype``.

    Built under the device context so E2B's 4.4 B parameters are initialised on the GPU
    (seconds) rather than on the CPU (minutes, 18 GB in float32).  The ``<pad>`` rows of both
    embedding tables are made non-zero, as in ``mathpal_train.tiny_model``: transformers zeroes
    them, and Gemma-3n's RMS norm of an all-zero row is degenerate.
    """
    import torch
    from transformers import Gemma3nForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Gemma3nForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        for table in (model.model.embed_tokens, model.model.embed_tokens_per_layer):
            table.weight[config.pad_token_id].normal_(mean=0.0, std=0.02)
    model.generation_config = GenerationConfig(
        bos_token_id=GEMMA_BOS,
        eos_token_id=[GEMMA_EOS, GEMMA_END_OF_TURN],
        pad_token_id=GEMMA_PAD,
        do_sample=False,
        suppress_tokens=ids_without_per_layer_input(config) or None,
    )
    return model.eval()


def attach_adapter(model, rank: int, seed: int = 0):
    """``model`` with a random LoRA adapter of rank ``rank`` attached (not merged), as ``mathpal eval``
    decodes a trained run: the recipes' target modules, ``lora_alpha = r``, no dropout.

    PEFT starts every B matrix at zero (the adapter a no-op); a trained adapter is not, so the B
    matrices get small seeded random values, in their own dtype on their own device. PEFT's
    default dtype handling is kept: it holds the adapter in float32 on a bf16 model, as
    ``PeftModel.from_pretrained`` does when eval loads a trained one.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=LORA_TARGET_MODULES)
    model = get_peft_model(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(mean=0.0, std=0.02)
    return model.eval()


def sample_examples(count: int, seed: int = 5) -> list[dict[str, Any]]:
    """``count`` chat examples (system prompt + question) from the bundled sample corpus."""
    from mathpal_commands.demo.corpus import generate_problems
    from mathpal_common.prompt import DEFAULT_SYSTEM_PROMPT

    return [
        {"messages": [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": p.question}]}
        for p in generate_problems(count, seed)
    ]


def tiny_checkpoint(workdir: Path) -> Path:
    """The tiny Gemma-3n of ``mathpal tiny-model``, built from the sample corpus into ``workdir``."""
    from mathpal_commands.demo.corpus import generate_problems
    from mathpal_train.tiny_model import write_tiny_model

    texts = [text for p in generate_problems(400, 5) for text in (p.question, p.solution)]
    return write_tiny_model(texts, workdir / "tiny-gemma3n", vocab_size=2048, seed=0)


def _synchronise(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def answer_lengths(text: str, count: int, seed: int = 7) -> list[int]:
    """``count`` answer lengths drawn uniformly from ``LO-HI`` (seeded: every row gets the same ones)."""
    import random

    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or not 1 <= int(low) <= int(high):
        raise ValueError(f"--answer-lengths {text!r}: write LO-HI, e.g. 50-400")
    draw = random.Random(seed)
    return [draw.randint(int(low), int(high)) for _ in range(count)]


def measure(
    model,
    tokenizer,
    examples: list[dict[str, Any]],
    batch_size: int,
    max_new_tokens: int,
    min_problems: int,
    rounds: int,
    fixed_length: bool,
    decoding: str = "generate",
    lengths: list[int] | None = None,
) -> tuple[dict[str, Any], list[tuple[int, ...]]]:
    """Rate of one batch size: a short warm-up batch, then ``max(rounds, ⌈min_problems/B⌉)``
    full batches timed end to end (tokenising, generating, decoding: what eval waits for).
    ``lengths``: answer i is exactly ``lengths[i]`` tokens (``max_new_tokens`` is then unused).
    Returns the row and the timed answers' token ids (to compare decodings; kept out of the JSON)."""
    from evals.generate import generate_answers

    device = str(model.device)
    batches = max(rounds, math.ceil(min_problems / batch_size))
    problems = examples[: batch_size * batches]
    if len(problems) < batch_size * batches:
        raise ValueError(f"need {batch_size * batches} sample problems, have {len(examples)}")
    wanted = lengths[: len(problems)] if lengths is not None else None
    if wanted is None and fixed_length and decoding == "continuous":
        wanted = [max_new_tokens] * len(problems)  # continuous batching has no min_new_tokens
    limit = max(wanted) + 1 if wanted else max_new_tokens  # + the forced stop token
    warm = problems[:batch_size]
    started = time.perf_counter()
    # A static cache is sized by the call's limit: warm up at the timed limit, so that the timed calls
    # reuse its shape (and, on CUDA, its compiled decode step).
    warm_limit = limit if decoding == "static" else 4
    generate_answers(model, tokenizer, warm, batch_size=batch_size, max_new_tokens=warm_limit, decoding=decoding)
    _synchronise(device)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    answers = generate_answers(
        model,
        tokenizer,
        problems,
        batch_size=batch_size,
        max_new_tokens=limit,
        # generate and static alike hold the stop tokens back, so their answers compare token by token
        min_new_tokens=max_new_tokens if fixed_length and not wanted else 0,
        decoding=decoding,
        lengths=wanted,
    )
    _synchronise(device)
    seconds = time.perf_counter() - started
    tokens = sum(a.new_tokens for a in answers)
    row = {
        "decoding": decoding,
        "batch_size": batch_size,
        "problems": len(problems),
        "seconds": round(seconds, 3),
        "problems_per_s": round(len(problems) / seconds, 4),
        "new_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "warmup_s": round(warmup_s, 2),
    }
    return row, [a.token_ids for a in answers]


def first_difference(reference: Sequence[Any], other: Sequence[Any]) -> int | None:
    """Index of the first item where ``other`` parts from ``reference`` (the shorter one's length when
    one is the start of the other); None when they are the same."""
    for index, (a, b) in enumerate(zip(reference, other, strict=False)):
        if a != b:
            return index
    return None if len(reference) == len(other) else min(len(reference), len(other))


def agreement(reference: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> dict[str, Any]:
    """How far a decoding's answers match the eager (``generate``) path's, problem by problem.

    ``same_tokens``: the fraction of answers with the same token ids; ``first_divergence``: the
    median index of the first differing token among the others (bf16 kernels of another path may
    differ in the last bit, and greedy decoding then picks another token from there on);
    ``stopped_early``: differing answers that are the start of the eager one, i.e. ended at a stop
    token the eager row held back (continuous batching does not hold stop tokens back: not a
    kernel difference)."""
    firsts = [first_difference(r, a) for r, a in zip(reference, answers, strict=True)]
    differing = [f for f in firsts if f is not None]
    early = sum(1 for f, r, a in zip(firsts, reference, answers, strict=True) if f is not None and f == len(a) < len(r))
    return {
        "same_tokens": round((len(firsts) - len(differing)) / len(firsts), 3) if firsts else None,
        "first_divergence": statistics.median(differing) if differing else None,
        "stopped_early": early,
    }


def measure_ask(
    model,
    tokenizer,
    examples: list[dict[str, Any]],
    questions: int,
    max_new_tokens: int,
    decoding: str,
    adapter: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """``mathpal ask`` at batch 1: the first question (with any compile) timed apart, then the rest.
    ``adapter`` (``attached``, ``merged`` or None) only labels the row. Returns the row and the timed
    answers' text (``Answer`` carries no token ids: the ask rows compare text)."""
    from evals.generate import prompt_messages
    from mathpal_commands.ask import Tutor, ask
    from mathpal_common.prompt import DEFAULT_SYSTEM_PROMPT

    tutor = Tutor(model, tokenizer, DEFAULT_SYSTEM_PROMPT, "benchmark")
    # What a user types into ask: each example's question (its prompt's last message, the user's).
    texts = [prompt_messages(e)[-1]["content"] for e in examples[: questions + 1]]
    device = str(model.device)
    started = time.perf_counter()
    ask(tutor, texts[0], max_new_tokens, decoding=decoding)
    _synchronise(device)
    first_call_s = time.perf_counter() - started
    answers = [ask(tutor, text, max_new_tokens, decoding=decoding) for text in texts[1:]]
    _synchronise(device)
    seconds = sum(a.seconds for a in answers)
    tokens = sum(a.new_tokens for a in answers)
    firsts = [a.first_token_s for a in answers if a.first_token_s is not None]
    row = {
        "decoding": decoding,
        "adapter": adapter,
        "questions": len(answers),
        "first_call_s": round(first_call_s, 2),
        "new_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "first_token_s": round(sum(firsts) / len(firsts), 3) if firsts else None,
    }
    return row, [a.text for a in answers]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def load(args: argparse.Namespace, workdir: Path):
    """(tokenizer, model, description) for the chosen mode."""
    import torch
    from transformers import AutoTokenizer

    if args.gpu_e2b:
        cuda = torch.cuda.is_available()
        if not cuda and not args.tiny_shape:
            raise SystemExit("error: --gpu-e2b needs a CUDA GPU: add --tiny-shape to run the mode on a CPU")
        tokenizer_dir = args.tokenizer or args.model or tiny_checkpoint(workdir)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        tokenizer.padding_side = "left"
        config = e2b_text_config(tiny=args.tiny_shape, vocab_size=len(tokenizer) if args.tiny_shape else None)
        if len(tokenizer) > config.vocab_size:
            raise SystemExit(
                f"error: tokenizer {tokenizer_dir} has {len(tokenizer)} tokens, "
                f"more than the model's {config.vocab_size}"
            )
        device = "cuda" if cuda else "cpu"
        dtype = torch.bfloat16 if cuda else torch.float32
        model = build_random_model(config, device, dtype)
        shape = "tiny-shape Gemma-3n" if args.tiny_shape else "E2B-shaped Gemma-3n"
        params = sum(p.numel() for p in model.parameters()) / 1e9
        description = f"{shape}, random weights, {params:.2f} B parameters, {str(dtype)[6:]} on {device}"
        if args.adapter_rank:
            model = attach_adapter(model, args.adapter_rank)
            lora = next(p for name, p in model.named_parameters() if "lora_B" in name)
            description += (
                f", LoRA r={args.adapter_rank} attached ({str(lora.dtype)[6:]} adapter weights, as eval loads them)"
            )
        return tokenizer, model, description
    from evals.generate import load_model

    model_dir = args.model or tiny_checkpoint(workdir)
    tokenizer, model = load_model(str(model_dir))
    return tokenizer, model, f"{model_dir} ({str(model.dtype)[6:]} on {model.device})"


def _cell(text: Any) -> str:
    """A value as a markdown table cell (an error message may hold a ``|``)."""
    return str(text).replace("|", "\\|")


def _agreement_cell(row: dict[str, Any], key: str) -> str:
    """``same tokens`` / ``same text``: the share of answers equal to the eager path's, where they part."""
    same = row.get(key)
    if same is None:
        return "–"
    text = f"{same:.1%}"
    if row.get("first_divergence") is not None:
        text += f", first differs at token {row['first_divergence']:g}"
    if row.get("stopped_early"):
        text += f", {row['stopped_early']} stopped early"
    return text


def measured(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that did not fail."""
    return [r for r in rows if "error" not in r]


def eager_batch_1(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row every speed-up is measured against: ``generate`` at batch 1, if it was measured
    (rows of older JSON files have no ``decoding``: they are ``generate``)."""
    return next(
        (r for r in measured(rows) if r["batch_size"] == 1 and r.get("decoding", "generate") == "generate"), None
    )


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with the best batch size and its speed-up over generate batch 1, from the rows that
    did not fail (None where none did)."""
    ok = measured(results["batches"])
    single = eager_batch_1(ok)
    best = max(ok, key=lambda r: r["problems_per_s"]) if ok else None
    results["best_batch_size"] = best["batch_size"] if best else None
    results["speedup_over_batch_1"] = (
        round(best["problems_per_s"] / single["problems_per_s"], 2) if best and single else None
    )
    return results


def render(results: dict[str, Any]) -> str:
    """Markdown table of the rates and the best batch's speed-up over batch 1; failed rows say their error."""
    rows = results["batches"]
    ok = measured(rows)
    single = eager_batch_1(ok)
    lines = [
        f"model: {results['model']}",
        (
            f"answers: {results['answer_lengths']} new tokens, drawn per problem"
            if results.get("answer_lengths")
            else f"answers: {results['max_new_tokens']} new tokens each "
            f"({'fixed' if results['fixed_length'] else 'stop at eos'})"
        )
        + f"; machine: {results['machine']}",
        "",
        "| decoding | batch | problems | seconds | problems/s | new tokens/s | × generate batch 1 | same tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        decoding, batch = row.get("decoding", "generate"), row.get("batch_size", "?")
        if "error" in row:
            lines.append(f"| {decoding} | {batch} | failed: {_cell(row['error'])} | | | | | |")
            continue
        speedup = f"{row['problems_per_s'] / single['problems_per_s']:.1f}" if single else "–"
        lines.append(
            f"| {decoding} | {batch} | {row['problems']} | {row['seconds']:.2f} | "
            f"{row['problems_per_s']:.2f} | {row['tokens_per_s']:.0f} | {speedup} | "
            f"{_agreement_cell(row, 'same_tokens')} |"
        )
    if ok:
        best = max(ok, key=lambda r: r["problems_per_s"])
        if single:
            lines += [
                "",
                f"best batch {best['batch_size']}: {best['problems_per_s']:.2f} problems/s = "
                f"{best['problems_per_s'] / single['problems_per_s']:.1f} × batch 1",
            ]
    asked = results.get("ask") or []
    asked_ok = measured(asked)
    eager = next((r for r in asked_ok if r["decoding"] == "generate"), None)
    if asked:
        limit = results.get("ask_max_new_tokens")
        lines += [
            "",
            *([f"mathpal ask: at most {limit} new tokens an answer", ""] if limit else []),
            "| mathpal ask, decoding | adapter | questions | first call s | new tokens/s | first token s "
            "| × generate | same text |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for row in asked:
            adapter = row.get("adapter") or "–"
            if "error" in row:
                lines.append(f"| {row.get('decoding', '?')} | {adapter} | failed: {_cell(row['error'])} | | | | | |")
                continue
            rate, first = row["tokens_per_s"], row["first_token_s"]
            times = f"{rate / eager['tokens_per_s']:.1f}" if eager and eager["tokens_per_s"] and rate else "–"
            lines.append(
                f"| {row['decoding']} | {adapter} | {row['questions']} | {row['first_call_s']:.2f} | "
                f"{rate if rate is not None else '–'} | {first if first is not None else '–'} | {times} | "
                f"{_agreement_cell(row, 'same_text')} |"
            )
    if not ok and not asked_ok:
        lines += ["", "every row failed: see the errors above (tracebacks on stderr)"]
    elif not ok:
        lines += ["", "every batch row failed: see the errors above (tracebacks on stderr)"]
    elif asked and not asked_ok:
        lines += ["", "every ask row failed: see the errors above (tracebacks on stderr)"]
    return "\n".join(lines)


def same_text(reference: Sequence[str], answers: Sequence[str]) -> dict[str, Any]:
    """``same_text``: the fraction of ask answers equal to the eager path's, question by question."""
    same = sum(a == b for a, b in zip(reference, answers, strict=True))
    return {"same_text": round(same / len(answers), 3) if answers else None}


def failure(label: str, err: BaseException) -> str:
    """One row's error as the row records it (``Type: first line``), its traceback on stderr: one
    failing row (out of memory at a large batch, a compile error) must not cost the rows after it."""
    traceback.print_exc(file=sys.stderr)
    lines = str(err).strip().splitlines()
    message = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    print(f"{label} failed: {message}", file=sys.stderr, flush=True)
    return message


def _free_memory(device: str) -> None:
    """After a failed row, give its memory back (an out-of-memory batch leaves cached blocks behind)."""
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def save(path: Path | None, results: dict[str, Any]) -> None:
    """Write the results to ``path`` through a temporary file and a rename, so that a run killed at
    its time limit leaves the last complete JSON, never half of one."""
    from mathpal_common.atomic_files import write_text_atomic

    if path is not None:
        write_text_atomic(path, json.dumps(results, indent=2) + "\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every batch size, then the ask rows; the results as a dict (what ``--json`` writes),
    also written to ``--json`` after every row."""
    results: dict[str, Any] = {
        "model": None,
        "max_new_tokens": args.max_new_tokens,
        "ask_max_new_tokens": args.ask_max_new_tokens if args.ask else None,
        "fixed_length": not args.stop_at_eos,
        "answer_lengths": args.answer_lengths,
        "adapter_rank": args.adapter_rank,
        "machine": machine(),
        "batches": [],
        "ask": [],
        "best_batch_size": None,
        "speedup_over_batch_1": None,
    }

    def checkpoint(row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        rows.append(row)
        if "error" in row:
            _free_memory(device)
        try:
            save(args.json, summarise(results))
        except Exception as err:  # a full disk mid-run: keep measuring, the rows are still printed at the end
            failure(f"writing {args.json}", err)

    def compare(row: dict[str, Any], fields: Callable[..., dict[str, Any]], *answers: Sequence[Any]) -> None:
        try:  # apart from the measuring, so that a comparison that fails never costs the row's timing
            row.update(fields(*answers))
        except Exception as err:
            row["comparison_error"] = failure(f"comparing {row['decoding']} with generate", err)

    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as workdir:
        tokenizer, model, description = load(args, Path(workdir))
        results["model"] = description
        device = str(model.device)
        needed = max(max(args.rounds, math.ceil(args.min_problems / b)) * b for b in args.batch_sizes)
        needed = max(needed, args.ask + 1)
        examples = sample_examples(needed)
        lengths = answer_lengths(args.answer_lengths, needed) if args.answer_lengths else None
        eager: dict[int, list[tuple[int, ...]]] = {}  # generate rows' token ids by batch size, to compare with
        for decoding in args.decodings:
            for batch_size in args.batch_sizes:
                row: dict[str, Any] = {"decoding": decoding, "batch_size": batch_size}
                try:
                    row, tokens = measure(
                        model,
                        tokenizer,
                        examples,
                        batch_size,
                        args.max_new_tokens,
                        args.min_problems,
                        args.rounds,
                        not args.stop_at_eos,
                        decoding,
                        lengths,
                    )
                    rate = f"{row['problems_per_s']:.2f} problems/s"
                    print(f"{decoding} batch {batch_size}: {rate}", file=sys.stderr, flush=True)
                except Exception as err:
                    row = {**row, "error": failure(f"{decoding} batch {batch_size}", err)}
                else:
                    if decoding == "generate":
                        eager[batch_size] = tokens
                    elif batch_size in eager:
                        compare(row, agreement, eager[batch_size], tokens)
                checkpoint(row, results["batches"])
        # Last, as they change the model: ask's eager path decodes with the adapter attached, its fast
        # path merges it in place first (mathpal_commands.ask.load_tutor).
        adapter = "attached" if args.adapter_rank else None
        eager_texts: list[str] | None = None
        for decoding in [d for d in ("generate", "static") if d in args.decodings] if args.ask else []:
            row = {"decoding": decoding, "adapter": adapter}
            try:
                if decoding == "static" and adapter == "attached":
                    model = model.merge_and_unload()
                    adapter = row["adapter"] = "merged"
                row, texts = measure_ask(
                    model, tokenizer, examples, args.ask, args.ask_max_new_tokens, decoding, adapter
                )
                print(f"ask {decoding}: {row['tokens_per_s']} new tokens/s", file=sys.stderr, flush=True)
            except Exception as err:
                row = {**row, "error": failure(f"ask {decoding}", err)}
            else:
                if decoding == "generate":
                    eager_texts = texts
                elif eager_texts is not None:
                    compare(row, same_text, eager_texts, texts)
            checkpoint(row, results["ask"])
    return summarise(results)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: build the tiny Gemma-3n)")
    parser.add_argument("--gpu-e2b", action="store_true", help="E2B-shaped random Gemma-3n in bf16 on CUDA")
    parser.add_argument("--tiny-shape", action="store_true", help="with --gpu-e2b: toy width, runs on a CPU")
    parser.add_argument("--tokenizer", type=Path, help="with --gpu-e2b: tokenizer folder with Gemma's special ids")
    parser.add_argument(
        "--adapter-rank",
        type=int,
        help="with --gpu-e2b: attach a random LoRA adapter of this rank (eval decodes with it attached)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        help="comma-separated (default CPU 1,2,4,8,16,32,64,128; GPU 1,8,16,32,64,128)",
    )
    parser.add_argument("--max-new-tokens", type=int, help="tokens per answer (default CPU 64, GPU 256)")
    parser.add_argument(
        "--min-problems", type=int, help="problems timed at least, per batch size (default CPU 16, GPU 4)"
    )
    parser.add_argument("--rounds", type=int, help="batches timed at least, per batch size (default CPU 3, GPU 2)")
    parser.add_argument("--stop-at-eos", action="store_true", help="let answers end at <end_of_turn>/<eos>")
    parser.add_argument(
        "--decodings",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=["generate"],
        help="comma-separated: generate, static, continuous (a row each per batch size)",
    )
    parser.add_argument(
        "--ask", type=int, default=0, help="N: also time mathpal ask on N questions per decoding (generate, static)"
    )
    parser.add_argument(
        "--ask-max-new-tokens", type=int, help="new tokens at most per ask answer (default: --max-new-tokens)"
    )
    parser.add_argument("--answer-lengths", help="LO-HI: each answer's length drawn from this range (e.g. 50-400)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file (after every row)")
    args = parser.parse_args(argv)
    if args.adapter_rank is not None and not args.gpu_e2b:
        parser.error("--adapter-rank needs --gpu-e2b: a --model checkpoint is measured as it is")
    if args.adapter_rank is not None and args.adapter_rank < 1:
        parser.error("--adapter-rank must be at least 1")
    gpu = args.gpu_e2b and not args.tiny_shape
    args.batch_sizes = args.batch_sizes or ([1, 8, 16, 32, 64, 128] if gpu else [1, 2, 4, 8, 16, 32, 64, 128])
    args.max_new_tokens = args.max_new_tokens or (256 if gpu else 64)
    args.ask_max_new_tokens = args.ask_max_new_tokens or args.max_new_tokens
    # Batch 1 on the GPU is the slow case (~10 s a 256-token answer), so fewer problems there;
    # CPU runs are short and noisy, so more.
    args.min_problems = args.min_problems or (4 if gpu else 16)
    args.rounds = args.rounds or (2 if gpu else 3)
    if (
        min(args.batch_sizes) < 1
        or args.max_new_tokens < 1
        or args.ask_max_new_tokens < 1
        or args.rounds < 1
        or args.min_problems < 1
    ):
        parser.error(
            "batch sizes, --max-new-tokens, --ask-max-new-tokens, --rounds and --min-problems must be at least 1"
        )
    from evals.generate import DECODINGS

    unknown = [d for d in args.decodings if d not in DECODINGS]
    if unknown or not args.decodings:
        parser.error(f"--decodings {','.join(unknown) or '(empty)'}: use {', '.join(DECODINGS)}")
    if args.answer_lengths:
        try:
            answer_lengths(args.answer_lengths, 1)
        except ValueError as err:
            parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    args = parse_args(argv)
    results = run(args)
    print(render(results), flush=True)
    save(args.json, results)
    return results


if __name__ == "__main__":
    main()
