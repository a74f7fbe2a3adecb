"""SaRA against the official code (sjtuplayer/SaRA `optim/adamw2.py`, golden values in shared/fixtures/parity/sara).

One training step on a tiny diffusers UNet: the same selection (|w| < 0.002, every parameter tensor), the same
gradients at the selected entries, the same sparse AdamW step (official default lr 1e-3 exp(-350 threshold), betas
(0.9, 0.999), eps 1e-8, weight decay 0.01) and the same model afterwards. The official `save_params()` checkpoints
(adamw2, and the default "UB" optimizer's) import through `load_official` to the official post-step models.
"""

from __future__ import annotations

import pytest
import torch
from parity_cases import (
    sara_host,
    sara_import,
    sara_official_weights,
    sara_positions,
    sara_step,
    sara_step_diffs,
    sara_weight,
)
from parity_fixtures import load_parity, max_abs

from vadapters.methods.sara.config import upstream_lr

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fixture():
    return load_parity("sara")


@pytest.fixture(scope="module")
def tol(fixture):
    return fixture.spec["tolerance"]["all"]


def test_positions_are_the_hosts_parameter_order(fixture):
    assert sara_positions(fixture) == [name for name, _ in sara_host(fixture).named_parameters()]


@pytest.fixture(scope="module")
def stepped(fixture):
    """The host after one vadapters SaRA step, with the value-vector gradients of that step."""
    step, threshold = fixture.spec["optimizer_step"], fixture.spec["selection"]["threshold"]
    assert upstream_lr(threshold) == pytest.approx(step["lr"], rel=1e-15)
    return sara_step(fixture)


@pytest.fixture(scope="module")
def step_diffs(fixture, stepped):
    return sara_step_diffs(fixture, stepped)


def test_selection_counts_equal_official_exactly(fixture, step_diffs):
    assert step_diffs["selected_count"] == 0  # per position
    assert step_diffs["selected_total"] == fixture.spec["selection"]["selected_total"]


def test_loss_and_gradients_at_selected_entries_match_official(fixture, stepped, step_diffs, tol):
    _, deltas, _, _ = stepped
    assert step_diffs["loss"] <= tol
    assert step_diffs["gradients"] <= tol
    for delta in deltas.values():
        assert torch.equal(delta.indices, delta.indices.sort().values)  # row-major, as official
    largest = max(float(g.abs().max()) for g in fixture.group("official/grad_at_selected/").values() if g.numel())
    assert largest > 100 * tol  # the gradients are far above the tolerance: the check can fail


def test_one_step_matches_official_adamw2(step_diffs, tol):
    assert step_diffs["values"] <= tol and step_diffs["weights"] <= tol
    assert step_diffs["unselected_change"] == 0  # entries that were not selected do not move at all
    assert step_diffs["output"] <= tol
    assert step_diffs["effect"] > 100 * tol  # the step is visible


@pytest.mark.parametrize("group", ["official_save_params/", "official_ub_save_params/"])
def test_official_save_params_import(fixture, tol, group):
    """Both official optimizers' files import to the official post-step models (UB's included: import only places
    values; vadapters' own step intentionally differs from UB's sign-losing first step)."""
    diffs = sara_import(fixture, group)
    assert diffs["weights"] == 0  # exact
    assert diffs["output"] <= tol


def test_ub_step_differs_from_adamw2_as_documented(fixture):
    """The known upstream difference the fixture records (adamw.py writes |w| at construction): 9.9e-4."""
    adamw2 = sara_official_weights(fixture, "official_save_params/")
    ub = sara_official_weights(fixture, "official_ub_save_params/")
    assert max(max_abs(adamw2[n], ub[n]) for n in adamw2) == pytest.approx(9.93e-4, rel=1e-2)


def test_rank_target_weights_is_the_official_adamw2_term(fixture, stepped):
    """`rank_target="weights"` is the nuclear norm adamw2 adds, `||W * M||_*` (equal on the official post-step
    weights), with the gradient adamw2's formula puts on the selected entries (computed on the same weights: the
    nuclear norm's gradient moves by up to 2e-4 for a 1e-6 change of a matrix with close singular values); the
    default `"update"` penalises another matrix."""
    from vadapters.methods.sara.regularizers import eligible_matrices, matrix_nuclear_norm

    unet, _, _, _ = stepped
    official = sara_official_weights(fixture, "official_save_params/")
    threshold = fixture.spec["selection"]["threshold"]
    matrices = eligible_matrices(unet, "sara", min_dim=0)
    assert len(matrices) > 10
    gaps = []
    for name, owner, attr, delta in matrices:
        mask = fixture[f"host/{name}"].abs() < threshold
        term = torch.linalg.svdvals(official[name] * mask).sum()
        weights = sara_weight(unet, name).clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.linalg.svdvals(weights * mask).sum(), weights)
        delta.values.grad = None
        ours = matrix_nuclear_norm(owner, attr, delta, "weights")
        ours.backward()
        assert abs(float(ours.detach()) - float(term)) <= 1e-5, name
        assert max_abs(delta.values.grad, grad.reshape(-1)[delta.indices.long()]) <= 1e-5, name
        gaps.append(float(term) - float(matrix_nuclear_norm(owner, attr, delta, "update").detach()))
    assert max(gaps) > 1e-2  # the default penalises another (smaller) matrix
