"""SaRA configuration.

Example:
    >>> from vadapters.methods.sara import SaRAConfig
    >>> SaRAConfig(quantile=0.1).selection_mode
    'quantile'
    >>> SaRAConfig().threshold  # upstream default when neither threshold nor quantile is given
    0.002
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vadapters.core.config import AdapterConfig

TENSOR_KINDS = ("conv", "linear", "norm", "bias", "embedding", "other")
UPSTREAM_THRESHOLD = 2e-3


def upstream_lr(threshold: float) -> float:
    """The learning rate the official code always uses: `1e-3 * exp(-350 * threshold)`.

    Example:
        >>> round(upstream_lr(2e-3), 7)
        0.0004966
    """
    return 1e-3 * math.exp(-350.0 * float(threshold))


@dataclass
class SaRAConfig(AdapterConfig):
    """SaRA (Hu et al. 2024): fine-tune the *smallest-magnitude* entries of every weight tensor of a model.

    The selected entries ("temporarily ineffective" parameters) become a 1-D trainable vector per tensor; every
    other entry stays bit-identical to the base. A nuclear-norm penalty keeps the sparse update low-rank, and
    at `progressive_at` the selection is re-made on the trained values: entries that grew past the threshold
    freeze (M' is a subset of M).

    Selection: `threshold` (absolute, `|w| < threshold`, upstream default 2e-3) or `quantile` (the smallest
    `quantile` fraction of all targeted entries, one global threshold; meaningful on tiny or unusual models).
    Exactly one of the two may be set. `rule="random"` picks the same number of entries uniformly at random
    instead (an ablation baseline).

    Nuclear norm (`lambda_rank`, `rank_target`): which matrix is penalised differs between the two codes.
    - `rank_target="update"` (vadapters' default) penalises the sparse update `||W' - W_base||_*` (the trained
      values minus the base at the selected entries, zero elsewhere): it keeps the change low-rank, as the paper
      describes, and is 0 for a fresh adapter.
    - `rank_target="weights"` penalises the masked weights `||W' * M||_*` (the selected entries' current values,
      zero elsewhere): what the official `optim/adamw2.py` (`--disable_ub`) computes; it includes the base's
      small entries, so it is not 0 at the start.
    The official default optimizer (`optim/adamw.py`, "UB") computes the weights' term on the original parameter
    objects, which its sparse step never reads: there the term has no effect.

    Fields set by `inject` (like `base_signature`): `realised_threshold` (the threshold used, also in quantile
    mode), `selection` (selected count per tensor, so loading never depends on re-deriving the mask from a base
    that was cast to another dtype) and `base_fingerprint` (probe values of the base; loading onto another base
    raises `IncompatibleBaseError` unless `check_base=False`).
    """

    method: ClassVar[str] = "sara"

    threshold: float | None = field(
        default=None,
        metadata={"help": "Select entries with |w| < threshold (upstream: 2e-3, the default if quantile is unset)."},
    )
    quantile: float | None = field(
        default=None,
        metadata={"help": "Select the smallest `quantile` fraction of all targeted entries (one global threshold)."},
    )
    rule: str = field(
        default="magnitude",
        metadata={"help": "'magnitude' (SaRA) or 'random' (same count, uniformly random entries; a baseline)."},
    )
    random_seed: int = field(default=0, metadata={"help": "Seed of rule='random'."})
    include: tuple[str, ...] = field(
        default=(),
        metadata={"help": "fnmatch patterns of parameter names to target (e.g. 'down_blocks.*'); empty: all."},
    )
    exclude: tuple[str, ...] = field(
        default=(), metadata={"help": "fnmatch patterns of parameter names never to target."}
    )
    kinds: tuple[str, ...] = field(
        default=TENSOR_KINDS,
        metadata={"help": f"Tensor kinds to target, a subset of {TENSOR_KINDS}."},
    )
    lambda_rank: float = field(
        default=5e-4, metadata={"help": "Weight of the nuclear-norm penalty (0 disables it; upstream 5e-4)."}
    )
    rank_target: str = field(
        default="update",
        metadata={
            "help": "Nuclear norm of the sparse 'update' W'-W (default) or of the masked 'weights' W'*M (the "
            "official adamw2 optimizer's term)."
        },
    )
    rank_min_dim: int = field(
        default=64,
        metadata={"help": "A 2-D weight is penalised when min(shape) > rank_min_dim (upstream: 64)."},
    )
    rank_include_conv: bool = field(
        default=False, metadata={"help": "Also penalise conv kernels, reshaped to (out, in*k*k)."}
    )
    rank_matrices_per_step: int = field(
        default=1, metadata={"help": "Eligible matrices penalised per step, drawn at random (0: all; upstream 1)."}
    )
    progressive_at: float | None = field(
        default=0.5,
        metadata={
            "help": "Re-select at this step: a fraction of the run in (0, 1), or an absolute step >= 1; None: never."
        },
    )
    reset_moments: bool = field(
        default=False, metadata={"help": "Reset the Adam moments at re-selection (upstream adamw.py does)."}
    )
    check_base: bool = field(
        default=True, metadata={"help": "Refuse to load onto a base whose weights differ from the recorded ones."}
    )
    realised_threshold: float | None = field(
        default=None, metadata={"help": "Set by inject: the threshold the selection used."}
    )
    selection: dict | None = field(
        default=None, metadata={"help": "Set by inject: {parameter name: number of selected entries}."}
    )
    base_fingerprint: dict | None = field(
        default=None, metadata={"help": "Set by inject: probe values of the base weights (checked on load)."}
    )

    def validate(self) -> None:
        if self.threshold is None and self.quantile is None:
            self.threshold = UPSTREAM_THRESHOLD
        self._require(self.threshold is None or self.quantile is None, "set threshold or quantile, not both")
        if self.threshold is not None:
            self._require(
                _is_number(self.threshold) and math.isfinite(self.threshold) and self.threshold > 0,
                f"threshold must be a number > 0, got {self.threshold!r}",
            )
            self.threshold = float(self.threshold)
        if self.quantile is not None:
            self._require(
                _is_number(self.quantile) and 0.0 < self.quantile < 1.0,
                f"quantile must be a number in (0, 1), got {self.quantile!r}",
            )
            self.quantile = float(self.quantile)
        self._require(self.rule in ("magnitude", "random"), f"rule must be 'magnitude' or 'random', got {self.rule!r}")
        self.include = _patterns(self, "include", self.include)
        self.exclude = _patterns(self, "exclude", self.exclude)
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        bad = [k for k in kinds if k not in TENSOR_KINDS]
        self._require(bool(kinds) and not bad, f"kinds must be a non-empty subset of {TENSOR_KINDS}, got {kinds!r}")
        self.kinds = kinds
        self._require(
            _is_number(self.lambda_rank) and math.isfinite(self.lambda_rank) and self.lambda_rank >= 0,
            f"lambda_rank must be a number >= 0, got {self.lambda_rank!r}",
        )
        self.lambda_rank = float(self.lambda_rank)
        self._require(
            self.rank_target in ("update", "weights"),
            f"rank_target must be 'update' or 'weights', got {self.rank_target!r}",
        )
        for name in ("rank_min_dim", "rank_matrices_per_step", "random_seed"):
            value = getattr(self, name)
            self._require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                f"{name} must be an int >= 0, got {value!r}",
            )
        if self.progressive_at is not None:
            p = self.progressive_at
            ok = _is_number(p) and p > 0 and (p < 1 or float(p).is_integer())
            self._require(ok, f"progressive_at must be None, a fraction in (0, 1) or a step >= 1, got {p!r}")
        for name in ("reset_moments", "check_base", "rank_include_conv"):
            self._require(isinstance(getattr(self, name), bool), f"{name} must be True or False")
        if self.realised_threshold is not None:
            self.realised_threshold = float(self.realised_threshold)
        self._require(self.selection is None or isinstance(self.selection, dict), "selection must be None or a dict")
        self._require(
            self.base_fingerprint is None or isinstance(self.base_fingerprint, dict),
            "base_fingerprint must be None or a dict",
        )

    def refuses_other_bases(self) -> bool:
        """SaRA's update replaces chosen entries of its base's own weights: other weights are refused (by the
        recorded fingerprint) unless `check_base=False`."""
        return bool(self.base_fingerprint) and self.check_base

    @property
    def selection_mode(self) -> str:
        return "quantile" if self.quantile is not None else "threshold"

    def progressive_step(self, max_steps: int) -> int | None:
        """The step (number of optimizer steps done) at which re-selection happens in a run of `max_steps`.

        Example:
            >>> SaRAConfig(progressive_at=0.5).progressive_step(5005)
            2502
            >>> SaRAConfig(progressive_at=2500).progressive_step(5005)
            2500
        """
        if self.progressive_at is None:
            return None
        if self.progressive_at < 1:
            return max(1, int(self.progressive_at * max_steps))
        return int(self.progressive_at)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _patterns(config: SaRAConfig, name: str, value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value or ())
    config._require(all(isinstance(p, str) and p for p in items), f"{name} must be a list of non-empty strings")
    return items
