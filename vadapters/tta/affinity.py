"""Affinity matrices for LAME, on L2-normalised features `[N, d]`.

* `knn`: binary, `W_ij = 1` when j is one of the k nearest (Euclidean) neighbours of i, i itself excluded; not
  symmetric. Kept **sparse** (neighbour indices `[N, k]`), so `W @ Z` costs O(N k K).
* `rbf`: dense `exp(-d_ij^2 / (2 sigma^2))` with the official sigma rule: the mean over rows of the k-th smallest
  distance in the row, the zero self-distance included (that is, the (k-1)-th neighbour); diagonal kept (= 1).
  This is LAME's shipped default and the one that collapses i.i.d. batches at large N (its row sums grow with N).
* `rbf_normalized`: the same kernel with the diagonal removed and rows divided by their sums (rows sum to 1).
* `linear`: `W = Phi Phi^T` (cosine similarities), dense, PSD.

Every affinity is an `Affinity` with `matmul(Z)` (= `W @ Z`) and `dense()`.

Example:
    >>> import torch
    >>> feats = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    >>> w = build_affinity(feats, "knn", knn=1)
    >>> w.dense().tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
"""

from __future__ import annotations

import dataclasses

import torch

from vadapters.errors import BadInputError

AFFINITIES = ("knn", "rbf", "rbf_normalized", "linear")
PSD_AFFINITIES = ("rbf", "linear")


@dataclasses.dataclass
class Affinity:
    """A batch affinity: sparse (`indices` `[N, k]`, all weights 1) or dense (`matrix` `[N, N]`)."""

    size: int
    indices: torch.Tensor | None = None
    matrix: torch.Tensor | None = None
    sigma: float | None = None

    def matmul(self, z: torch.Tensor) -> torch.Tensor:
        """`W @ Z` for `Z` `[N, K]`."""
        if self.matrix is not None:
            return self.matrix @ z
        if self.indices is None or self.indices.shape[1] == 0:
            return torch.zeros_like(z)
        return z[self.indices].sum(dim=1)

    def dense(self) -> torch.Tensor:
        if self.matrix is not None:
            return self.matrix
        w = torch.zeros(self.size, self.size)
        if self.indices is not None and self.indices.numel():
            w.scatter_(1, self.indices, 1.0)
        return w

    @property
    def nnz(self) -> int:
        if self.matrix is not None:
            return int((self.matrix != 0).sum())
        return 0 if self.indices is None else int(self.indices.numel())


def pairwise_distances(feats: torch.Tensor) -> torch.Tensor:
    """Euclidean distances `[N, N]` (exact zeros on the diagonal)."""
    sq = (feats * feats).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * feats @ feats.T).clamp_min_(0.0)
    d2.fill_diagonal_(0.0)
    return d2.sqrt_()


def knn_affinity(feats: torch.Tensor, knn: int = 5) -> Affinity:
    """Sparse kNN affinity; k is clipped to N - 1 (so a batch of one has no neighbours).

    Example:
        >>> knn_affinity(torch.eye(3), knn=5).indices.shape
        torch.Size([3, 2])
    """
    n = feats.shape[0]
    k = min(int(knn), n - 1)
    if k <= 0:
        return Affinity(n, indices=torch.zeros(n, 0, dtype=torch.long, device=feats.device))
    dist = pairwise_distances(feats)
    dist.fill_diagonal_(float("inf"))
    indices = dist.topk(k, dim=1, largest=False).indices
    return Affinity(n, indices=indices)


def rbf_sigma(dist: torch.Tensor, knn: int) -> float:
    """Official sigma rule: mean over rows of the k-th smallest distance (self included), k clipped to N."""
    k = min(int(knn), dist.shape[0])
    sigma = float(dist.topk(k, dim=1, largest=False).values[:, -1].mean())
    return max(sigma, 1e-12)


def rbf_affinity(feats: torch.Tensor, knn: int = 5, normalize_rows: bool = False) -> Affinity:
    """Dense RBF affinity with the official sigma rule; `normalize_rows` drops the diagonal and rows sum to 1.

    Example:
        >>> w = rbf_affinity(torch.eye(3), knn=2, normalize_rows=True)
        >>> [round(v, 4) for v in w.dense().sum(1).tolist()]
        [1.0, 1.0, 1.0]
    """
    dist = pairwise_distances(feats)
    sigma = rbf_sigma(dist, knn)
    w = torch.exp(-(dist**2) / (2.0 * sigma**2))
    if normalize_rows:
        w.fill_diagonal_(0.0)
        w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    return Affinity(feats.shape[0], matrix=w, sigma=sigma)


def linear_affinity(feats: torch.Tensor) -> Affinity:
    """`Phi Phi^T` (cosine similarity of normalised features); PSD."""
    return Affinity(feats.shape[0], matrix=feats @ feats.T)


def build_affinity(feats: torch.Tensor, kind: str = "knn", knn: int = 5) -> Affinity:
    """The affinity `kind` (one of `AFFINITIES`) of features `[N, d]` (normalise them first)."""
    if feats.ndim != 2:
        raise BadInputError(f"features must be [N, d], got shape {tuple(feats.shape)}")
    if kind == "knn":
        return knn_affinity(feats, knn)
    if kind == "rbf":
        return rbf_affinity(feats, knn)
    if kind == "rbf_normalized":
        return rbf_affinity(feats, knn, normalize_rows=True)
    if kind == "linear":
        return linear_affinity(feats)
    raise BadInputError(f"unknown affinity {kind!r}; choose one of {', '.join(AFFINITIES)}")
