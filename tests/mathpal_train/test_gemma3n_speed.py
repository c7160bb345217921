"""The Gemma-3n speed plugin on the CPU: the fused loss equals the unfused one, loss and LoRA gradients.

The reference is always the unpatched transformers forward (logits, soft-cap,
``ForCausalLMLoss``) on the same model and batch. The real E2B checkpoint loads as
``Gemma3nForConditionalGeneration``, whose vision tower needs timm (not installed), so
that class is checked through its patched forward around the tiny text model, and
through the loss function both forwards share.
"""

from __future__ import annotations

import pytest
import torch
from axolotl.utils.collators.batching import V2BatchSamplerDataCollatorForSeq2Seq
from axolotl.utils.dict import DictDefault
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import Gemma3nConfig, Gemma3nForCausalLM, Gemma3nForConditionalGeneration
from transformers.loss.loss_utils import ForCausalLMLoss
from transformers.models.gemma3n.modeling_gemma3n import Gemma3nModelOutputWithPast

from mathpal_train.gemma3n_speed import Gemma3nSpeedPlugin, loss, patch
from mathpal_train.gemma3n_speed.compile import compile_decoder_layers, decoder_layers, is_compiled, uncompile
from mathpal_train.gemma3n_speed.plugin import settings_from, skip_logits_in_loss_only_eval
from mathpal_train.tiny_model import build_tiny_model, tiny_text_config

VOCAB = 400
RTOL = 1e-4
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CHUNK = 7  # small, so that every batch spans several chunks and a partial last one


@pytest.fixture(autouse=True)
def unpatched():
    """Every test starts and ends with transformers' own forwards."""
    patch.unpatch_gemma3n()
    yield
    patch.unpatch_gemma3n()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    """The tiny model's tokenizer, padding on the right as Axolotl trains (it only pads here: ids are random)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.padding_side = "right"
    return tok


@pytest.fixture(scope="module")
def lora_model():
    """The tiny Gemma-3n with LoRA on the recipes' 7 projections, in train mode.

    ``init_lora_weights=False`` gives B random instead of zero, so that every LoRA
    matrix has a non-zero gradient to compare (with B = 0 the A gradients are all 0).
    """
    model = build_tiny_model(tiny_text_config(vocab_size=VOCAB), seed=1)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    peft_model.train()
    return peft_model


def padded_batch() -> dict:
    """Right-padded rows of different lengths; loss on the 'answer' part only, -100 on prompt and padding."""
    gen = torch.Generator().manual_seed(3)
    lengths, prompts, width = [37, 22, 30], [12, 9, 20], 40
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (n, p) in enumerate(zip(lengths, prompts, strict=True)):
        ids[row, :n] = torch.randint(3, VOCAB, (n,), generator=gen)
        mask[row, :n] = 1
        labels[row, p:n] = ids[row, p:n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def packed_batch(tokenizer) -> dict:
    """Two rows of three sequences each, packed by Axolotl's own multipack collator (position_ids restart at 0)."""
    gen = torch.Generator().manual_seed(4)

    def example(n: int, prompt: int) -> dict:
        ids = torch.randint(3, VOCAB, (n,), generator=gen).tolist()
        return {
            "input_ids": ids,
            "attention_mask": [1] * n,
            "labels": [-100] * prompt + ids[prompt:],
            "position_ids": list(range(n)),
        }

    rows = [[example(15, 5), example(11, 4), example(9, 3)], [example(20, 8), example(12, 2), example(6, 6)]]
    collate = V2BatchSamplerDataCollatorForSeq2Seq(tokenizer=tokenizer, padding=True, pad_to_multiple_of=8)
    batch = dict(collate(rows))
    assert batch["position_ids"][0, :16].tolist() == list(range(15)) + [0]  # a new sequence starts at 0
    return batch


def loss_and_grads(model, batch: dict, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor], object]:
    model.zero_grad(set_to_none=True)
    out = model(**batch, **kwargs)
    out.loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return out.loss.detach(), grads, out


def assert_same_loss_and_grads(model, batch: dict, **kwargs) -> None:
    """The patched forward (torch path) against the unpatched one: loss and every LoRA gradient within 1e-4."""
    ref_loss, ref_grads, ref_out = loss_and_grads(model, batch, **kwargs)
    assert ref_out.logits is not None
    patch.patch_gemma3n(patch.FusedLossSettings(chunk_tokens=CHUNK))
    before = loss.CALLS[("torch", "train")]
    fused_loss, grads, out = loss_and_grads(model, batch, **kwargs)
    assert loss.CALLS[("torch", "train")] == before + 1, "the fused torch path did not run"
    assert out.logits is None
    assert torch.isfinite(ref_loss)
    assert abs(fused_loss.item() - ref_loss.item()) <= RTOL * abs(ref_loss.item())
    assert len(grads) == 2 * (7 * 4 - 2)  # A and B of 7 projections in 4 layers; the KV-shared one has no k/v
    for name, ref in ref_grads.items():
        assert ref.norm() > 0, name
        assert (grads[name] - ref).norm() <= RTOL * ref.norm(), name


def test_padded_batch_mean_loss_and_grads_equal_the_unpatched_forward(lora_model):
    assert_same_loss_and_grads(lora_model, padded_batch())


def test_padded_batch_with_num_items_in_batch(lora_model):
    batch = padded_batch()
    counted = int((batch["labels"][:, 1:] != -100).sum())
    # Under gradient accumulation the Trainer passes the count over all micro batches.
    assert_same_loss_and_grads(lora_model, batch, num_items_in_batch=torch.tensor(3 * counted))


@pytest.mark.parametrize("num_items", [None, 40])
def test_packed_rows_equal_the_unpatched_forward(lora_model, tokenizer, num_items):
    kwargs = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    assert_same_loss_and_grads(lora_model, packed_batch(tokenizer), **kwargs)


def test_torch_path_runs_on_the_cpu_not_liger(lora_model):
    assert loss.resolve_impl("auto", torch.device("cpu")) == "torch"
    with pytest.raises(RuntimeError, match="liger needs CUDA"):
        loss.resolve_impl("liger", torch.device("cpu"))
    patch.patch_gemma3n()
    calls = loss.CALLS.copy()
    lora_model(**padded_batch()).loss.backward()
    new = loss.CALLS - calls
    assert new == {("torch", "train"): 1}
    assert not [key for key in loss.CALLS if key[0] == "liger"]


def test_without_labels_in_eval_and_in_generation_the_original_forward_runs(lora_model):
    batch = padded_batch()
    lora_model.eval()
    try:
        with torch.no_grad():
            ref = lora_model(**batch)
            ref_plain = lora_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            ref_gen = lora_model.generate(input_ids=batch["input_ids"][:1, :12], max_new_tokens=4, do_sample=False)
            patch.patch_gemma3n()
            calls = loss.CALLS.copy()
            out = lora_model(**batch)  # eval mode with labels: logits wanted unless skip_logits
            plain = lora_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            gen = lora_model.generate(input_ids=batch["input_ids"][:1, :12], max_new_tokens=4, do_sample=False)
            assert loss.CALLS == calls, "the fused loss ran where logits were wanted"
            skipped = lora_model(**batch, skip_logits=True)
    finally:
        lora_model.train()
    assert torch.equal(out.logits, ref.logits) and torch.equal(out.loss, ref.loss)
    assert torch.equal(plain.logits, ref_plain.logits) and plain.loss is None
    assert torch.equal(gen, ref_gen)
    assert skipped.logits is None and loss.CALLS[("torch", "eval")] >= 1
    assert abs(skipped.loss.item() - ref.loss.item()) <= RTOL * ref.loss.item()


def test_training_output_can_still_ask_for_logits(lora_model):
    batch = padded_batch()
    patch.patch_gemma3n()
    out = lora_model(**batch, skip_logits=False)
    assert out.logits is not None and out.logits.shape == (*batch["input_ids"].shape, VOCAB)
    as_tuple = lora_model(**batch, return_dict=False)
    assert len(as_tuple) >= 1 and torch.is_tensor(as_tuple[0]) and as_tuple[0].ndim == 0  # loss first, no logits


def test_patch_is_idempotent_and_reversible():
    original = Gemma3nForCausalLM.forward
    assert patch.patch_gemma3n() == ["Gemma3nForCausalLM", "Gemma3nForConditionalGeneration"]
    patched = Gemma3nForCausalLM.forward
    assert patch.patch_gemma3n() == [] and Gemma3nForCausalLM.forward is patched
    assert patch.is_patched(Gemma3nForCausalLM) and patch.is_patched(Gemma3nForConditionalGeneration)
    patch.unpatch_gemma3n()
    assert Gemma3nForCausalLM.forward is original and not patch.is_patched(Gemma3nForCausalLM)


def test_disabled_setting_makes_the_patch_inert(lora_model):
    patch.patch_gemma3n(patch.FusedLossSettings(enabled=False))
    out = lora_model(**padded_batch())
    assert out.logits is not None


# --------------------------------------------------------------------------- the shared loss function


def _reference(hidden, weight, labels, cap, **kwargs) -> torch.Tensor:
    """The unfused head and loss as Gemma-3n's forwards compute them."""
    logits = nn.functional.linear(hidden, weight)
    logits = torch.tanh(logits / cap) * cap
    return ForCausalLMLoss(logits, labels, weight.shape[0], **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("num_items", [None, 50])
def test_fused_loss_equals_head_softcap_and_for_causal_lm_loss(dtype, num_items):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 33, 16, generator=gen).to(dtype).requires_grad_()
    weight = (torch.randn(300, 16, generator=gen) * 2).to(dtype).requires_grad_()  # large logits: the cap matters
    labels = torch.randint(0, 300, (2, 33), generator=gen)
    labels[0, :9] = -100
    kwargs = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    ref = _reference(hidden, weight, labels, 30.0, **kwargs)
    ref_grads = torch.autograd.grad(ref, (hidden, weight))
    fused = loss.fused_causal_lm_loss(hidden, weight, labels, 30.0, chunk_tokens=5, **kwargs)
    grads = torch.autograd.grad(fused, (hidden, weight))
    assert fused.dtype == torch.float32 == ref.dtype
    assert abs(fused.item() - ref.item()) <= RTOL * abs(ref.item())
    # The hidden-state gradient (what LoRA's gradients flow from) matches in both dtypes; a bf16 weight
    # gradient is summed over chunks in bf16 (~0.3% off here); the recipes' LM head is frozen anyway.
    weight_tol = RTOL if dtype == torch.float32 else 1e-2
    for got, want, tol in zip(grads, ref_grads, (RTOL, weight_tol), strict=True):
        assert (got.float() - want.float()).norm() <= tol * want.float().norm()


def test_fused_loss_takes_shift_labels_and_matches_all_ignored_semantics():
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(1, 10, 8, generator=gen, requires_grad=True)
    weight = torch.randn(50, 8, generator=gen)
    shift = torch.randint(0, 50, (1, 10), generator=gen)
    ref = _reference(hidden, weight, None, 30.0, shift_labels=shift)
    fused = loss.fused_causal_lm_loss(hidden, weight, None, 30.0, shift_labels=shift, chunk_tokens=3)
    assert abs(fused.item() - ref.item()) <= RTOL * ref.item()
    ignored = torch.full((1, 10), -100)
    assert torch.isnan(loss.fused_causal_lm_loss(hidden, weight, ignored, 30.0))  # mean of nothing, as F.cross_entropy
    zero = loss.fused_causal_lm_loss(hidden, weight, ignored, 30.0, num_items_in_batch=torch.tensor(4))
    assert zero.item() == 0.0
    zero.backward()  # a micro batch without a trained token still backpropagates (zero gradient)
    assert hidden.grad is not None and hidden.grad.abs().sum() == 0


def test_fused_loss_keeps_no_full_vocabulary_tensor_for_backward():
    """Saved for backward: nothing larger than the head's own weight (a chunk's logits would be 2x, all 8x)."""
    hidden = torch.randn(1, 64, 8, requires_grad=True)
    weight = torch.randn(1000, 8)
    labels = torch.randint(0, 1000, (1, 64))

    def largest_saved(fn) -> int:
        sizes: list[int] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            fn()
        return max(sizes)

    assert largest_saved(lambda: loss.fused_causal_lm_loss(hidden, weight, labels, 30.0, chunk_tokens=16)) == 8000
    assert largest_saved(lambda: _reference(hidden, weight, labels, 30.0)) == 64 * 1000  # the unfused logits


# --------------------------------------------------------------------------- Gemma3nForConditionalGeneration


class _TextAsMultimodal(nn.Module):
    """``Gemma3nModel``'s interface around the tiny text model (the real one needs timm for its vision tower)."""

    def __init__(self, text_model: nn.Module):
        super().__init__()
        self.language_model = text_model

    def forward(self, input_ids=None, pixel_values=None, input_features=None, attention_mask=None,
                input_features_mask=None, position_ids=None, past_key_values=None, token_type_ids=None,
                inputs_embeds=None, labels=None, use_cache=None, return_dict=None, **kwargs):  # fmt: skip
        out = self.language_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return Gemma3nModelOutputWithPast(
            last_hidden_state=out.last_hidden_state, past_key_values=out.past_key_values, hidden_states=None
        )


def conditional_generation_around(text_lm: Gemma3nForCausalLM) -> Gemma3nForConditionalGeneration:
    """A ``Gemma3nForConditionalGeneration`` whose multimodal model is the tiny text model (no towers)."""
    model = Gemma3nForConditionalGeneration.__new__(Gemma3nForConditionalGeneration)
    nn.Module.__init__(model)
    model.config = Gemma3nConfig(text_config=text_lm.config.to_dict())
    model.model = _TextAsMultimodal(text_lm.model)
    model.lm_head = text_lm.lm_head
    model.loss_type = "ForConditionalGeneration"
    return model


def test_conditional_generation_forward_is_patched_the_same_way():
    text_lm = build_tiny_model(tiny_text_config(vocab_size=VOCAB), seed=2)
    model = conditional_generation_around(text_lm).train()
    assert model.config.get_text_config().final_logit_softcapping == 30.0
    batch = padded_batch()
    for kwargs in ({}, {"num_items_in_batch": torch.tensor(55)}):
        model.zero_grad(set_to_none=True)
        ref = model(**batch, **kwargs)
        ref.loss.backward()
        ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        patch.patch_gemma3n(patch.FusedLossSettings(chunk_tokens=CHUNK))
        model.zero_grad(set_to_none=True)
        calls = loss.CALLS[("torch", "train")]
        out = model(**batch, **kwargs)
        out.loss.backward()
        assert loss.CALLS[("torch", "train")] == calls + 1
        assert out.logits is None and ref.logits is not None
        assert abs(out.loss.item() - ref.loss.item()) <= RTOL * ref.loss.item()
        for name, want in ref_grads.items():
            assert (model.get_parameter(name).grad - want).norm() <= RTOL * want.norm() + 1e-12, name
        patch.unpatch_gemma3n()


# --------------------------------------------------------------------------- the plugin


def test_plugin_keys_pass_axolotls_validation_and_patch_once(lora_model):
    from axolotl.utils.config import prepare_plugins, validate_config

    cfg = DictDefault(
        {
            "base_model": "tiny",
            "plugins": ["mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin"],
            "gemma3n_loss_chunk_size": 64,
            "datasets": [{"path": "data/train.jsonl", "ds_type": "json", "type": "chat_template"}],
            "micro_batch_size": 1,
            "learning_rate": 1e-4,
        }
    )
    prepare_plugins(cfg)
    valid = validate_config(cfg)
    assert (valid.gemma3n_fused_loss, valid.gemma3n_loss_impl, valid.gemma3n_compile_layers) == (True, "auto", False)
    plugin = Gemma3nSpeedPlugin()
    assert settings_from(valid) == patch.FusedLossSettings(chunk_tokens=64)
    plugin.pre_model_load(valid)
    forward = Gemma3nForCausalLM.forward
    plugin.pre_model_load(valid)
    assert Gemma3nForCausalLM.forward is forward and patch.is_patched(Gemma3nForCausalLM)
    assert patch.settings().chunk_tokens == 64
    plugin.post_model_load(valid, lora_model)  # reports; compiles nothing (gemma3n_compile_layers off)
    assert not any(is_compiled(layer) for layer in decoder_layers(lora_model))


def test_defaults_when_the_config_lacks_the_keys():
    assert settings_from(DictDefault({})) == patch.FusedLossSettings()
    assert settings_from(DictDefault({"gemma3n_fused_loss": False})).enabled is False


def test_compile_layers_is_a_no_op_on_the_cpu(lora_model):
    assert len(decoder_layers(lora_model)) == 4
    assert compile_decoder_layers(lora_model, "cpu") == 0
    assert not any(is_compiled(layer) for layer in decoder_layers(lora_model))


@pytest.mark.slow
def test_compiled_layers_compile_the_training_forward_only(lora_model):
    """With a counting backend standing in for inductor: a training step compiles (and its loss and
    gradients equal eager ones: the backend runs the traced graph as is); evaluation under no_grad,
    and a train-mode forward without grad, never reach the compiler, so they cost no compile."""
    import torch._dynamo

    traced = []

    def counting_backend(graph_module, example_inputs):
        traced.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    ref_loss, ref_grads, _ = loss_and_grads(lora_model, padded_batch())
    try:
        assert compile_decoder_layers(lora_model, "cuda", backend=counting_backend) == 4
        compile_decoder_layers(lora_model, "cuda", backend=counting_backend)  # idempotent
        assert all(is_compiled(layer) for layer in decoder_layers(lora_model))
        assert {n for n, _ in lora_model.named_parameters()} == set(ref_grads) | {
            n for n, p in lora_model.named_parameters() if not p.requires_grad
        }
        lora_model.eval()
        with torch.no_grad():
            lora_model(**padded_batch())
        lora_model.train()
        with torch.no_grad():
            lora_model(**padded_batch())
        assert traced == []
        compiled_loss, grads, _ = loss_and_grads(lora_model, padded_batch())
        assert traced, "the training forward did not go through the compiler"
        assert abs(compiled_loss.item() - ref_loss.item()) <= RTOL * abs(ref_loss.item())
        for name, ref in ref_grads.items():
            assert (grads[name] - ref).norm() <= RTOL * ref.norm(), name
    finally:
        lora_model.train()
        for layer in decoder_layers(lora_model):
            uncompile(layer)
        torch._dynamo.reset()
    assert not any(is_compiled(layer) for layer in decoder_layers(lora_model))


SPEED_PLUGINS = ["mathpal_train.gemma3n_speed.Gemma3nSpeedPlugin"]
LIGER_PLUGIN = "axolotl.integrations.liger.LigerPlugin"


def speed_recipe(**keys) -> DictDefault:
    """A minimal recipe naming the plugin, plus ``keys``."""
    return DictDefault(
        {
            "base_model": "tiny",
            "plugins": SPEED_PLUGINS,
            "datasets": [{"path": "data/train.jsonl", "ds_type": "json", "type": "chat_template"}],
            "micro_batch_size": 1,
            "learning_rate": 1e-4,
            **keys,
        }
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"gemma3n_compile_layers": True, "torch_compile": True}, "gemma3n_compile_layers and torch_compile"),
        (
            {"plugins": [*SPEED_PLUGINS, LIGER_PLUGIN], "liger_fused_linear_cross_entropy": True},
            "liger_fused_linear_cross_entropy drops",
        ),
    ],
)
def test_axolotls_validation_refuses_conflicting_keys(keys, message):
    from axolotl.utils.config import prepare_plugins, validate_config

    cfg = speed_recipe(**keys)
    prepare_plugins(cfg)
    with pytest.raises(ValueError, match=message):
        validate_config(cfg)


def test_the_conflicts_are_allowed_when_the_plugin_feature_is_off():
    from axolotl.utils.config import prepare_plugins, validate_config

    cfg = speed_recipe(
        plugins=[*SPEED_PLUGINS, LIGER_PLUGIN], gemma3n_fused_loss=False, liger_fused_linear_cross_entropy=True
    )
    prepare_plugins(cfg)
    assert validate_config(cfg).liger_fused_linear_cross_entropy is True


def test_liger_impl_without_liger_kernel_is_refused(monkeypatch):
    from axolotl.utils.config import prepare_plugins, validate_config

    monkeypatch.setattr("mathpal_train.gemma3n_speed.args.liger_available", lambda: False)
    cfg = speed_recipe(gemma3n_loss_impl="liger")
    prepare_plugins(cfg)
    with pytest.raises(ValueError, match="liger needs liger_kernel installed"):
        validate_config(cfg)


def test_mathpal_validate_names_the_conflict_in_one_line(tmp_path, monkeypatch):
    from mathpal_train.validate import RecipeError, validate_recipe

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"messages": []}\n')
    cfg = {**speed_recipe(gemma3n_compile_layers=True, torch_compile=True), "base_model": "google/gemma-3n-E2B-it"}
    with pytest.raises(RecipeError, match="gemma3n_compile_layers and torch_compile both compile") as err:
        validate_recipe(dict(cfg), tmp_path / "r.yml")
    assert "\n" not in str(err.value)


def test_trainer_loss_only_evaluation_takes_the_fused_path_with_the_same_eval_loss(lora_model, tmp_path):
    """HF Trainer.evaluate (prediction_loss_only, as in our recipes): eval_loss unchanged, logits never built."""
    from transformers import Trainer, TrainingArguments

    batch = padded_batch()
    rows = [{k: v[i] for k, v in batch.items()} for i in range(3)] * 2
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=2, report_to=[], use_cpu=True, dataloader_num_workers=0
    )
    lora_model.eval()
    try:
        ref = Trainer(model=lora_model, args=args, eval_dataset=rows).evaluate()
        patch.patch_gemma3n(patch.FusedLossSettings(chunk_tokens=CHUNK))
        trainer = Trainer(model=lora_model, args=args, eval_dataset=rows)
        Gemma3nSpeedPlugin().post_trainer_create(DictDefault({}), trainer)
        calls = loss.CALLS[("torch", "eval")]
        fused = trainer.evaluate()
    finally:
        lora_model.train()
    assert loss.CALLS[("torch", "eval")] == calls + 3  # 3 eval batches, all through the fused loss
    assert abs(fused["eval_loss"] - ref["eval_loss"]) <= RTOL * ref["eval_loss"]


def test_prediction_step_with_logits_wanted_is_left_alone(lora_model, tmp_path):
    """Callers that read logits (Axolotl's bench and causal-LM-metric callbacks) still get them."""
    from transformers import Trainer, TrainingArguments

    patch.patch_gemma3n()
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = Trainer(model=lora_model, args=args)
    skip_logits_in_loss_only_eval(trainer)
    lora_model.eval()
    try:
        loss_value, logits, labels = trainer.prediction_step(lora_model, padded_batch(), prediction_loss_only=False)
        only_loss, none_logits, _ = trainer.prediction_step(lora_model, padded_batch(), prediction_loss_only=True)
    finally:
        lora_model.train()
    assert logits is not None and logits.shape[-1] == VOCAB and labels is not None
    assert none_logits is None and abs(only_loss.item() - loss_value.item()) <= RTOL * loss_value.item()
