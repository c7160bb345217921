"""The Unsloth peer row of ``benchmarks/train_throughput.py``: Unsloth's stack, the baseline's data and Trainer.

Run by the throughput benchmark in its own process (``--peer unsloth``), never
imported by it: Unsloth patches transformers, PEFT and TRL when it is imported, and
must be imported before them. Unsloth is not a dependency of this repository;
install it on the benchmark machine only.

Against the baseline, only the model changes: Unsloth's ``FastModel`` loads the same
local checkpoint in 4-bit, adds LoRA r=32 (alpha 32, dropout 0.05, as the baseline:
Unsloth's fastest LoRA path wants dropout 0, but both then train the same adapter)
on the same 7 projections, with its own gradient checkpointing ("unsloth"), and the
baseline's ``measure_training`` trains it: same rows, tokenisation, optimizer and
schedule, at micro batch 16 by default. One difference in the collator: every batch is
padded to one length (the longest row trained on, rounded up to 64), because Unsloth
compiles each decoder layer for every new batch shape, ~4 minutes on an H200, and
pad-to-longest batches have a new shape every few steps. Padding costs it compute
but never counts as real tokens. The last output line is the result as JSON after
``UNSLOTH_PEER_RESULT``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_rows(work: Path) -> list[dict]:
    """The baseline's training rows: the ``data/train.jsonl`` the benchmark wrote into ``work``."""
    with (work / "data" / "train.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seq-len", type=int, default=2048)
    args = parser.parse_args(argv)

    os.environ["UNSLOTH_DISABLE_STATISTICS"] = "1"  # before the import: it reads the variable then
    try:
        import unsloth  # noqa: F401 - first, before transformers, so that its patches apply
        from unsloth import FastModel
    except ImportError as err:
        raise SystemExit(f"unsloth is not installed here ({err}): pip install unsloth on the GPU machine") from None

    import torch

    from benchmarks.train_throughput import PEER_RESULT, fixed_length, measure_training, training_rows

    model, tokenizer = FastModel.from_pretrained(
        model_name=str(args.model_dir),
        max_seq_length=args.seq_len,
        load_in_4bit=True,
        local_files_only=True,
        dtype=torch.bfloat16,
    )
    model = FastModel.get_peft_model(
        model,
        r=32,
        lora_alpha=32,
        lora_dropout=0.05,
        target_modules=LORA_TARGETS,
        bias="none",
        use_gradient_checkpointing="unsloth",
        random_state=0,
    )
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor for multimodal checkpoints
    rows = load_rows(args.work)
    pad_to = fixed_length(training_rows(tokenizer, rows, args.micro_batch, args.steps, args.seq_len))
    result = measure_training(
        model,
        tokenizer,
        rows,
        args.micro_batch,
        args.steps,
        args.warmup,
        args.seq_len,
        name=f"unsloth mb={args.micro_batch}",
        out_dir=args.work / f"unsloth-mb{args.micro_batch}",
        checkpointing=False,  # Unsloth's own ("unsloth") is on; the Trainer's would replace it
        pad_to=pad_to,
    )
    result.update({"finished_at": time.time(), "pad_to": pad_to})
    print(PEER_RESULT + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
