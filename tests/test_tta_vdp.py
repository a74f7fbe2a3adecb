"""Visual domain prompt invariants (perception-adapters.md section 3.4)."""

from __future__ import annotations

import pytest
import torch

from vadapters.errors import BadInputError
from vadapters.tta import VDP, BNAdapt, DomainShiftDetector, Source, VDPConfig, homeostasis_loss, prompt_mask

X = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))


pytestmark = pytest.mark.usefixtures("one_thread")


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "shape,size,count", [("pad", 4, 3 * (32 * 32 - 24 * 24)), ("patch", 6, 3 * 36), ("full", 0, 3 * 1024)]
)
def test_prompt_mask_pixel_count(shape, size, count):
    assert int(prompt_mask(shape, size, 32, 32).sum()) == count
    assert int(prompt_mask("pad", 2, 32, 32).sum()) == 3 * (32 * 32 - 28 * 28)


def test_bad_prompt_settings():
    with pytest.raises(BadInputError, match="pad width"):
        prompt_mask("pad", 16, 32, 32)
    with pytest.raises(BadInputError, match="bn_mode"):
        VDPConfig(bn_mode="train")


def test_zero_prompts_give_source_logits_bit_equal(cnn, vit):
    for model in (cnn, vit):
        vdp = VDP(model, image_size=(32, 32))
        assert torch.equal(vdp.logits(X), model((X - 0.5) / 0.5))
        assert torch.equal(vdp(X), Source(model)(X))  # the first prediction is made before any update
    bn = VDP(cnn, bn_mode="batch_stats")
    assert torch.equal(bn(X), BNAdapt(cnn)(X))


@pytest.mark.parametrize("bn_mode", ["frozen", "batch_stats"])
def test_backbone_bit_identical_and_only_prompts_change(cnn, bn_mode):
    before = _state(cnn)
    vdp = VDP(cnn, bn_mode=bn_mode, n_aug=1, ema=0.5, image_size=(32, 32))
    fresh = vdp.state_dict()
    for seed in range(3):
        vdp(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    after = _state(cnn)
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert all(p.grad is None for p in cnn.parameters())
    moved = {k for k, v in vdp.state_dict().items() if not torch.equal(v, fresh[k])}
    assert {"student.dsp", "student.dap", "teacher.dsp", "teacher.dap"} <= moved
    mask = vdp.mask.bool()
    for key in ("student.dsp", "student.dap", "teacher.dsp", "teacher.dap"):
        assert torch.count_nonzero(vdp.state_dict()[key][~mask]) == 0  # prompts stay inside their mask


def test_teacher_is_ema_of_student(vit):
    vdp = VDP(vit, ema=0.9, n_aug=0)
    vdp(X)  # builds the prompts, first update
    teacher = {k: vdp.state_dict()[f"teacher.{k}"] for k in ("dsp", "dap")}
    vdp(X)
    state = vdp.state_dict()
    for k in ("dsp", "dap"):
        assert torch.allclose(state[f"teacher.{k}"], 0.9 * teacher[k] + 0.1 * state[f"student.{k}"], atol=1e-7)


def test_homeostasis_loss_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    anchor, importance = torch.randn(1, 3, 4, 4, generator=g), torch.rand(1, 3, 4, 4, generator=g)
    dap = anchor.clone().requires_grad_(True)
    assert float(homeostasis_loss(dap, anchor, importance, 2.5).detach()) == 0.0
    dap = (anchor + torch.randn(1, 3, 4, 4, generator=g)).requires_grad_(True)
    (grad,) = torch.autograd.grad(homeostasis_loss(dap, anchor, importance, 2.5), dap)
    assert torch.allclose(grad, 2 * 2.5 * importance * (dap.detach() - anchor))


def test_domain_detector_fires_on_step_never_on_constant():
    detector = DomainShiftDetector(0.1)
    assert not any(detector.update(0.8) for _ in range(50))
    fired = [detector.update(c) for c in [0.8] * 10 + [0.4] * 10]
    assert fired.index(True) == 10 and sum(fired) == 1


def test_consolidation_at_domain_change(vit):
    vdp = VDP(vit, shift_threshold=0.0, n_aug=0, lr=0.1)  # threshold 0: every confidence change is a "domain change"
    for seed in range(3):
        vdp(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    state = vdp.state_dict()
    assert vdp.domain_changes >= 1
    importance = state["homeostasis.importance"]
    assert importance.min() >= 0 and importance.max() <= 1
    # the anchor was set to the DAP of the batch before the last detected change, so it differs from the live DAP
    assert not torch.equal(state["homeostasis.anchor"], torch.zeros_like(state["homeostasis.anchor"]))
    quiet = VDP(vit, shift_threshold=10.0, n_aug=0)
    for seed in range(3):
        quiet(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    assert quiet.domain_changes == 0 and torch.count_nonzero(quiet.state_dict()["homeostasis.importance"]) == 0


def test_reset_save_load(tmp_path, vit):
    vdp = VDP(vit, n_aug=1, prompt="patch", prompt_size=8)
    fresh = vdp.state_dict() if vdp.mask is not None else None
    vdp(X)
    moved = vdp.state_dict()
    vdp.save_pretrained(tmp_path)
    again = VDP.from_pretrained(vit, tmp_path)
    assert again.config.image_size == (32, 32) and again.config.prompt == "patch"
    assert all(torch.equal(again.state_dict()[k], v) for k, v in moved.items())
    vdp.reset()
    assert all(torch.count_nonzero(v) == 0 for v in vdp.state_dict().values())
    assert fresh is None  # prompts are built from the first batch when image_size is not given
    with pytest.raises(BadInputError, match="prompts are"):
        vdp(torch.rand(2, 3, 16, 16))


def test_randn_init_is_masked_and_seeded(vit):
    a = VDP(vit, init="randn", image_size=(32, 32), seed=1).state_dict()["student.dsp"]
    b = VDP(vit, init="randn", image_size=(32, 32), seed=1).state_dict()["student.dsp"]
    assert torch.equal(a, b) and torch.count_nonzero(a) == int(prompt_mask("pad", 4, 32, 32).sum())


def test_anchor_gate_and_soft_targets(vit):
    gated = VDP(vit, ap=0.0, n_aug=3, soft_targets=True)  # confidence is never below 0: no augmentation
    gated(X)
    assert gated.diagnostics["augmented"] is False and gated.diagnostics["task_loss"] > 0
    always = VDP(vit, ap=1.0, n_aug=1)
    always(X)
    assert always.diagnostics["augmented"] is True


def test_dsp_and_dap_move_together_until_a_domain_change(vit):
    vdp = VDP(vit, n_aug=0, lr=0.05, shift_threshold=10.0)  # no domain change: the DAP has no importance yet
    for seed in range(3):
        vdp(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    state = vdp.state_dict()
    assert torch.count_nonzero(state["student.dsp"]) > 0
    assert torch.equal(state["student.dsp"], state["student.dap"])
    assert torch.equal(state["teacher.dsp"], state["teacher.dap"])
