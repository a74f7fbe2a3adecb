"""LAME: Laplacian-adjusted maximum-likelihood estimation on the outputs of a frozen classifier (Boudiaf et al.,
CVPR 2022). Clean-room implementation from the paper and the notes in `perception-adapters.md` section 4.

Per batch, with `p_i = softmax(logits_i)`, L2-normalised penultimate features `phi_i` and an affinity `W`, LAME
minimises over rows `z_i` on the simplex

    E(Z) = sum_i KL(z_i || p_i) - sum_ij w_ij z_i^T z_j

by the concave-convex procedure: `z_i <- softmax(log p_i + sum_j w_ij z_j)`, from `Z = P`, for at most `max_iter`
(100) iterations. No gradients, no parameter or buffer ever changes.

Stopping (after the third iteration, when the energy changes by at most `tol` of its previous value; `stop=`):
- `"vadapters"` (default): the energy of the current assignments, `E(Z) = sum[-log p * Z - (W Z) * Z + Z log Z]`,
  accumulated in float64, with a float32-aware tolerance: the relative tolerance is at least the float32
  resolution of the iterates (`torch.finfo(torch.float32).eps`, 1.2e-7). A smaller change is rounding noise of
  the float32 assignments, and the official 1e-8 on float32 energies only fires when two energies round to the
  same float32 value, so where it stops depends on summation order (threads, batch order).
- `"official"`: the official code's stopping energy, as it computes it: `sum[u * Z - (W Z_prev) * Z + Z log Z]`
  with `u = -log(p + 1e-10)` and the pairwise term of the update that produced `Z` (the previous assignments),
  summed in float32 and compared with `tol` as given (official 1e-8).

Both rules see the same iterates: at a fixed iteration count (`tol < 0` never stops early) the output does not
depend on the rule.

Deviation from the official code: the official unary is `-log(p + 1e-10)`; here the logits themselves are used
(softmax is shift invariant, so `softmax(logits + W Z)` is the same update without the epsilon). It makes the
`W = 0` case return `softmax(logits)` bit-exactly.

Example:
    >>> import torch
    >>> from vadapters.models import tiny_timm_classifier
    >>> model = tiny_timm_classifier("test_resnet")
    >>> lame = LAME(model, knn=3)
    >>> probs = lame(torch.rand(8, 3, 32, 32))
    >>> tuple(probs.shape), bool(torch.allclose(probs.sum(1), torch.ones(8)))
    ((8, 10), True)
    >>> lame.diagnostics["iterations"] >= 1, type(lame.diagnostics["collapse_alarm"]).__name__
    (True, 'bool')
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from vadapters.errors import BadInputError
from vadapters.tta.affinity import AFFINITIES, Affinity, build_affinity
from vadapters.tta.base import TTAConfig, TTAMethod, eval_mode, split_classifier

STOP_RULES = ("vadapters", "official")


@dataclasses.dataclass
class LAMEConfig(TTAConfig):
    """LAME settings.

    Args:
        affinity (`str`): "knn" (default, sparse), "rbf" (official default: dense, official sigma rule),
            "rbf_normalized" (row-normalised RBF) or "linear".
        knn (`int`): k of the kNN affinity and of the RBF sigma rule.
        max_iter (`int`): iteration cap of the fixed point (official: 100).
        tol (`float`): relative energy-change stopping threshold (official: 1e-8); with `stop="vadapters"` it is
            raised to the float32 resolution (1.2e-7) when smaller.
        stop (`str`): stopping energy: `"vadapters"` (the current assignments' energy, float64, float32-aware
            tolerance) or `"official"` (the official code's energy and float32 arithmetic). See the module docs.
        collapse_ratio (`float`): the collapse alarm fires when the entropy of LAME's predicted-class histogram
            falls below this fraction of the source predictions' histogram entropy.
    """

    method: ClassVar[str] = "lame"
    affinity: str = dataclasses.field(default="knn", metadata={"help": "knn | rbf | rbf_normalized | linear"})
    knn: int = dataclasses.field(default=5, metadata={"help": "neighbours (kNN, RBF sigma rule)"})
    max_iter: int = dataclasses.field(default=100, metadata={"help": "fixed-point iteration cap"})
    tol: float = dataclasses.field(default=1e-8, metadata={"help": "relative energy stopping threshold"})
    stop: str = dataclasses.field(default="vadapters", metadata={"help": "stopping energy: vadapters | official"})
    collapse_ratio: float = dataclasses.field(default=0.5, metadata={"help": "histogram-entropy alarm ratio"})

    def validate(self) -> None:
        super().validate()
        if self.affinity not in AFFINITIES:
            raise BadInputError(f"affinity must be one of {', '.join(AFFINITIES)}, got {self.affinity!r}")
        if self.stop not in STOP_RULES:
            raise BadInputError(f"stop must be one of {', '.join(STOP_RULES)}, got {self.stop!r}")
        if self.knn < 1 or self.max_iter < 1 or self.tol < 0 or not 0 <= self.collapse_ratio <= 1:
            raise BadInputError(
                f"need knn >= 1, max_iter >= 1, tol >= 0, 0 <= collapse_ratio <= 1; got {self.knn}, "
                f"{self.max_iter}, {self.tol}, {self.collapse_ratio}"
            )


def lame_energy(log_p: torch.Tensor, z: torch.Tensor, affinity: Affinity) -> float:
    """vadapters' stopping energy, the LAME objective at the current assignments `Z`, accumulated in float64:
    `sum[-log p * Z - (W Z) * Z + Z log Z]`.

    Example:
        >>> z = torch.tensor([[1.0, 0.0]])
        >>> lame_energy(torch.log(z.clamp_min(1e-20)), z, Affinity(1, indices=torch.zeros(1, 0, dtype=torch.long)))
        0.0
    """
    z64 = z.double()
    unary = -(log_p.double() * z64).sum()
    pairwise = (affinity.matmul(z).double() * z64).sum()
    neg_entropy = (z64 * torch.log(z64.clamp_min(1e-20))).sum()
    return float(unary - pairwise + neg_entropy)


def official_energy(unary: torch.Tensor, z: torch.Tensor, pairwise: torch.Tensor) -> float:
    """The official code's stopping energy, in its arithmetic (float32 sums): `sum[u * Z - P * Z + Z log Z]`,
    where `u = -log(p + 1e-10)` and `P = W Z_prev` is the pairwise term of the update that produced `Z` (so it
    mixes the new and the previous assignments, unlike `lame_energy`).

    Example:
        >>> z = torch.tensor([[0.5, 0.5]])
        >>> round(official_energy(torch.zeros(1, 2), z, torch.zeros(1, 2)), 6)  # minus the entropy
        -0.693147
    """
    return float((unary * z - pairwise * z + z * torch.log(z.clamp_min(1e-20))).sum())


def laplacian_optimisation(
    logits: torch.Tensor, affinity: Affinity, max_iter: int = 100, tol: float = 1e-8, stop: str = "vadapters"
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Run LAME's concave-convex fixed point; returns `(Z, info)`.

    `info` holds `iterations`, `energies` (the stopping energy after each iteration, per `stop`) and `tol` (the
    relative tolerance applied: `max(tol, 1.2e-7)` for `stop="vadapters"`, `tol` for `"official"`). A negative
    `tol` never stops early.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.1], [0.1, 0.0]])
        >>> w = Affinity(3, indices=torch.tensor([[1], [2], [0]]))
        >>> z, info = laplacian_optimisation(logits, w)
        >>> bool(torch.allclose(z.sum(1), torch.ones(3))), info["iterations"] >= 1, info["tol"] > 1e-8
        (True, True, True)
        >>> z_off, _ = laplacian_optimisation(logits, w, max_iter=5, tol=-1.0, stop="official")
        >>> torch.equal(z_off, laplacian_optimisation(logits, w, max_iter=5, tol=-1.0)[0])  # same iterates
        True
        >>> zero = Affinity(3, indices=torch.zeros(3, 0, dtype=torch.long))
        >>> bool(torch.equal(laplacian_optimisation(logits, zero)[0], logits.softmax(1)))
        True
    """
    if stop not in STOP_RULES:
        raise BadInputError(f"stop must be one of {', '.join(STOP_RULES)}, got {stop!r}")
    logits = logits.float()
    log_p = torch.log_softmax(logits, dim=1)
    z = logits.softmax(dim=1)
    if stop == "official":
        unary = -torch.log(z + 1e-10)
    elif tol >= 0:
        tol = max(float(tol), torch.finfo(z.dtype).eps)
    energies: list[float] = []
    old = None
    iterations = 0
    for i in range(max_iter):
        iterations = i + 1
        pairwise = affinity.matmul(z)
        z = (logits + pairwise).softmax(dim=1)
        energy = official_energy(unary, z, pairwise) if stop == "official" else lame_energy(log_p, z, affinity)
        energies.append(energy)
        if i > 1 and old is not None and abs(energy - old) <= tol * abs(old):
            break
        old = energy
    return z, {"iterations": iterations, "energies": energies, "tol": tol}


def histogram_entropy(pred: torch.Tensor, num_classes: int) -> float:
    counts = torch.bincount(pred, minlength=num_classes).float()
    share = counts / counts.sum()
    share = share[share > 0]
    return float(-(share * share.log()).sum())


class LAME(TTAMethod):
    """LAME around a frozen classifier: one forward pass, then a per-batch fixed point on the probabilities.

    Args:
        model (`nn.Module`): a timm classifier, or any module with `features_fn` / `head_fn` given.
        config (`LAMEConfig`, optional): settings; keyword overrides (`knn=3`, `affinity="rbf"`) also work.
        features_fn (`callable`, optional): `x -> [B, d]` pooled penultimate features (normalised input).
        head_fn (`callable`, optional): `[B, d] -> logits [B, K]`.

    After each call `diagnostics` holds: `iterations`, `energy` (per iteration), `entropy_source` and
    `entropy_lame` (mean per-sample prediction entropy), `histogram_source` / `histogram_lame` (predicted-class
    counts) and `collapse_alarm` (histogram entropy fell below `collapse_ratio` of the source's).
    """

    config_cls = LAMEConfig

    def __init__(self, model, config: LAMEConfig | None = None, features_fn=None, head_fn=None, **overrides) -> None:
        super().__init__(model, config, **overrides)
        self.features_fn, self.head_fn = split_classifier(model, features_fn, head_fn)
        self._snapshot_source()

    @torch.no_grad()
    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen logits `[B, K]` and L2-normalised features `[B, d]` for images in [0, 1]."""
        with eval_mode(self.source_model):
            feats = self.features_fn(self.normalise(x))
            logits = self.head_fn(feats)
        feats = feats.flatten(1).float()
        return logits, torch.nn.functional.normalize(feats, dim=1)

    @torch.no_grad()
    def adjust(self, logits: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """LAME's output for given logits and (normalised) features; fills `diagnostics`."""
        cfg = self.config
        affinity = build_affinity(feats, cfg.affinity, cfg.knn)
        z, info = laplacian_optimisation(logits, affinity, cfg.max_iter, cfg.tol, cfg.stop)
        k = logits.shape[1]
        source_pred, lame_pred = logits.argmax(1), z.argmax(1)
        h_source, h_lame = histogram_entropy(source_pred, k), histogram_entropy(lame_pred, k)
        self.diagnostics = {
            "iterations": info["iterations"],
            "energy": info["energies"],
            "entropy_source": float(torch.special.entr(logits.float().softmax(1)).sum(1).mean()),
            "entropy_lame": float(torch.special.entr(z).sum(1).mean()),
            "histogram_source": torch.bincount(source_pred, minlength=k).tolist(),
            "histogram_lame": torch.bincount(lame_pred, minlength=k).tolist(),
            "collapse_alarm": bool(h_source > 0 and h_lame < cfg.collapse_ratio * h_source),
            "sigma": affinity.sigma,
        }
        return z

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        logits, feats = self.logits_and_features(x)
        return self.adjust(logits, feats)
