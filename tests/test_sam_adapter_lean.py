"""Memory-lean SAM-Adapter training (`vadapters.methods.sam_adapter.lean`): the adapter's gradients equal the plain
run's, no attention matrix is kept, blocks are really recomputed, frozen weights never hold gradients, mixed
precision reaches the encoder, and everything comes off again."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

import vadapters
from vadapters.errors import BadInputError
from vadapters.methods.sam_adapter import SAMAdapterConfig
from vadapters.methods.sam_adapter.lean import (
    LeanOptions,
    disable_lean_training,
    efficient_attention_forward,
    enable_lean_training,
    lean_options,
    lean_training,
    rel_pos_attention,
)
from vadapters.methods.sam_adapter.train import SAMAdapterRecipe
from vadapters.models import tiny_sam

pytestmark = pytest.mark.usefixtures("one_thread")


def _sam(inject=True):
    # 9 x 9 tokens: windows of 4 need padding; blocks 0 and 2 windowed, block 1 global
    sam = tiny_sam(seed=0, img_size=72, patch_size=8, depth=3, window_size=4, global_attn_indexes=(1,))
    with torch.no_grad():  # relative-position tables large enough that their terms matter in the gradients
        for name, param in sam.image_encoder.named_parameters():
            if name.endswith(("rel_pos_h", "rel_pos_w")):
                param.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(len(name)))
    if inject:
        torch.manual_seed(0)
        vadapters.inject(sam, SAMAdapterConfig(scale_factor=8, init="official"), adapter_name="a")
    return sam


def _recipe(sam=None, lean=False):
    from vadapters.methods.sam_adapter.data import make_segmentation_source

    sam = _sam(inject=False) if sam is None else sam
    torch.manual_seed(0)  # the adapter's initialisation
    source = make_segmentation_source("synthetic:camouflage", num_items=4, seed=0, size=(72, 72))
    return SAMAdapterRecipe(
        sam, SAMAdapterConfig(scale_factor=8, init="official"), source, 2, "iou", 0.0, 0, "a", lean=lean
    )


def _batch(recipe):
    return recipe.collate([recipe.dataset[i] for i in range(2)])


def _adapter_grads(recipe, batch):
    recipe.generator.manual_seed(0)  # the same flips
    params = recipe.trainable_parameters()
    for p in params:
        p.grad = None
    recipe.loss(batch, 0).backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]


def _names(recipe):
    ids = {id(p): n for n, p in recipe.model.named_parameters()}
    return [ids[id(p)] for p in recipe.trainable_parameters()]


@pytest.mark.parametrize(
    "options",
    [
        {"query_chunk": 5},  # both switches, ragged chunks (81 and 16 queries)
        {"checkpoint": False, "query_chunk": 7},
        {"efficient_attention": False},
        True,
    ],
)
def test_adapter_gradients_equal_the_plain_run(options):
    plain = _recipe()
    batch = _batch(plain)
    reference = _adapter_grads(plain, batch)
    lean = _recipe(lean=options)
    assert lean.lean is not None
    got = _adapter_grads(lean, batch)
    flat_ref, flat_got = torch.cat([g.flatten() for g in reference]), torch.cat([g.flatten() for g in got])
    assert float((flat_got - flat_ref).norm() / flat_ref.norm()) <= 1e-4
    prompt_tensors = 0
    for name, r, g in zip(_names(lean), reference, got):
        if ".prompt_generator." in name:  # every one of these flows back through every frozen block
            prompt_tensors += 1
            assert float(r.norm()) > 0, name
            assert float((g - r).norm() / r.norm()) <= 1e-4, name
    assert prompt_tensors == 2 + 2 + 2 * 3 + 2


def test_rel_pos_attention_matches_softmax_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    b, hk, wk, d = 2, 3, 4, 5
    n = hk * wk
    q, k, v = (torch.randn(b, n, d, generator=g, dtype=torch.double, requires_grad=True) for _ in range(3))
    rel_h = torch.randn(b, n, hk, generator=g, dtype=torch.double, requires_grad=True)
    rel_w = torch.randn(b, n, wk, generator=g, dtype=torch.double, requires_grad=True)

    def reference(q, k, v, rel_h, rel_w):
        logits = (0.7 * q @ k.transpose(1, 2)).view(b, n, hk, wk) + rel_h[..., None] + rel_w[:, :, None, :]
        return logits.view(b, n, n).softmax(-1) @ v

    got = rel_pos_attention(q, k, v, rel_h, rel_w, scale=0.7, query_chunk=5)
    torch.testing.assert_close(got, reference(q, k, v, rel_h, rel_w))
    inputs = (q, k, v, rel_h, rel_w)
    assert torch.autograd.gradcheck(lambda *t: rel_pos_attention(*t, scale=0.7, query_chunk=5), inputs)


def test_efficient_attention_keeps_no_attention_matrix():
    torch.manual_seed(0)
    attention = Attention(32, num_heads=2, use_rel_pos=True, rel_pos_zero_init=False, input_size=(12, 12))
    attention.requires_grad_(False)
    x = torch.randn(1, 12, 12, 32, requires_grad=True)
    n = 12 * 12

    def largest_saved(forward):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            y = forward()
        y.sum().backward()
        return max(sizes)

    assert largest_saved(lambda: attention(x)) >= 2 * n * n  # segment-anything keeps heads x N x N
    assert largest_saved(lambda: efficient_attention_forward(attention, x, query_chunk=16)) < n * n
    plain = attention(x)
    torch.testing.assert_close(efficient_attention_forward(attention, x, 16), plain, rtol=1e-5, atol=1e-6)


def test_checkpointed_blocks_are_recomputed_only_when_training():
    sam = _sam()
    calls = []
    for block in sam.image_encoder.blocks:
        block.attn.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(1, 3, 72, 72)
    with lean_training(sam, {"checkpoint": True}):
        with torch.no_grad():
            sam.image_encoder(x)
        assert len(calls) == 3
        calls.clear()
        sam.image_encoder(x).sum().backward()
        assert len(calls) == 6  # forward + recomputation in backward
    calls.clear()
    sam.image_encoder(x).sum().backward()
    assert len(calls) == 3


def test_frozen_weights_never_hold_gradients_and_trainable_is_enforced():
    recipe = _recipe(lean=True)
    sam = recipe.model
    stray = sam.image_encoder.blocks[0].mlp.lin1.weight
    stray.requires_grad_(True)  # someone unfroze a host weight: the lean set-up freezes it again
    enable_lean_training(sam, True, recipe.trainable_parameters())
    assert not stray.requires_grad
    recipe.loss(_batch(recipe), 0).backward()
    trainable = {id(p) for p in recipe.trainable_parameters()}
    holding = [n for n, p in sam.named_parameters() if id(p) not in trainable and p.grad is not None]
    assert holding == []
    assert any(p.grad is not None for p in recipe.trainable_parameters())


def test_disable_and_context_restore_plain_forwards():
    sam = _sam()
    blocks = sam.image_encoder.blocks
    with lean_training(sam, LeanOptions(query_chunk=3)) as options:
        assert options.query_chunk == 3 and "forward" in vars(blocks[1]) and "forward" in vars(blocks[1].attn)
        with lean_training(sam, {"checkpoint": False}):
            assert "forward" not in vars(blocks[1]) and lean_options(sam).checkpoint is False
        assert lean_options(sam).query_chunk == 3 and "forward" in vars(blocks[1])
    assert lean_options(sam) is None
    assert all("forward" not in vars(b) and "forward" not in vars(b.attn) for b in blocks)
    enable_lean_training(sam, True)
    state = {k: v.clone() for k, v in sam.state_dict().items()}
    disable_lean_training(sam)
    disable_lean_training(sam)  # idempotent
    assert state.keys() == sam.state_dict().keys()


@pytest.mark.parametrize("bad", [{"query_chunk": 0}, {"chunk": 4}, "yes", 3])
def test_bad_options_are_refused(bad):
    with pytest.raises(BadInputError):
        LeanOptions.from_value(bad)


def test_bf16_autocast_reaches_the_encoder_and_stays_close():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    accelerator = Accelerator(cpu=True, mixed_precision="bf16")
    try:
        plain = _recipe()
        batch = _batch(plain)
        reference = _adapter_grads(plain, batch)
        lean = _recipe(lean=True)
        lean.setup(accelerator, lean.model)
        dtypes = []
        lean.model.image_encoder.blocks[1].attn.qkv.register_forward_hook(lambda m, a, o: dtypes.append(o.dtype))
        got = _adapter_grads(lean, batch)
    finally:
        AcceleratorState._reset_state()
    assert torch.bfloat16 in dtypes
    flat_ref, flat_got = torch.cat([g.flatten() for g in reference]), torch.cat([g.flatten() for g in got])
    assert all(bool(g.isfinite().all()) for g in got)
    assert float((flat_got - flat_ref).norm() / flat_ref.norm()) < 0.1  # bf16 has 8 mantissa bits


def test_one_trainer_step_with_lean(tmp_path):
    from vadapters.train.trainer import Trainer, TrainingArguments

    recipe = _recipe(lean=True)
    args = TrainingArguments(str(tmp_path), max_steps=1, batch_size=2, checkpoint_every=0)
    summary = Trainer(recipe, args).train()
    assert summary["steps"] == 1 and summary["final_loss"] is not None


def test_train_adapter_switches_lean_on(tmp_path, monkeypatch):
    import vadapters.methods.sam_adapter.train as train_module
    from vadapters.train import train_adapter

    seen = []

    def recording(sam, options, trainable=None):
        seen.append(options)
        return enable_lean_training(sam, options, trainable)

    monkeypatch.setattr(train_module, "enable_lean_training", recording)
    summary = train_adapter(
        "sam_adapter",
        output_dir=tmp_path,
        steps=1,
        batch_size=2,
        num_items=4,
        val_fraction=0.0,
        config_overrides={"scale_factor": 8},
        checkpoint_every=0,
        lean={"query_chunk": 16},
    )
    assert summary["steps"] == 1 and seen == [{"query_chunk": 16}]
