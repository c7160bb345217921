"""Build a tiny Gemma-3n checkpoint locally: real transformers classes, random weights.

No machine of this project reaches a model hub, yet the demo and the tests must
exercise the same code path as ``google/gemma-3n-E2B-it``: a folder written by
``save_pretrained`` that Axolotl, PEFT and ``generate`` load like any checkpoint.
So we build ``Gemma3nForCausalLM`` (the text tower of Gemma-3n, with its AltUp,
Laurel, per-layer inputs, KV sharing and activation sparsity) at toy width, and a
byte-level BPE tokenizer trained on our corpus that keeps Gemma's special-token
ids (``<pad>``=0, ``<eos>``=1, ``<bos>``=2, ``<start_of_turn>``=105,
``<end_of_turn>``=106) and Axolotl's ``gemma3n`` chat template.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mathpal_common.atomic_files import check_writable, staged_dir

DEFAULT_TINY_MODEL_DIR = Path(".mathpal/tiny-gemma3n")

# Gemma's reserved ids 0..106: the ones the chat format and generation rely on, and
# placeholders in between so <start_of_turn>/<end_of_turn> keep their real ids.
GEMMA_SPECIAL_TOKENS = (
    ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    + [f"<unused{i}>" for i in range(99)]
    + ["<start_of_turn>", "<end_of_turn>"]
)
END_OF_TURN_ID = 106

# Weight init std of the tiny model. The LM head is tied to the embedding and sits
# behind an RMS norm that LoRA does not train, so with Gemma's 0.02 the logits can
# barely leave uniform (eval loss stalled at ~6.8 of ln(2048) = 7.6 after 200
# steps); with 0.1 the same run reaches ~4.6.
TINY_INIT_STD = 0.1


def train_tokenizer(texts: Iterable[str], vocab_size: int, chat_template: str):
    """A fast BPE tokenizer learned from ``texts``, wrapped as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=GEMMA_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Gemma's tokenizer prepends <bos>; its chat template writes bos_token itself and
    # transformers renders templates without special tokens, so both paths agree.
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
    )
    for token_id, token in enumerate(GEMMA_SPECIAL_TOKENS):
        assert tok.token_to_id(token) == token_id, (token, tok.token_to_id(token))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
        chat_template=chat_template,
        padding_side="left",
    )


def tiny_text_config(vocab_size: int, hidden_size: int = 128, num_layers: int = 4):
    """A Gemma-3n text config with every architectural feature of E2B, at toy width.

    Kept: AltUp with 4 inputs, Laurel, per-layer inputs, sliding + full attention
    layers, KV-shared last layer, activation sparsity in the first layer, final
    logit soft-capping and tied embeddings.
    """
    from transformers import Gemma3nTextConfig

    # Every second layer attends globally (E2B: every fifth); the KV-shared last layer
    # reuses the cache of the previous layer of its type, so there must be one.
    layer_types = ["full_attention" if i % 2 else "sliding_attention" for i in range(num_layers)]
    return Gemma3nTextConfig(
        vocab_size=vocab_size,
        vocab_size_per_layer_input=vocab_size,
        hidden_size=hidden_size,
        hidden_size_per_layer_input=16,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=hidden_size // 2,
        layer_types=layer_types,
        sliding_window=128,
        num_kv_shared_layers=1,
        activation_sparsity_pattern=[0.95] + [0.0] * (num_layers - 1),
        laurel_rank=8,
        altup_num_inputs=4,
        max_position_embeddings=2048,
        pad_token_id=0,
        eos_token_id=[1, END_OF_TURN_ID],
        bos_token_id=2,
        tie_word_embeddings=True,
        initializer_range=TINY_INIT_STD,
    )


# E2B's text tower (google/gemma-3n-E2B-it, text_config), from Google's Gemma-3n E2B release;
# transformers' Gemma3nTextConfig defaults describe E4B.
E2B_SHAPE: dict = {
    "num_hidden_layers": 30,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 256,
    "num_kv_shared_layers": 10,
    "sparse_layers": 10,  # activation sparsity 0.95 on the first 10 layers
    "vocab_size": 262_400,
    "vocab_size_per_layer_input": 262_144,
    "hidden_size_per_layer_input": 256,
    "laurel_rank": 64,
    "altup_num_inputs": 4,
    "sliding_window": 512,
    "full_attention_every": 5,  # layers 5, 10, …, 30 attend globally
    "final_logit_softcapping": 30.0,
}
# The same structure at toy width: 10 layers so that the KV-shared tail (3 layers) still has
# an earlier non-shared layer of each attention type to borrow from.
E2B_TINY_SHAPE: dict = {
    **E2B_SHAPE,
    "num_hidden_layers": 10,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "num_kv_shared_layers": 3,
    "sparse_layers": 3,
    "hidden_size_per_layer_input": 16,
    "laurel_rank": 8,
    "sliding_window": 128,
}


def e2b_text_config(tiny: bool = False, vocab_size: int | None = None):
    """Gemma3nTextConfig of E2B's text tower (or its toy-width twin with ``tiny``).

    Used by the GPU benchmarks: training and generation cost do not depend on the
    weights' values, so a random model of this shape measures what the real one
    costs. ``vocab_size`` overrides both vocabularies (the tiny shape uses the
    tokenizer's size). Everything else keeps transformers' Gemma-3n defaults, which
    are E2B's: RoPE θ 1e6 for full attention and 1e4 for sliding, AltUp active index 0
    and coefficient clip 120, gelu-tanh activation, RMS-norm ε 1e-6.
    """
    from transformers import Gemma3nTextConfig

    shape = E2B_TINY_SHAPE if tiny else E2B_SHAPE
    layers = shape["num_hidden_layers"]
    every = shape["full_attention_every"]
    return Gemma3nTextConfig(
        vocab_size=vocab_size or shape["vocab_size"],
        vocab_size_per_layer_input=vocab_size or shape["vocab_size_per_layer_input"],
        hidden_size=shape["hidden_size"],
        hidden_size_per_layer_input=shape["hidden_size_per_layer_input"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=layers,
        num_attention_heads=shape["num_attention_heads"],
        num_key_value_heads=shape["num_key_value_heads"],
        head_dim=shape["head_dim"],
        num_kv_shared_layers=shape["num_kv_shared_layers"],
        activation_sparsity_pattern=[0.95] * shape["sparse_layers"] + [0.0] * (layers - shape["sparse_layers"]),
        laurel_rank=shape["laurel_rank"],
        altup_num_inputs=shape["altup_num_inputs"],
        sliding_window=shape["sliding_window"],
        layer_types=["full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(layers)],
        final_logit_softcapping=shape["final_logit_softcapping"],
        tie_word_embeddings=True,
        max_position_embeddings=32_768,
        pad_token_id=0,
        eos_token_id=[1, END_OF_TURN_ID],
        bos_token_id=2,
    )


def build_tiny_model(config, seed: int = 0):
    """Random-weight ``Gemma3nForCausalLM`` whose ``<pad>`` rows are not zero.

    transformers initialises the padding row of both embedding tables to zeros;
    Gemma-3n's RMS norm of an all-zero row has an infinite gradient, which turns
    every packed or padded batch's gradients into NaN.
    """
    import torch
    from transformers import Gemma3nForCausalLM

    torch.manual_seed(seed)
    model = Gemma3nForCausalLM(config)
    pad = config.pad_token_id
    with torch.no_grad():
        for table in (model.model.embed_tokens, model.model.embed_tokens_per_layer):
            table.weight[pad].normal_(mean=0.0, std=0.02)
    return model


def gemma3n_chat_template() -> str:
    """Axolotl's ``gemma3n`` chat template, so the tiny model formats chats like the real one."""
    from axolotl.utils.chat_templates import get_chat_template

    return get_chat_template("gemma3n")


def write_tiny_model(
    texts: list[str], out_dir: Path = DEFAULT_TINY_MODEL_DIR, vocab_size: int = 2048, seed: int = 0
) -> Path:
    """Train the tokenizer, build the model and ``save_pretrained`` both into ``out_dir`` atomically."""
    from transformers import GenerationConfig

    check_writable(Path(out_dir))
    tokenizer = train_tokenizer(texts, vocab_size, gemma3n_chat_template())
    config = tiny_text_config(vocab_size=len(tokenizer))
    model = build_tiny_model(config, seed)
    model.generation_config = GenerationConfig(
        bos_token_id=2, eos_token_id=[1, END_OF_TURN_ID], pad_token_id=0, do_sample=False
    )
    with staged_dir(Path(out_dir)) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "mathpal_tiny.json").write_text(
            json.dumps({"vocab_size": len(tokenizer), "seed": seed, "texts": len(texts)}, indent=2) + "\n"
        )
    return Path(out_dir)


def corpus_texts(data_dir: Path) -> list[str]:
    """Every message of ``data_dir/train.jsonl``: the text the tiny tokenizer is trained on."""
    from mathpal_train.training_data import read_data_file

    train = Path(data_dir) / "train.jsonl"
    if not train.is_file():
        raise ValueError(f"{train} does not exist: run `mathpal prepare-data` first")
    rows = read_data_file("datasets", 0, {"path": str(train), "type": "chat_template"}).contents
    return [content for row in rows for content in row]
