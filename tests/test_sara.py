"""SaRA: selection, memory-lean sparse training, nuclear norm, progressive re-selection, IO, official import, DDP.

The shared invariants (no-op at init, save/load, fuse, unload, multiple adapters ...) run in the method matrix
(`tests/matrix_sara.py`); this file checks what is specific to SaRA.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

import vadapters
from vadapters.core.io import CONFIG_NAME, WEIGHTS_NAME, load_tensors
from vadapters.methods.sara import SaRAConfig, SaRAInjector, load_official, nuclear_norm_penalty, reselect, upstream_lr
from vadapters.methods.sara.sparse import find_targets, kth_smallest_abs, sara_tensors


def small_model(seed: int = 0) -> nn.Module:
    """Conv + GroupNorm + Linear + LayerNorm: every tensor kind, two matrices the penalty may pick."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.GroupNorm(2, 8),
        nn.SiLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 24),
        nn.LayerNorm(24),
        nn.Linear(24, 20),
    ).eval()


def small_inputs(seed: int = 0) -> torch.Tensor:
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def effective_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """What the forward uses: `owner.<attr>` for every SaRA tensor, by canonical name."""
    with torch.no_grad():
        return {name: getattr(owner, attr).detach().clone() for name, owner, attr, _ in sara_tensors(module)}


def train_steps(module, steps, lr=1e-2, weight_decay=0.0, penalty=False, optimizer=None, seed=0):
    opt = optimizer or torch.optim.AdamW(trainable(module), lr=lr, weight_decay=weight_decay)
    for step in range(steps):
        loss = module(small_inputs(seed + step)).square().mean()
        if penalty:
            loss = loss + nuclear_norm_penalty(module, "s", step)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return opt


# ------------------------------------------------------------------------------------------------------ selection
def test_threshold_selects_exactly_the_small_entries_and_upstream_lr():
    model = small_model()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    vadapters.inject(model, SaRAConfig(threshold=0.01), adapter_name="s")
    deltas = SaRAInjector().deltas(model, "s")
    for name, tensor in base.items():
        expected = torch.nonzero(tensor.abs().reshape(-1) < 0.01).reshape(-1)
        if expected.numel() == 0:
            assert name not in deltas
            continue
        assert torch.equal(deltas[name].indices.long(), expected), name
        assert torch.equal(deltas[name].values, tensor.reshape(-1)[expected]), name
    assert SaRAConfig().threshold == 2e-3 and upstream_lr(2e-3) == pytest.approx(4.966e-4, rel=1e-3)
    assert upstream_lr(5e-3) == pytest.approx(1.738e-4, rel=1e-3)
    with pytest.raises(vadapters.BadInputError, match="not both"):
        SaRAConfig(threshold=1e-3, quantile=0.1)


def test_quantile_is_global_and_the_radix_select_is_exact():
    model = small_model()
    total = sum(p.numel() for p in model.parameters())
    vadapters.inject(model, SaRAConfig(quantile=0.25), adapter_name="s")
    summary = vadapters.methods.sara.sara_summary(model, "s")
    assert summary["targeted"] == total and summary["selected"] == round(0.25 * total)
    tensors = [torch.randn(300, 7), torch.randn(11) * 1e-3, torch.tensor([0.0, -0.0, 5.0])]
    flat = torch.cat([t.abs().reshape(-1) for t in tensors])
    for k in (1, 2, 3, 50, 1000, flat.numel()):
        expected = float(flat.kthvalue(k).values)
        assert kth_smallest_abs(tensors, k, concat_limit=0) == expected == kth_smallest_abs(tensors, k)


def test_kinds_include_exclude_and_random_rule():
    model = small_model()
    only_linear = find_targets(model, SaRAConfig(kinds=("linear",)))
    assert [t.name for t in only_linear] == ["4.weight", "6.weight"]
    kinds = {t.name: t.kind for t in find_targets(model, SaRAConfig())}
    assert kinds == {
        "0.weight": "conv", "0.bias": "bias", "1.weight": "norm", "1.bias": "bias",
        "4.weight": "linear", "4.bias": "bias", "5.weight": "norm", "5.bias": "bias",
        "6.weight": "linear", "6.bias": "bias",
    }  # fmt: skip
    picked = find_targets(model, SaRAConfig(include=("4.*", "6.*"), exclude=("*.bias",)))
    assert [t.name for t in picked] == ["4.weight", "6.weight"]
    with pytest.raises(vadapters.IncompatibleBaseError, match="no parameter"):
        vadapters.inject(model, SaRAConfig(include=("nothing.*",)), adapter_name="s")
    vadapters.inject(model, SaRAConfig(quantile=0.1, rule="random", random_seed=3), adapter_name="r")
    magnitude = small_model()
    vadapters.inject(magnitude, SaRAConfig(quantile=0.1), adapter_name="m")
    count = vadapters.methods.sara.sara_summary(model, "r")["selected"]
    assert count == vadapters.methods.sara.sara_summary(magnitude, "m")["selected"]


# ------------------------------------------------------------------------------------------ sparse training state
def test_entries_outside_the_mask_stay_bit_identical_after_training():
    model = small_model()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    vadapters.inject(model, SaRAConfig(quantile=0.2, rank_min_dim=8), adapter_name="s")
    train_steps(model, 5, lr=1e-2, weight_decay=1e-2, penalty=True)
    deltas = SaRAInjector().deltas(model, "s")
    changed = 0
    for name, weight in effective_weights(model).items():
        outside = torch.ones(weight.numel(), dtype=torch.bool)
        outside[deltas[name].indices.long()] = False
        assert torch.equal(weight.reshape(-1)[outside], base[name].reshape(-1)[outside]), name
        changed += int((weight.reshape(-1)[~outside] != base[name].reshape(-1)[~outside]).sum())
    assert changed > 0.9 * sum(d.nnz for d in deltas.values())
    for name, owner, attr, _ in sara_tensors(model):  # the frozen originals are untouched too
        assert torch.equal(owner.parametrizations[attr].original, base[name])


def test_lr_zero_leaves_every_output_bit_identical():
    model = small_model()
    x = small_inputs(9)
    expected = model(x)
    vadapters.inject(model, SaRAConfig(quantile=0.3, rank_min_dim=8, lambda_rank=1.0), adapter_name="s")
    assert torch.equal(model(x), expected)
    opt = train_steps(model, 3, lr=0.0, weight_decay=0.1, penalty=True)
    reselect(model, "s", optimizer=opt)
    train_steps(model, 2, lr=0.0, weight_decay=0.1, penalty=True, optimizer=opt)
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_optimizer_state_is_two_times_nnz_and_no_full_size_grad_is_kept():
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.1), adapter_name="s")
    nnz = vadapters.methods.sara.sara_summary(model, "s")["selected"]
    params = trainable(model)
    assert sum(p.numel() for p in params) == nnz and all(p.dim() == 1 for p in params)
    opt = train_steps(model, 2)
    state_numel = sum(t.numel() for s in opt.state.values() for k, t in s.items() if k != "step")
    assert state_numel == 2 * nnz
    model(small_inputs()).sum().backward()
    with_grad = [(n, p.grad.numel()) for n, p in model.named_parameters() if p.grad is not None]
    assert all(n.endswith(".values") for n, _ in with_grad) and sum(k for _, k in with_grad) == nnz
    names = [n for n, _ in model.named_parameters()]
    assert all(n.endswith((".original", ".values")) or "parametrizations" not in n for n in names)
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())  # upstream put plain tensors there


def test_gradient_clipping_reaches_the_sparse_values():
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.1), adapter_name="s")
    (model(small_inputs()).sum() * 1e3).backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # upstream's call did not see them (bug d)
    assert norm > 1.0
    clipped = torch.linalg.vector_norm(torch.cat([p.grad for p in trainable(model)]))
    assert float(clipped) == pytest.approx(1.0, rel=1e-4)


# ------------------------------------------------------------------------------------------------- nuclear norm
def test_nuclear_norm_gradient_reaches_the_values_when_the_data_loss_is_zero():
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.3, rank_min_dim=8, rank_matrices_per_step=0), adapter_name="s")
    assert float(nuclear_norm_penalty(model, "s", step=0).detach()) == 0.0  # fresh: the update is zero
    deltas = SaRAInjector().deltas(model, "s")
    with torch.no_grad():
        for delta in deltas.values():
            delta.values.add_(torch.randn(delta.values.shape, generator=torch.Generator().manual_seed(1)) * 0.01)
    before = {n: d.values.detach().clone() for n, d in deltas.items()}
    opt = torch.optim.SGD(trainable(model), lr=0.1)
    loss = 0.0 * model(small_inputs()).sum() + nuclear_norm_penalty(model, "s", step=0, weight=1.0)
    loss.backward()
    penalised = {"4.weight", "6.weight"}
    for name, delta in deltas.items():
        grad = delta.values.grad
        assert (grad is not None and bool(grad.abs().sum() > 0)) == (name in penalised), name
    opt.step()
    assert all(not torch.equal(deltas[n].values, before[n]) for n in penalised)
    weights_target = nuclear_norm_penalty(model, "s", step=0, target="weights").detach()
    assert float(weights_target) > 0


def test_nuclear_norm_draw_depends_on_seed_and_step_only():
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.3, rank_min_dim=8, rank_matrices_per_step=1), adapter_name="s")
    with torch.no_grad():
        for delta in SaRAInjector().deltas(model, "s").values():
            delta.values.mul_(1.5)
    values = [float(nuclear_norm_penalty(model, "s", step=s).detach()) for s in range(8)]
    assert values == [float(nuclear_norm_penalty(model, "s", step=s).detach()) for s in range(8)]
    assert len(set(values)) == 2  # one of the two eligible matrices per step, both drawn over 8 steps


# ----------------------------------------------------------------------------------------- progressive selection
def test_progressive_reselection_is_a_subset_and_freezes_exactly():
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.2, reset_moments=False), adapter_name="s")
    opt = train_steps(model, 3, lr=3e-3)
    deltas = SaRAInjector().deltas(model, "s")
    tau = vadapters.get_adapter_config(model, "s").realised_threshold
    moments = {n: opt.state[d.values]["exp_avg"].clone() for n, d in deltas.items()}
    grown = sum(int((d.values.abs() >= tau).sum()) for d in deltas.values())
    stats = reselect(model, "s", optimizer=opt)
    assert 0 < grown == stats["frozen_now"] and stats["trainable_after"] == stats["trainable_before"] - grown
    assert all(torch.equal(opt.state[d.values]["exp_avg"], moments[n]) for n, d in deltas.items())  # kept
    frozen = {
        n: (d.frozen_pos.long().clone(), d.values.detach()[d.frozen_pos.long()].clone()) for n, d in deltas.items()
    }
    trainable_before = {n: d.values.detach().clone() for n, d in deltas.items()}
    train_steps(model, 3, lr=3e-3, weight_decay=0.1, optimizer=opt, seed=5)
    moved = 0
    for name, delta in deltas.items():
        pos, pinned = frozen[name]
        assert torch.equal(delta.values.detach()[pos], pinned), name  # M \ M' pinned, despite weight decay
        keep = torch.ones(delta.nnz, dtype=torch.bool)
        keep[pos] = False
        moved += int((delta.values.detach()[keep] != trainable_before[name][keep]).sum())
    assert moved > 0
    again = reselect(model, "s")  # M'' is a subset of M'
    assert again["trainable_after"] <= stats["trainable_after"] and again["selected"] == stats["selected"]


def test_reset_moments_when_asked():
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.2), adapter_name="s")
    opt = train_steps(model, 2)
    reselect(model, "s", optimizer=opt, reset_moments=True)
    assert all(d.values not in opt.state for d in SaRAInjector().deltas(model, "s").values())


# --------------------------------------------------------------------------------------------------- save / load
def test_save_load_round_trip_format_and_wrong_base(tmp_path):
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.2, progressive_at=None), adapter_name="s")
    opt = train_steps(model, 3, lr=3e-3)
    reselect(model, "s", optimizer=opt)
    train_steps(model, 1, lr=3e-3, optimizer=opt)
    x = small_inputs(3)
    with torch.no_grad():
        expected = model(x)
    vadapters.save_pretrained(model, tmp_path)
    tensors, meta = load_tensors(str(tmp_path / WEIGHTS_NAME))
    assert meta["method"] == "sara"
    assert all(k.endswith((".values", ".indices")) for k in tensors)
    assert all(t.dtype == torch.int32 for k, t in tensors.items() if k.endswith(".indices"))
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["realised_threshold"] > 0 and len(config["base_fingerprint"]["probe"]) == 256
    assert sum(config["selection"].values()) == sum(t.numel() for k, t in tensors.items() if k.endswith(".values"))

    fresh = small_model()
    vadapters.load(fresh, tmp_path)
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)
    other = small_model(seed=1)
    with pytest.raises(vadapters.IncompatibleBaseError, match="probe values differ"):
        vadapters.load(other, tmp_path)
    assert vadapters.list_adapters(other) == {}
    vadapters.load(other, tmp_path, check_base=False)  # explicit opt-out
    with pytest.raises(vadapters.IncompatibleBaseError):
        vadapters.load(nn.Sequential(nn.Linear(3, 3)), tmp_path)


def test_load_onto_a_base_cast_to_another_dtype(tmp_path):
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.2), adapter_name="s")
    train_steps(model, 2, lr=3e-3)
    vadapters.save_pretrained(model, tmp_path)
    saved, _ = load_tensors(str(tmp_path / WEIGHTS_NAME))
    half = small_model().to(torch.bfloat16)
    vadapters.load(half, tmp_path)  # the recorded counts size the slots; the file's indices are used
    deltas = SaRAInjector().deltas(half, "sara")
    for name, delta in deltas.items():
        assert torch.equal(delta.indices, saved[f"{name}.indices"])
        assert torch.equal(delta.values, saved[f"{name}.values"].to(torch.bfloat16))
    shifted = small_model().to(torch.bfloat16)
    with torch.no_grad():
        shifted[4].weight.mul_(1.5)
    with pytest.raises(vadapters.IncompatibleBaseError, match="tolerance"):
        vadapters.load(shifted, tmp_path)


def test_fuse_unfuse_and_merge_and_unload_are_exact():
    model = small_model()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    vadapters.inject(model, SaRAConfig(quantile=0.2), adapter_name="s")
    train_steps(model, 3, lr=3e-3)
    x = small_inputs(4)
    with torch.no_grad():
        adapted = model(x)
        weights = effective_weights(model)
        vadapters.fuse(model)
        assert torch.equal(model(x), adapted)  # one adapter at weight 1: the fused weights are the same numbers
        vadapters.unfuse(model)
        for name, owner, attr, _ in sara_tensors(model):  # the backup restores the base exactly
            assert torch.equal(owner.parametrizations[attr].original, base_state[name])
        assert torch.equal(model(x), adapted)
        vadapters.merge_and_unload(model)
        assert not sara_tensors(model) and vadapters.list_adapters(model) == {}
        assert torch.equal(model(x), adapted)
        assert all(torch.equal(model.state_dict()[n], w) for n, w in weights.items())


def test_sam_image_encoder_only():
    from vadapters.models import tiny_sam

    sam = tiny_sam()
    vadapters.inject(sam, SaRAConfig(quantile=0.1, include=("image_encoder.*",)), adapter_name="s")
    names = [n for n, *_ in sara_tensors(sam)]
    assert names and all(n.startswith("image_encoder.") for n in names)
    assert type(sam).__name__ == "Sam"
    vadapters.unload(sam)
    assert not sara_tensors(sam)


def test_torch_compile_traces_the_parametrisation():
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.2), adapter_name="s")
    x = small_inputs()
    expected = model(x)
    compiled = torch.compile(model, backend="aot_eager")
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, expected)
    assert all(p.grad is not None for p in trainable(model))


def test_ddp_buffer_broadcast_excludes_index_buffers():
    model = small_model()
    vadapters.inject(model, SaRAConfig(quantile=0.2), adapter_name="s")
    ignored = set(model._ddp_params_and_buffers_to_ignore)
    buffers = {n for n, _ in model.named_buffers()}
    assert ignored and ignored <= buffers and all(".sara_deltas." in n for n in ignored)
    vadapters.unload(model)
    assert not hasattr(model, "_ddp_params_and_buffers_to_ignore")


# ------------------------------------------------------------------------------------------------ official import
def _official_checkpoint(model: nn.Module, tau: float, seed: int = 0) -> dict:
    """What upstream's `save_params()` returns after training: positional keys, values on |w| < tau."""
    g = torch.Generator().manual_seed(seed)
    ckpt = {}
    for i, p in enumerate(model.parameters()):
        mask = p.detach().abs() < tau
        ckpt[i] = p.detach()[mask] + torch.randn(int(mask.sum()), generator=g) * 1e-3
    return ckpt


def test_official_import_matches_upstream_semantics(tmp_path):
    from safetensors.torch import save_file

    model = small_model()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    ckpt = _official_checkpoint(model, 0.02)
    load_official(model, ckpt, threshold=0.02, adapter_name="official")
    for (name, tensor), values in zip(base.items(), ckpt.values()):
        expected = tensor.clone()
        expected[tensor.abs() < 0.02] = values
        assert torch.equal(effective_weights(model).get(name, tensor), expected), name
    assert not any(p.requires_grad for p in model.parameters())
    vadapters.save_pretrained(model, tmp_path / "ours")
    again = small_model()
    vadapters.load(again, tmp_path / "ours")
    assert all(torch.equal(effective_weights(again)[n], w) for n, w in effective_weights(model).items())

    with pytest.raises(vadapters.IncompatibleBaseError, match="mask"):
        load_official(small_model(seed=3), ckpt, threshold=0.02)
    with pytest.raises(vadapters.BadInputError, match="threshold"):
        load_official(small_model(), ckpt)
    torch.save(ckpt, tmp_path / "unet.pt")
    with pytest.raises(vadapters.CheckpointError, match="allow_pickle"):
        load_official(small_model(), str(tmp_path / "unet.pt"), threshold=0.02)
    load_official(small_model(), str(tmp_path / "unet.pt"), threshold=0.02, allow_pickle=True)
    save_file({**{str(k): v for k, v in ckpt.items()}, "threshold": torch.tensor(0.02)}, tmp_path / "o.safetensors")
    load_official(small_model(), str(tmp_path / "o.safetensors"))


# ------------------------------------------------------------------------------------- the trainer and the CLI
def _train(out, steps, **kwargs):
    from vadapters.train import train_adapter

    return train_adapter(
        "sara",
        output_dir=str(out),
        resolutions="16",
        steps=steps,
        batch_size=2,
        learning_rate=3e-3,
        num_items=8,
        config_overrides={"quantile": 0.1, "rank_min_dim": 8, "lambda_rank": 1e-2, "progressive_at": 2},
        log_every=1,
        **kwargs,
    )


def test_trainer_runs_reselection_and_resumes_exactly(tmp_path):
    _train(tmp_path / "full", 4, checkpoint_every=0)
    _train(tmp_path / "split", 3, checkpoint_every=1)  # re-selection happened before step 3
    summary = _train(tmp_path / "split", 4, checkpoint_every=1)
    assert summary["resumed_from"] == 3
    a, _ = load_tensors(str(tmp_path / "full" / WEIGHTS_NAME))
    b, _ = load_tensors(str(tmp_path / "split" / WEIGHTS_NAME))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state = torch.load(tmp_path / "split" / "checkpoints" / "step-4" / "recipe_state_0.pt", weights_only=True)
    assert state["method"]["reselected"] and state["method"]["frozen"]


def test_cli_train_then_generate(tmp_path, capsys):
    from vadapters.cli import main

    out = tmp_path / "sara"
    assert main(["train", "sara", "--out", str(out), "--steps", "2", "--batch-size", "2", "--resolutions", "16",
                 "--set", "quantile=0.1", "--set", "lambda_rank=0", "--lr", "3e-3"]) == 0  # fmt: skip
    assert (out / WEIGHTS_NAME).is_file()
    image = tmp_path / "gen.png"
    assert main(["generate", "--adapter", str(out), "--prompt", "a red circle", "--height", "16", "--width", "16",
                 "--steps", "2", "--out", str(image)]) == 0  # fmt: skip  # one default base for train and generate
    assert image.is_file()
    other_base = ["generate", "--adapter", str(out), "--steps", "1", "--out", str(image), "--pipeline", "tiny"]
    assert main(other_base) == 2  # refused by weight fingerprint, naming both bases
    assert re.search(
        r"weights differ from the base.*made on 'vadapters:tiny-sd'.*onto 'vadapters:tiny'", capsys.readouterr().err
    )
