"""The speed plugin's GPU paths against the exact torch path: Liger's fused loss, and compiled layers.

CI has no GPU: these are skipped there and run on the GPU machine
(``pytest -m cuda tests/mathpal_train/test_gemma3n_speed_cuda.py``); the result is
recorded in docs/performance.md. The reference is the torch path of the same fused
loss (itself checked against transformers' unpatched forward on the CPU in
``test_gemma3n_speed.py``), and the eager layers for the compiled ones.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from mathpal_train.gemma3n_speed import loss, patch
from mathpal_train.gemma3n_speed.compile import compile_decoder_layers, decoder_layers, is_compiled, uncompile
from mathpal_train.tiny_model import build_tiny_model, tiny_text_config

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

VOCAB = 2048
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# bf16: Liger soft-caps in fp32 inside its kernel, the torch path in bf16 as the unfused head does.
BF16_RTOL = 2e-2


@pytest.fixture(autouse=True)
def unpatched():
    patch.unpatch_gemma3n()
    yield
    patch.unpatch_gemma3n()


def lora_model(dtype: torch.dtype):
    """The tiny Gemma-3n on the GPU with LoRA on the recipes' projections (B random: every gradient non-zero)."""
    model = build_tiny_model(tiny_text_config(vocab_size=VOCAB), seed=1).to("cuda", dtype)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.train()
    return peft_model


def batch() -> dict:
    """Right-padded rows, loss on the answer part only."""
    gen = torch.Generator().manual_seed(3)
    lengths, prompts, width = [200, 120, 170], [50, 30, 100], 208
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (n, p) in enumerate(zip(lengths, prompts, strict=True)):
        ids[row, :n] = torch.randint(3, VOCAB, (n,), generator=gen)
        mask[row, :n] = 1
        labels[row, p:n] = ids[row, p:n]
    return {k: v.cuda() for k, v in {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()}


def loss_and_grads(model, inputs: dict) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(**inputs)
    out.loss.backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.loss.item(), grads


def assert_close(got: tuple[float, dict], want: tuple[float, dict], rtol: float) -> None:
    assert abs(got[0] - want[0]) <= rtol * abs(want[0]), (got[0], want[0])
    assert set(got[1]) == set(want[1])
    for name, ref in want[1].items():
        assert ref.norm() > 0, name
        assert (got[1][name] - ref).norm() <= rtol * ref.norm(), name


@pytest.mark.parametrize("num_items", [None, 900])
def test_liger_loss_and_hidden_gradient_equal_the_torch_path(num_items):
    gen = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(2, 300, 256, device="cuda", generator=gen).bfloat16().requires_grad_()
    weight = (torch.randn(VOCAB * 16, 256, device="cuda", generator=gen) * 0.2).bfloat16()  # large logits: capped
    labels = torch.randint(0, VOCAB * 16, (2, 300), device="cuda", generator=gen)
    labels[0, :40] = -100
    kwargs = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items, device="cuda")}
    calls = loss.CALLS.copy()
    results = {}
    for impl in ("liger", "torch"):
        value = loss.fused_causal_lm_loss(hidden, weight, labels, 30.0, impl=impl, **kwargs)
        (grad,) = torch.autograd.grad(value, hidden)
        results[impl] = (value.float().item(), grad.float())
    assert (loss.CALLS - calls) == {("liger", "train"): 1, ("torch", "train"): 1}
    (liger, liger_grad), (exact, exact_grad) = results["liger"], results["torch"]
    assert abs(liger - exact) <= 2e-3 * abs(exact)
    assert (liger_grad - exact_grad).norm() <= BF16_RTOL * exact_grad.norm()


def test_liger_path_lora_gradients_equal_the_torch_path_in_bf16():
    model = lora_model(torch.bfloat16)
    inputs = batch()
    patch.patch_gemma3n(patch.FusedLossSettings(impl="torch"))
    exact = loss_and_grads(model, inputs)
    patch.patch_gemma3n(patch.FusedLossSettings(impl="auto"))  # auto is liger on CUDA when installed
    before = loss.CALLS[("liger", "train")]
    liger = loss_and_grads(model, inputs)
    assert loss.CALLS[("liger", "train")] == before + 1, "the Liger path did not run"
    assert_close(liger, exact, BF16_RTOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_layers_give_the_eager_loss_and_lora_gradients(dtype):
    import torch._dynamo

    model = lora_model(dtype)
    inputs = batch()
    patch.patch_gemma3n(patch.FusedLossSettings(impl="torch"))
    eager = loss_and_grads(model, inputs)
    torch._dynamo.reset()
    try:
        assert compile_decoder_layers(model, "cuda") == 4
        compiled = [loss_and_grads(model, inputs) for _ in range(2)]  # the second call runs the cached graphs
        model.eval()
        with torch.no_grad():
            eval_loss = model(**inputs).loss.item()  # eager: the same loss as training's (no dropout here)
        model.train()
    finally:
        for layer in decoder_layers(model):
            uncompile(layer)
        torch._dynamo.reset()
    assert not any(is_compiled(layer) for layer in decoder_layers(model))
    rtol = 1e-3 if dtype == torch.float32 else BF16_RTOL
    for run in compiled:
        assert_close(run, eager, rtol)
    assert abs(eval_loss - eager[0]) <= rtol * abs(eager[0])
