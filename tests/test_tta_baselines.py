"""Source / BN adapt / TENT / CoTTA invariants (perception-adapters.md section 2)."""

from __future__ import annotations

import copy

import pytest
import torch

from vadapters.errors import BadInputError, CheckpointError
from vadapters.models import tiny_timm_classifier
from vadapters.tta import TENT, BNAdapt, CoTTA, CoTTAAugment, Source, batch_statistics, confidence_threshold
from vadapters.tta.baselines import ema_update, soft_cross_entropy, stochastic_restore

pytestmark = pytest.mark.usefixtures("one_thread")


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


X = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_source_and_bn_adapt_leave_the_model_alone(cnn):
    before = _state(cnn)
    probs = Source(cnn)(X)
    assert torch.equal(probs, cnn((X - 0.5) / 0.5).softmax(1))
    adapted = BNAdapt(cnn)(X)
    assert not torch.allclose(adapted, probs)  # test-batch statistics differ from the running ones
    assert _same(before, _state(cnn))
    with batch_statistics(cnn):  # the same as a train-mode BN forward without the buffer update
        reference = copy.deepcopy(cnn).train()((X - 0.5) / 0.5).softmax(1)
    assert torch.allclose(adapted, reference, atol=1e-6)


def test_bn_adapt_is_source_for_layernorm_models(vit):
    assert torch.equal(BNAdapt(vit)(X), Source(vit)(X))


@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_tent_trains_only_norm_affine_and_predicts_before_update(name, cnn, vit):
    model = cnn if name == "cnn" else vit
    before = _state(model)
    tent = TENT(model)
    norm_types = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)
    affine = {
        f"{m}.{p}" for m, mod in tent.model.named_modules() if isinstance(mod, norm_types) for p in ("weight", "bias")
    }
    trainable = {n for n, p in tent.model.named_parameters() if p.requires_grad}
    assert trainable == set(tent.params) and trainable <= affine and trainable
    source = {n: p.detach().clone() for n, p in tent.model.named_parameters()}
    first = tent(X)
    # the returned prediction is the pre-update one: it equals a fresh batch-statistics forward of the source model
    fresh = TENT(model)
    with torch.no_grad():
        expected = fresh.model(fresh.normalise(X)).softmax(1)
    assert torch.equal(first, expected)
    changed = {n for n, p in tent.model.named_parameters() if not torch.equal(p, source[n])}
    assert changed and changed <= trainable
    assert _same(before, _state(model)) and all(p.grad is None for p in model.parameters())


def test_tent_episodic_reset_is_exact(cnn):
    tent = TENT(cnn, episodic=True)
    a = tent(X)
    tent(torch.rand(8, 3, 32, 32))
    b = tent(X)
    assert torch.equal(a, b)  # every batch starts from the source state with a fresh optimiser
    continual = TENT(cnn)
    continual(X)
    continual(torch.rand(8, 3, 32, 32))
    state = continual.state_dict()
    continual.reset()
    assert _same(continual.state_dict(), TENT(cnn).state_dict()) and not _same(state, continual.state_dict())
    assert not continual.optimizer.state


def test_tent_rejects_models_without_norm_affine():
    with pytest.raises(BadInputError, match="norm parameters"):
        TENT(tiny_timm_classifier("test_resnet"), norm_layers=("group",))


def test_stochastic_restore_bounds():
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(5, 5)}
    source = {"w": torch.zeros(5, 5)}
    kept = params["w"].clone()
    assert stochastic_restore(params, source, 0.0, g) == 0 and torch.equal(params["w"], kept)
    assert stochastic_restore(params, source, 1.0, g) == 25 and torch.equal(params["w"], source["w"])


def test_ema_formula():
    teacher, student = {"a": torch.tensor([1.0, 2.0])}, {"a": torch.tensor([3.0, 6.0])}
    ema_update(teacher, student, 0.75)
    assert torch.allclose(teacher["a"], torch.tensor([0.75 * 1 + 0.25 * 3, 0.75 * 2 + 0.25 * 6]))
    unchanged = {"a": torch.tensor([1.0, 2.0])}
    ema_update(unchanged, student, 1.0)
    assert torch.equal(unchanged["a"], torch.tensor([1.0, 2.0]))


def test_cotta_restore_one_gives_source_and_anchor_never_changes(cnn):
    before = _state(cnn)
    cotta = CoTTA(cnn, rst=1.0, n_aug=2, ap=1.0)
    anchor = _state(cotta.anchor)
    cotta(X)
    cotta(torch.rand(8, 3, 32, 32))
    assert all(torch.equal(p, cotta.restore_source[n]) for n, p in cotta.params.items())
    assert _same(anchor, _state(cotta.anchor)) and _same(before, _state(cnn))
    assert cotta.augmented_batches == 2


def test_cotta_restore_zero_restores_nothing_and_teacher_is_ema(cnn):
    cotta = CoTTA(cnn, rst=0.0, ap=0.0, ema=0.5)
    teacher_before = {n: p.detach().clone() for n, p in cotta.teacher_params.items()}
    cotta(X)
    assert cotta.diagnostics["restored"] == 0 and cotta.augmented_batches == 0  # ap = 0: augmentation never runs
    changed = [n for n, p in cotta.params.items() if not torch.equal(p, cotta.restore_source[n])]
    assert changed  # Adam moved the student and nothing was put back
    for name, param in cotta.teacher_params.items():
        expected = 0.5 * teacher_before[name] + 0.5 * cotta.params[name].detach()
        assert torch.allclose(param, expected, atol=1e-7), name


def test_cotta_trains_weights_and_biases_and_returns_teacher_prediction(vit):
    cotta = CoTTA(vit, ap=0.0, rst=0.0)
    trainable = {n for n, p in cotta.student.named_parameters() if p.requires_grad}
    assert trainable == set(cotta.params) and all(n.endswith(("weight", "bias")) for n in trainable)
    assert "pos_embed" not in trainable and "cls_token" not in trainable
    with torch.no_grad():
        teacher_before = cotta.teacher(cotta.normalise(X)).softmax(1)
    assert torch.equal(cotta(X), teacher_before)


def test_cotta_reset_and_state_io(tmp_path, cnn):
    cotta = CoTTA(cnn, n_aug=1, ap=1.0)
    fresh = cotta.state_dict()
    cotta(X)
    moved = cotta.state_dict()
    cotta.save_pretrained(tmp_path)
    restored = CoTTA.from_pretrained(cnn, tmp_path)
    assert _same(restored.state_dict(), moved) and restored.config == cotta.config
    cotta.reset()
    assert _same(cotta.state_dict(), fresh)
    with pytest.raises(CheckpointError, match="mismatch"):
        cotta.load_state_dict({"student.nope": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="cotta"):
        TENT.from_pretrained(cnn, tmp_path)


def test_soft_cross_entropy_and_threshold(vit):
    logits = torch.randn(4, 5)
    assert torch.allclose(soft_cross_entropy(logits, logits), -(logits.softmax(1) * logits.log_softmax(1)).sum(1))
    ap = confidence_threshold(vit, torch.rand(16, 3, 32, 32))
    conf = Source(vit)(torch.rand(16, 3, 32, 32)).max(1).values
    assert 0.0 <= ap < float(conf.max())


def test_augmentation_is_seeded_and_in_range():
    x = torch.rand(3, 3, 32, 32)
    a, b = CoTTAAugment(seed=3)(x), CoTTAAugment(seed=3)(x)
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(CoTTAAugment(seed=4)(x), a)


def test_cotta_symmetric_and_sgd_variant(vit):
    cotta = CoTTA(vit, symmetric=True, optimizer="sgd", lr=0.01, ap=0.0, rst=0.001)
    probs = cotta(X)
    assert probs.shape == (8, 10) and cotta.diagnostics["loss"] > 0
    assert isinstance(cotta.optimizer, torch.optim.SGD) and cotta.optimizer.defaults["nesterov"]
