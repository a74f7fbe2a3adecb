"""LAME invariants: W = 0 and batch 1 give softmax exactly, simplex rows, permutation equivariance, monotone energy for
PSD kernels, frozen model, affinity shapes and the sparse path."""

from __future__ import annotations

import pytest
import torch

from vadapters.errors import BadInputError
from vadapters.models import tiny_timm_classifier
from vadapters.tta import LAME, LAMEConfig
from vadapters.tta.affinity import Affinity, build_affinity, knn_affinity, pairwise_distances, rbf_sigma
from vadapters.tta.base import split_classifier
from vadapters.tta.lame import lame_energy, laplacian_optimisation

pytestmark = pytest.mark.usefixtures("one_thread")


def _clustered(n=40, k=4, d=16, seed=0):
    """Features in k clusters and noisy logits that favour the right cluster on average."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % k
    centres = torch.randn(k, d, generator=g) * 3
    feats = torch.nn.functional.normalize(centres[labels] + torch.randn(n, d, generator=g), dim=1)
    logits = torch.randn(n, k, generator=g) * 1.5 + 1.0 * torch.nn.functional.one_hot(labels, k)
    return feats, logits, labels


def test_zero_affinity_returns_softmax_exactly():
    _, logits, _ = _clustered()
    zero = Affinity(len(logits), indices=torch.zeros(len(logits), 0, dtype=torch.long))
    z, _ = laplacian_optimisation(logits, zero)
    assert torch.equal(z, logits.softmax(1))
    dense_zero = Affinity(len(logits), matrix=torch.zeros(len(logits), len(logits)))
    assert torch.equal(laplacian_optimisation(logits, dense_zero)[0], logits.softmax(1))


def test_batch_of_one_returns_softmax(cnn, vit):
    x = torch.rand(1, 3, 32, 32)
    for model in (cnn, vit):
        lame = LAME(model)
        logits = model((x - 0.5) / 0.5)
        assert torch.equal(lame(x), logits.softmax(1))
    assert knn_affinity(torch.randn(1, 8), knn=5).indices.shape == (1, 0)


@pytest.mark.parametrize("affinity", ["knn", "rbf", "rbf_normalized", "linear"])
def test_rows_on_simplex_and_permutation_equivariance(affinity):
    feats, logits, _ = _clustered(n=30)
    z, _ = laplacian_optimisation(logits, build_affinity(feats, affinity, knn=3))
    assert (z >= 0).all() and torch.allclose(z.sum(1), torch.ones(len(z)), atol=1e-6)
    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(1))
    z_perm, _ = laplacian_optimisation(logits[perm], build_affinity(feats[perm], affinity, knn=3))
    assert torch.allclose(z_perm, z[perm], atol=1e-5)


@pytest.mark.parametrize("affinity", ["rbf", "linear"])
def test_energy_non_increasing_for_psd_kernels(affinity):
    feats, logits, _ = _clustered(n=50, seed=3)
    w = build_affinity(feats, affinity, knn=5)
    assert torch.linalg.eigvalsh(w.dense().double()).min() > -1e-6  # PSD, so the bound is a true CCCP majoriser
    _, info = laplacian_optimisation(logits, w, max_iter=100, tol=0.0)
    energies = info["energies"]
    start = lame_energy(torch.log_softmax(logits, 1), logits.softmax(1), w)
    diffs = [b - a for a, b in zip([start, *energies[:-1]], energies)]
    assert max(diffs) <= 1e-4 * abs(start), diffs


def test_stopping_rule_and_iteration_cap():
    feats, logits, _ = _clustered()
    w = build_affinity(feats, "linear")
    _, capped = laplacian_optimisation(logits, w, max_iter=3, tol=0.0)
    assert capped["iterations"] == 3
    _, free = laplacian_optimisation(logits, w)
    e = free["energies"]
    assert free["tol"] == torch.finfo(torch.float32).eps  # the 1e-8 default, raised to float32 resolution
    assert free["iterations"] < 100 and abs(e[-1] - e[-2]) <= free["tol"] * abs(e[-2])
    assert all(abs(b - a) > free["tol"] * abs(a) for a, b in zip(e[1:-2], e[2:-1]))  # not earlier


def test_knn_is_sparse_and_matches_dense():
    feats, logits, _ = _clustered(n=25)
    w = knn_affinity(feats, knn=4)
    assert w.matrix is None and w.indices.shape == (25, 4) and w.nnz == 100
    dense = w.dense()
    assert torch.equal(dense.diagonal(), torch.zeros(25)) and torch.equal(dense.sum(1), torch.full((25,), 4.0))
    z = logits.softmax(1)
    assert torch.allclose(w.matmul(z), dense @ z, atol=1e-6)
    # the neighbours are the nearest other points
    dist = pairwise_distances(feats).fill_diagonal_(float("inf"))
    assert torch.equal(w.indices.sort(1).values, dist.topk(4, largest=False).indices.sort(1).values)


def test_rbf_sigma_rule_and_row_normalised_variant():
    feats, _, _ = _clustered(n=20)
    dist = pairwise_distances(feats)
    k = 5
    expected = float(dist.sort(1).values[:, k - 1].mean())  # k-th smallest, self (0) included: official rule
    assert rbf_sigma(dist, k) == pytest.approx(expected)
    w = build_affinity(feats, "rbf", knn=k)
    assert w.sigma == pytest.approx(expected) and torch.allclose(w.dense().diagonal(), torch.ones(20))
    wn = build_affinity(feats, "rbf_normalized", knn=k).dense()
    assert torch.equal(wn.diagonal(), torch.zeros(20)) and torch.allclose(wn.sum(1), torch.ones(20))


def test_identical_samples_get_identical_outputs():
    feats, logits, _ = _clustered(n=12)
    feats[1], logits[1] = feats[0], logits[0]
    z, _ = laplacian_optimisation(logits, build_affinity(feats, "knn", knn=1))
    assert torch.allclose(z[0], z[1], atol=1e-6)


def test_model_untouched_no_grads_deterministic(cnn):
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    cnn.train()  # the wrapper must evaluate in eval mode and restore the caller's flag
    lame = LAME(cnn, affinity="rbf")
    x = torch.rand(16, 3, 32, 32)
    first, second = lame(x), lame(x)
    assert torch.equal(first, second) and cnn.training
    cnn.eval()
    assert all(torch.equal(v, before[k]) for k, v in cnn.state_dict().items())
    assert all(p.grad is None for p in cnn.parameters())
    assert lame.state_dict() == {}


def test_lame_fixes_class_sorted_batches():
    """Mechanism check: with a noisy but informative model, kNN LAME lifts accuracy on a one-class-heavy batch."""
    feats, logits, labels = _clustered(n=64, k=4, seed=5)
    sorted_idx = torch.argsort(labels, stable=True)[:16]  # a non-i.i.d. batch: four of each, grouped
    base = (logits[sorted_idx].argmax(1) == labels[sorted_idx]).float().mean()
    z, _ = laplacian_optimisation(logits[sorted_idx], build_affinity(feats[sorted_idx], "knn", knn=3))
    assert (z.argmax(1) == labels[sorted_idx]).float().mean() > base


def test_custom_callables_and_diagnostics():
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 6))
    head = torch.nn.Linear(6, 3)
    lame = LAME(body, features_fn=body, head_fn=head, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    probs = lame(torch.rand(10, 3, 8, 8))
    assert probs.shape == (10, 3)
    diag = lame.diagnostics
    assert sum(diag["histogram_lame"]) == 10 and isinstance(diag["collapse_alarm"], bool)
    assert diag["iterations"] == len(diag["energy"])


def test_collapse_alarm_fires_on_collapse():
    feats = torch.nn.functional.normalize(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(1)) * 0.1  # uncertain, spread predictions
    lame = LAME(tiny_timm_classifier("test_vit"), affinity="rbf", knn=5)
    lame.adjust(logits, feats)  # dense RBF with rows summing to ~N swamps log p: the batch collapses
    assert lame.diagnostics["collapse_alarm"]
    assert max(lame.diagnostics["histogram_lame"]) > 0.5 * 64


def test_config_validation_and_roundtrip():
    with pytest.raises(BadInputError, match="affinity"):
        LAMEConfig(affinity="cosine")
    cfg = LAMEConfig(affinity="linear", knn=3)
    assert LAMEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.warns(UserWarning, match="unknown"):
        LAMEConfig.from_dict({**cfg.to_dict(), "future_key": 1})


def test_split_classifier_errors():
    with pytest.raises(BadInputError, match="features_fn"):
        split_classifier(torch.nn.Linear(2, 2))
    with pytest.raises(BadInputError, match="both"):
        split_classifier(torch.nn.Linear(2, 2), features_fn=lambda x: x)
