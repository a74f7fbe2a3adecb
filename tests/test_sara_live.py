"""SaRA's training fast path (`methods/sara/live.py`): same values and gradients as the out-of-place compose, no
full copy per forward, and a loud error (not a wrong gradient) when a saved weight was rewritten."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vadapters
from vadapters.methods.sara import SaRAConfig
from vadapters.methods.sara.sparse import sara_tensors


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 16))


def _adapted(seed: int = 0) -> nn.Module:
    model = vadapters.inject(_model(seed), SaRAConfig(quantile=0.3), adapter_name="s")
    with torch.no_grad():
        for p in _values(model):
            p.add_(0.01)
    return model


def _values(model):
    return [p for n, p in model.named_parameters() if p.requires_grad]


def _step_grads(model, x):
    for p in _values(model):
        p.grad = None
    model(x).square().sum().backward()
    return [p.grad.clone() for p in _values(model)]


def _plain_compose(self, base, adapters):
    """The out-of-place compose, as it runs without the fast path."""
    delta = self.sara_deltas[adapters[0][0]]
    return base.reshape(-1).index_put((delta.indices,), delta.effective_values()).view(base.shape)


def test_live_path_matches_out_of_place_compose_over_training_steps(monkeypatch):
    from vadapters.methods.sara.sparse import SaRATensor

    x = torch.randn(4, 3, 6, 6)
    live, plain = _adapted(), _adapted()
    opt_live = torch.optim.AdamW(_values(live), lr=1e-2)
    opt_plain = torch.optim.AdamW(_values(plain), lr=1e-2)
    fast = SaRATensor.compose
    for _ in range(4):
        g_live = _step_grads(live, x)
        monkeypatch.setattr(SaRATensor, "compose", _plain_compose)
        g_plain = _step_grads(plain, x)
        monkeypatch.setattr(SaRATensor, "compose", fast)
        for a, b in zip(g_live, g_plain):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        opt_live.step()
        opt_plain.step()
    assert all(layer._live.tensor is not None for *_, layer in sara_tensors(live))
    assert all(layer._live.tensor is None for *_, layer in sara_tensors(plain))
    for a, b in zip(_values(live), _values(plain)):
        torch.testing.assert_close(a, b)


def test_live_weight_is_reused_until_values_change():
    model = _adapted()
    x = torch.randn(2, 3, 6, 6)
    (_, owner, attr, layer) = sara_tensors(model)[0]
    model(x).sum().backward()
    first = layer._live.tensor
    assert first is not None
    version = first._version
    model(x).sum().backward()  # gradient accumulation: values unchanged, nothing rewritten
    assert layer._live.tensor is first and first._version == version
    with torch.no_grad():
        _values(model)[0].add_(1.0)
    model(x).sum().backward()
    assert layer._live.tensor is first and first._version > version  # rewritten in place, not copied


def test_rewriting_a_saved_weight_before_backward_raises():
    model = _adapted()
    x = torch.randn(2, 3, 6, 6)
    loss = model(x).sum()
    with torch.no_grad():
        _values(model)[0].add_(1.0)
    model(x).sum()  # rewrites the live weight the first graph saved
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()


def test_eval_fuse_and_unload_drop_the_live_weight_and_outputs_stay_right():
    model = _adapted()
    x = torch.randn(2, 3, 6, 6)
    model(x).sum().backward()
    layers = [layer for *_, layer in sara_tensors(model)]
    with torch.no_grad():
        for p in _values(model):
            p.add_(0.05)
    model.eval()
    assert all(layer._live.tensor is None for layer in layers)
    with torch.no_grad():
        expected = model(x)
    vadapters.fuse(model)
    assert all(layer._live.tensor is None for layer in layers)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    vadapters.unfuse(model)
    model.train()
    out = model(x)  # training path again after unfuse: rebuilt from the restored base
    torch.testing.assert_close(out.detach(), expected, rtol=1e-5, atol=1e-6)
