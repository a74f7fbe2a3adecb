"""Shared invariants every adapter method must satisfy, run over `matrix_cases.CASES` plus the `CASES` of every
`tests/matrix_<method>.py` module (one file per method, so methods never edit each other's rows)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import toy_methods  # noqa: F401 - registers the test-only processor method
from matrix_cases import MatrixCase, all_cases, perturb_adapter
from safetensors.torch import load_file, save_file

import vadapters
from vadapters.core.io import WEIGHTS_NAME

CASES = all_cases()
pytestmark = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same_state(module, snapshot):
    state = module.state_dict()
    assert set(state) == set(snapshot), set(state) ^ set(snapshot)
    for key, value in snapshot.items():
        assert torch.equal(state[key], value), key


def _perturb(host, name, seed=1):
    """Give adapter `name` random non-zero values so that it changes outputs."""
    perturb_adapter(host, name, scale=0.2, seed=seed)


def _adapted(case: MatrixCase, name="a", perturb=True):
    host = case.make_host()
    vadapters.inject(host, case.make_config(), adapter_name=name)
    if perturb:
        _perturb(host, name)
    return host


def test_fresh_adapter_is_noop(case: MatrixCase):
    host = case.make_host()
    inputs = case.make_inputs()
    base = case.run(host, inputs)
    vadapters.inject(host, case.make_config(), adapter_name="a")
    out = case.run(host, inputs)
    if case.zero_init_noop:
        assert torch.equal(out, base)
    _perturb(host, "a")
    assert not torch.allclose(case.run(host, inputs), base), "a non-zero adapter must change the output"


def test_only_adapter_parameters_trainable_and_receive_gradients(case: MatrixCase):
    host = _adapted(case)
    module = case.adapter_module(host)
    injector = vadapters.get_method(vadapters.list_adapters(host)["a"]).injector_cls()
    adapter_params = {id(p) for p in injector.adapter_parameters(module, "a")}
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert adapter_params and trainable == adapter_params
    case.forward(host, case.make_inputs()).square().mean().backward()
    for p in module.parameters():
        if id(p) in adapter_params:
            assert p.grad is not None and torch.isfinite(p.grad).all()
        else:
            assert p.grad is None


def test_save_load_roundtrip_is_bit_exact(case: MatrixCase, tmp_path):
    host = _adapted(case)
    inputs = case.make_inputs()
    expected = case.run(host, inputs)
    vadapters.save_pretrained(host, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["adapter_config.json", "adapter_model.safetensors"]
    fresh = case.make_host()
    vadapters.load(fresh, tmp_path, adapter_name="a")
    assert torch.equal(case.run(fresh, inputs), expected)
    # single-file form
    single = tmp_path / "single.safetensors"
    vadapters.save_pretrained(host, single, single_file=True)
    other = case.make_host()
    vadapters.load(other, single)
    assert torch.equal(case.run(other, inputs), expected)


def test_loaded_adapter_is_frozen_unless_trainable(case: MatrixCase, tmp_path):
    vadapters.save_pretrained(_adapted(case), tmp_path)
    host = case.make_host()
    vadapters.load(host, tmp_path)
    assert not any(p.requires_grad for p in case.adapter_module(host).parameters())
    host = case.make_host()
    vadapters.load(host, tmp_path, is_trainable=True)
    assert any(p.requires_grad for p in case.adapter_module(host).parameters())


@pytest.mark.parametrize("corruption", ["extra_key", "missing_key", "bad_shape"])
def test_strict_loading_rejects_mismatched_keys_and_leaves_host_unchanged(case: MatrixCase, tmp_path, corruption):
    vadapters.save_pretrained(_adapted(case), tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    tensors = load_file(weights)
    first = sorted(tensors)[0]
    if corruption == "extra_key":
        tensors["not.an.adapter.key"] = torch.zeros(1)
    elif corruption == "missing_key":
        del tensors[first]
    else:
        tensors[first] = torch.zeros(*[s + 1 for s in tensors[first].shape])
    save_file(tensors, weights)
    host = case.make_host()
    before = _snapshot(case.adapter_module(host))
    error = vadapters.IncompatibleBaseError if corruption == "bad_shape" else vadapters.CheckpointError
    with pytest.raises(error) as info:
        vadapters.load(host, tmp_path)
    assert ("not.an.adapter.key" if corruption == "extra_key" else first) in str(info.value)
    _assert_same_state(case.adapter_module(host), before)
    assert vadapters.list_adapters(host) == {}
    if corruption != "bad_shape":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vadapters.load(host, tmp_path, strict=False)
        assert any("key" in str(w.message) for w in caught)


def test_disabled_restores_base_outputs_exactly(case: MatrixCase):
    host = case.make_host()
    inputs = case.make_inputs()
    base = case.run(host, inputs)
    vadapters.inject(host, case.make_config(), adapter_name="a")
    _perturb(host, "a")
    adapted = case.run(host, inputs)
    with vadapters.disabled(host):
        assert torch.equal(case.run(host, inputs), base)
    assert torch.equal(case.run(host, inputs), adapted)


def test_unload_restores_modules_values_and_flags_exactly(case: MatrixCase):
    host = case.make_host()
    module = case.adapter_module(host)
    module.get_parameter(next(n for n, _ in module.named_parameters())).requires_grad_(False)
    flags = {n: p.requires_grad for n, p in module.named_parameters()}
    modules = dict(module.named_modules())
    processors = dict(getattr(module, "attn_processors", {}))
    before = _snapshot(module)
    inputs = case.make_inputs()
    base = case.run(host, inputs)
    vadapters.inject(host, case.make_config(), adapter_name="a")
    vadapters.inject(host, case.make_config(), adapter_name="b")
    _perturb(host, "a")
    if case.mergeable:
        vadapters.fuse(host)
    vadapters.unload(host)
    _assert_same_state(module, before)
    assert {n: p.requires_grad for n, p in module.named_parameters()} == flags
    assert all(modules[n] is m for n, m in module.named_modules())
    assert processors.keys() == dict(getattr(module, "attn_processors", {})).keys()
    assert all(processors[n] is p for n, p in getattr(module, "attn_processors", {}).items())
    assert torch.equal(case.run(host, inputs), base)
    assert vadapters.list_adapters(host) == {}


def test_fuse_unfuse_is_reversible(case: MatrixCase):
    if not case.mergeable:
        pytest.skip("method has no weight delta")
    host = _adapted(case)
    inputs = case.make_inputs()
    adapted = case.run(host, inputs)
    weights_before = {k: v.clone() for k, v in host.state_dict().items() if "base_layer" in k}
    vadapters.fuse(host)
    fused = case.run(host, inputs)
    torch.testing.assert_close(fused, adapted, rtol=1e-4, atol=1e-4)
    with pytest.raises(vadapters.AdapterStateError):
        vadapters.set_adapters(host, ["a"], [0.5])
    for _ in range(3):  # repeated cycles must not drift
        vadapters.unfuse(host)
        vadapters.fuse(host)
    vadapters.unfuse(host)
    assert torch.equal(case.run(host, inputs), adapted)
    for k, v in weights_before.items():
        assert torch.equal(host.state_dict()[k], v), k


def test_multiple_named_adapters_switch_and_delete(case: MatrixCase):
    host = case.make_host()
    inputs = case.make_inputs()
    base = case.run(host, inputs)
    vadapters.inject(host, case.make_config(), adapter_name="a")
    _perturb(host, "a", seed=1)
    only_a = case.run(host, inputs)
    vadapters.inject(host, case.make_config(), adapter_name="b")
    _perturb(host, "b", seed=2)
    assert vadapters.active_adapters(host) == ["a", "b"]
    both = case.run(host, inputs)
    assert not torch.equal(both, only_a)
    vadapters.set_adapters(host, "a")
    assert torch.equal(case.run(host, inputs), only_a)
    with vadapters.using(host, "b"):
        only_b = case.run(host, inputs)
        assert not torch.equal(only_b, only_a)
    assert torch.equal(case.run(host, inputs), only_a)
    with pytest.raises(vadapters.BadInputError, match="unknown adapter"):
        vadapters.set_adapters(host, ["nope"])
    vadapters.delete_adapter(host, "a")
    vadapters.set_adapters(host, "b")
    assert torch.equal(case.run(host, inputs), only_b)
    vadapters.delete_adapter(host, "b")
    assert torch.equal(case.run(host, inputs), base)


def test_scaled_changes_and_restores(case: MatrixCase):
    host = _adapted(case)
    inputs = case.make_inputs()
    adapted = case.run(host, inputs)
    with vadapters.scaled(host, {"a": 0.25}):
        assert not torch.equal(case.run(host, inputs), adapted)
    assert torch.equal(case.run(host, inputs), adapted)


def test_config_json_round_trip(case: MatrixCase, tmp_path):
    config = case.make_config()
    assert type(config).from_dict(config.to_dict()) == config
    config.save_pretrained(tmp_path)
    assert type(config).from_pretrained(tmp_path) == config
    data = config.to_dict()
    assert data["method"] == config.method and data["vadapters_version"] == vadapters.__version__
    data["field_from_the_future"] = 1
    with pytest.warns(UserWarning, match="field_from_the_future"):
        assert type(config).from_dict(data) == config
