"""SaRA's sparse parametrisation: selection of small-magnitude entries and the memory-lean trainable state.

Each targeted weight tensor gets one `SaRATensor` parametrisation (`torch.nn.utils.parametrize`); it holds, per
named adapter, a `SparseDelta` with a 1-D trainable `values` vector and an int32 `indices` buffer of flat
positions. The module's weight is then `base` with `values` scattered in (`index_put`, out of place), so:

- the frozen base stays in `<module>.parametrizations.<name>.original` and is never modified (except by `fuse`);
- autograd gives `values` the gathered gradient `grad.flatten()[indices]`; the full-size weight gradient exists
  only transiently during backward, no frozen tensor ever holds a `.grad`, and the optimizer sees only `values`
  (Adam state of 2 x nnz);
- `named_parameters()` lists real `nn.Parameter`s (`...original` frozen, `...values` trainable), so DDP /
  Accelerate / `clip_grad_norm_` / checkpoints see exactly the trainable tensors (upstream's `_parameters`
  replacement broke all of these).

The price: the composed weight is a second copy of each targeted weight, kept by the layer for its backward. While
one adapter trains, `live.LiveWeight` keeps that copy between steps and rewrites only the selected entries (no
per-forward copy); otherwise `index_put` builds it per call. `vadapters.fuse` writes the values into the base.

Why a parametrisation rather than gradient hooks on the full weights: a hook needs `requires_grad=True` on the
frozen weights, so DDP allocates and all-reduces full-size gradient buckets for them, and the sparse vectors'
gradients arrive outside autograd where DDP cannot average them. `benchmarks/sara_benchmark.py` measures both.

Example:
    >>> import torch
    >>> from vadapters.methods.sara.sparse import kth_smallest_abs
    >>> kth_smallest_abs([torch.tensor([3.0, -1.0]), torch.tensor([0.5, -2.0])], 2)
    1.0
"""

from __future__ import annotations

import fnmatch
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from vadapters.core.layers import AdapterLayer
from vadapters.errors import AdapterStateError, IncompatibleBaseError
from vadapters.methods.sara.live import LiveWeight

METHOD = "sara"
PROBE_SIZE = 256
_ORDER_ATTR = "_vadapters_sara_parameter_order"
_NORM_TYPES = (
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)
if hasattr(nn, "RMSNorm"):
    _NORM_TYPES = (*_NORM_TYPES, nn.RMSNorm)


# ------------------------------------------------------------------------------------------------------ targets
@dataclass
class Target:
    """One tensor SaRA may select entries of: `owner.<attr>` (or its parametrisation's `original`)."""

    name: str  # canonical name relative to the host (".base_layer" of wrapping adapters removed)
    owner: nn.Module
    attr: str
    kind: str

    @property
    def base(self) -> torch.Tensor:
        """The frozen base tensor (the parametrisation's `original` once SaRA is on it)."""
        if parametrize.is_parametrized(self.owner, self.attr):
            return self.owner.parametrizations[self.attr].original
        return self.owner._parameters[self.attr]


def canonical_name(path: str, attr: str) -> str:
    parts = [p for p in path.split(".") if p and p != "base_layer"] if path else []
    return ".".join([*parts, attr])


def tensor_kind(owner: nn.Module, attr: str) -> str:
    """`conv`, `linear`, `norm`, `bias`, `embedding` or `other` (biases of every layer type count as `bias`)."""
    if attr == "bias":
        return "bias"
    if attr == "weight":
        if isinstance(owner, nn.modules.conv._ConvNd):
            return "conv"
        if isinstance(owner, nn.Linear):
            return "linear"
        if isinstance(owner, nn.Embedding):
            return "embedding"
        if isinstance(owner, _NORM_TYPES) or "Norm" in type(owner).__name__:
            return "norm"
    return "other"


def _foreign_parameter_ids(host: nn.Module) -> set[int]:
    """Parameters of adapters (of any method) already on `host`: never SaRA targets."""
    ids: set[int] = set()
    for module in host.modules():
        if isinstance(module, AdapterLayer):
            for container in module.adapter_layer_names:
                holder = getattr(module, container, None)
                if isinstance(holder, nn.Module):
                    ids |= {id(p) for p in holder.parameters()}
    return ids


def iter_base_tensors(host: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
    """`(canonical name, owner, attribute)` of every base parameter of `host`, in `named_modules` order.

    Parametrised tensors are listed once under their plain name; adapter parameters and the internals of
    parametrisations are skipped.
    """
    foreign = _foreign_parameter_ids(host)
    counts: dict[int, int] = {}
    found = []
    for path, module in host.named_modules():
        if "parametrizations" in path.split("."):
            continue
        for attr, param in module._parameters.items():
            if param is None or id(param) in foreign:
                continue
            counts[id(param)] = counts.get(id(param), 0) + 1
            found.append((canonical_name(path, attr), module, attr, id(param)))
        if parametrize.is_parametrized(module):
            for attr, plist in module.parametrizations.items():
                if all(isinstance(p, SaRATensor) for p in plist):
                    counts[id(plist.original)] = counts.get(id(plist.original), 0) + 1
                    found.append((canonical_name(path, attr), module, attr, id(plist.original)))
    for name, module, attr, pid in found:
        if counts[pid] == 1:  # tied / shared tensors are skipped: another module would bypass the selection
            yield name, module, attr


def find_targets(host: nn.Module, config: Any) -> list[Target]:
    """The tensors `config` targets on `host` (kinds, include and exclude patterns applied)."""
    targets = []
    for name, owner, attr in iter_base_tensors(host):
        kind = tensor_kind(owner, attr)
        if kind not in config.kinds:
            continue
        if config.include and not any(fnmatch.fnmatchcase(name, p) for p in config.include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in config.exclude):
            continue
        base = owner.parametrizations[attr].original if parametrize.is_parametrized(owner, attr) else None
        tensor = base if base is not None else owner._parameters[attr]
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        targets.append(Target(name, owner, attr, kind))
    return targets


# ---------------------------------------------------------------------------------------------------- selection
def _abs_bits(t: torch.Tensor) -> torch.Tensor:
    """float32 bit patterns of |t| (monotonic in |t| as int32 for non-negative floats)."""
    return t.detach().abs().float().reshape(-1).view(torch.int32)


def kth_smallest_abs(tensors: Sequence[torch.Tensor], k: int, concat_limit: int = 1 << 24) -> float:
    """The k-th smallest (1-based) absolute value over all entries of `tensors`, exactly.

    A two-pass radix select on the float32 bit patterns (two bincounts per tensor), so no concatenated copy
    of the model is made: it works on SD-size UNets in the memory of their largest tensor. Up to `concat_limit`
    entries in total, one concatenated `kthvalue` is used instead (cheaper for small models).
    """
    total = sum(t.numel() for t in tensors)
    if not 1 <= k <= total:
        raise ValueError(f"k={k} is outside 1..{total}")
    device = tensors[0].device
    if total <= concat_limit:  # small models: one concatenated copy is cheaper than two passes
        flat = torch.cat([t.detach().to(device).abs().float().reshape(-1) for t in tensors])
        return float(flat.kthvalue(k).values)
    hist = torch.zeros(1 << 15, dtype=torch.int64, device=device)
    for t in tensors:
        hist += torch.bincount(_abs_bits(t.to(device)) >> 16, minlength=1 << 15).to(torch.int64)
    cum = hist.cumsum(0)
    high = int(torch.searchsorted(cum, torch.tensor(k, device=device, dtype=torch.int64)))
    rank = k - (int(cum[high - 1]) if high > 0 else 0)
    low_hist = torch.zeros(1 << 16, dtype=torch.int64, device=device)
    for t in tensors:
        bits = _abs_bits(t.to(device))
        low_hist += torch.bincount(bits[(bits >> 16) == high] & 0xFFFF, minlength=1 << 16).to(torch.int64)
    low = int(torch.searchsorted(low_hist.cumsum(0), torch.tensor(rank, device=device, dtype=torch.int64)))
    return float(torch.tensor([(high << 16) | low], dtype=torch.int32).view(torch.float32))


def _next_float(x: float) -> float:
    t = torch.tensor(x, dtype=torch.float32)
    return float(torch.nextafter(t, torch.tensor(float("inf"))))


def _smallest(flat_abs: torch.Tensor, k: int) -> torch.Tensor:
    """Flat positions of the k smallest entries (ties broken by position), ascending."""
    order = torch.sort(flat_abs, stable=True).indices[:k]
    return torch.sort(order).values


def _random_positions(numel: int, k: int, seed: int, name: str, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(name.encode()))
    return torch.sort(torch.randperm(numel, generator=generator)[:k]).values.to(device)


def _proportional_counts(numels: list[int], total: int) -> list[int]:
    """Split `total` over tensors proportionally to their sizes (largest remainder, exact sum)."""
    size = sum(numels)
    raw = [total * n / size for n in numels]
    counts = [min(int(r), n) for r, n in zip(raw, numels)]
    order = sorted(range(len(numels)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    for i in order:
        if sum(counts) >= total:
            break
        if counts[i] < numels[i]:
            counts[i] += 1
    return counts


def select(targets: list[Target], config: Any) -> tuple[float, dict[str, torch.Tensor]]:
    """`(threshold, {name: int32 flat indices})` for `targets` under `config` (tensors with none are left out).

    With `config.selection` (recorded counts) the counts are reproduced exactly: by the recorded threshold when
    it gives the same count (the same base), else the k smallest entries (a base cast to another dtype).
    """
    recorded = config.selection
    if recorded is not None:
        by_name = {t.name: t for t in targets}
        missing = sorted(set(recorded) - set(by_name))
        if missing:
            raise IncompatibleBaseError(
                f"this SaRA adapter selects entries of {len(missing)} tensor(s) the model does not have "
                f"(e.g. {missing[:4]}); it was made for another architecture"
            )
        tau = config.realised_threshold if config.realised_threshold is not None else config.threshold
        tau = float("inf") if tau is None else float(tau)  # no threshold recorded: the k smallest below
        out = {}
        for name, k in recorded.items():
            base = by_name[name].base
            flat_abs = base.detach().abs().float().reshape(-1)
            if not 0 <= int(k) <= flat_abs.numel():
                raise IncompatibleBaseError(
                    f"{name}: {k} selected entries recorded but the tensor has {flat_abs.numel()}"
                )
            if config.rule == "random":
                idx = _random_positions(flat_abs.numel(), int(k), config.random_seed, name, base.device)
            else:
                idx = torch.nonzero(flat_abs < tau).reshape(-1)
                if idx.numel() != int(k):
                    idx = _smallest(flat_abs, int(k))
            if idx.numel():
                out[name] = idx.to(torch.int32)
        return tau, out

    bases = [t.base for t in targets]
    if config.quantile is not None:
        total = sum(b.numel() for b in bases)
        k = max(1, min(total, round(config.quantile * total)))
        tau = _next_float(kth_smallest_abs(bases, k))  # |w| < tau selects the k smallest (and their ties)
    else:
        tau = float(config.threshold)
    if config.rule == "random":
        total_selected = sum(int((b.detach().abs().float() < tau).sum()) for b in bases)
        counts = _proportional_counts([b.numel() for b in bases], total_selected)
        out = {}
        for t, b, k in zip(targets, bases, counts):
            if k:
                out[t.name] = _random_positions(b.numel(), k, config.random_seed, t.name, b.device).to(torch.int32)
        return tau, out
    out = {}
    for t, b in zip(targets, bases):
        idx = torch.nonzero(b.detach().abs().float().reshape(-1) < tau).reshape(-1)
        if idx.numel():
            out[t.name] = idx.to(torch.int32)
    return tau, out


# -------------------------------------------------------------------------------------------------- fingerprint
def fingerprint(targets: list[Target], size: int = PROBE_SIZE) -> dict[str, Any]:
    """Probe values of the base: `size` entries evenly spaced over all targeted entries (deterministic)."""
    bases = [t.base for t in sorted(targets, key=lambda t: t.name)]  # by name: independent of module order
    numels = [b.numel() for b in bases]
    total = sum(numels)
    positions = [int((i + 0.5) * total / size) for i in range(min(size, total))]
    probe, start, j = [], 0, 0
    for pos in positions:
        while pos >= start + numels[j]:
            start += numels[j]
            j += 1
        probe.append(float(bases[j].detach().reshape(-1)[pos - start].float()))
    dtypes = sorted({str(b.dtype).removeprefix("torch.") for b in bases})
    return {"tensors": len(bases), "numel": total, "dtypes": dtypes, "probe": probe}


_EPS = {"float64": 0.0, "float32": 0.0, "float16": 2.0**-10, "bfloat16": 2.0**-7}


def check_fingerprint(targets: list[Target], expected: dict[str, Any]) -> None:
    """Raise `IncompatibleBaseError` when the base weights differ from the recorded probe values.

    Exact when the dtypes are those recorded; within the coarser dtype's rounding otherwise.
    """
    found = fingerprint(targets, size=len(expected.get("probe", [])) or PROBE_SIZE)
    advice = (
        "Load it into the base model it was trained on (pass check_base=False to load anyway: SaRA stores "
        "absolute values for the selected entries, so on another base they replace that model's weights)."
    )
    if (found["tensors"], found["numel"]) != (expected.get("tensors"), expected.get("numel")):
        raise IncompatibleBaseError(
            f"this SaRA adapter was made on a base with {expected.get('tensors')} targeted tensors "
            f"({expected.get('numel')} entries); this model has {found['tensors']} ({found['numel']}). {advice}"
        )
    same_dtype = found["dtypes"] == expected.get("dtypes")
    rtol = 0.0 if same_dtype else max(_EPS.get(d, 2.0**-7) for d in found["dtypes"] + expected.get("dtypes", []))
    a = torch.tensor(found["probe"], dtype=torch.float64)
    b = torch.tensor(expected["probe"], dtype=torch.float64)
    if same_dtype:
        bad = ~((a == b) | (a.isnan() & b.isnan()))
    else:
        bad = (a - b).abs() > rtol * b.abs() + 1e-7
    if bool(bad.any()):
        worst = float((a - b).abs().nan_to_num(float("inf")).max())
        tolerance = "" if same_dtype else f", tolerance {rtol:.3g} relative for dtypes {found['dtypes']}"
        raise IncompatibleBaseError(
            f"the model's weights differ from the base this SaRA adapter was trained on: {int(bad.sum())} of "
            f"{len(b)} probe values differ (largest difference {worst:.3g}{tolerance}). {advice}"
        )


# ------------------------------------------------------------------------------------------------- the modules
class SparseDelta(nn.Module):
    """One adapter's state for one tensor: trainable `values` at flat positions `indices`.

    After a progressive re-selection, `frozen_pos` (positions into `values`) are pinned to `frozen_values`:
    the forward uses those, so they get no gradient, and `effective_values()` is what is saved.
    """

    def __init__(self, indices: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.values = nn.Parameter(values, requires_grad=False)
        self.register_buffer("indices", indices.to(torch.int32))
        self.register_buffer("frozen_pos", torch.zeros(0, dtype=torch.int32, device=indices.device), persistent=False)
        self.register_buffer(
            "frozen_values", torch.zeros(0, dtype=values.dtype, device=values.device), persistent=False
        )

    @property
    def nnz(self) -> int:
        return self.indices.numel()

    @property
    def num_trainable(self) -> int:
        return self.nnz - self.frozen_pos.numel()

    def effective_values(self) -> torch.Tensor:
        if self.frozen_pos.numel() == 0:
            return self.values
        return self.values.index_put((self.frozen_pos,), self.frozen_values.to(self.values.dtype))

    def pin(self) -> None:
        """Write the pinned values back into `values` (after an optimizer step moved them)."""
        if self.frozen_pos.numel():
            with torch.no_grad():
                self.values.index_put_((self.frozen_pos,), self.frozen_values.to(self.values.dtype))

    def state(self) -> dict[str, tuple]:
        """What the composed weight depends on besides the base: `key` (this delta, its pinned entries) and
        `version` (the trainable values' version counter), for `live.LiveWeight.get`."""
        key = (id(self), self.frozen_pos.data_ptr(), self.frozen_pos.numel(), self.frozen_values._version)
        return {"key": key, "version": (id(self.values), self.values._version, self.frozen_values._version)}

    def extra_repr(self) -> str:
        return f"nnz={self.nnz}, trainable={self.num_trainable}"


class SaRATensor(AdapterLayer):
    """Parametrisation of one weight tensor: `base` with each active adapter's sparse values put in.

    One adapter at weight 1 puts its values in exactly (a fresh adapter holds the base entries, so it is a
    bit-exact no-op). Several adapters, or a weight other than 1, add `weight * (values - base)` at their
    positions. It is an `AdapterLayer`, so the core's `set_adapters` / `disabled` / `fuse` reach it.
    """

    method = METHOD
    adapter_layer_names = ("sara_deltas",)
    wraps = False  # a parametrisation of the weight, not a module in the layer's place

    def __init__(self, tensor_name: str) -> None:
        nn.Module.__init__(self)  # no base_layer: the base is the parametrisation's `original`
        self.active_adapters: list[str] = []
        self.adapter_weights: dict[str, float] = {}
        self.disabled = False
        self.merged_adapters: list[str] = []
        self._merge_backup: dict[str, torch.Tensor] = {}
        self.tensor_name = tensor_name
        self.sara_deltas = nn.ModuleDict()
        self.__dict__["_live"] = LiveWeight()  # the training fast path's composed weight (not state)

    def train(self, mode: bool = True) -> SaRATensor:
        if not mode:
            self._live.release()
        return super().train(mode)

    def compose(self, base: torch.Tensor, adapters: list[tuple[str, float]]) -> torch.Tensor:
        if not adapters:
            return base
        flat = base.reshape(-1)
        if len(adapters) == 1 and adapters[0][1] == 1.0:
            delta = self.sara_deltas[adapters[0][0]]
            if delta.values.requires_grad and torch.is_grad_enabled() and not torch.compiler.is_compiling():
                return self._live.get(base, delta.indices, delta.effective_values().to(base.dtype), **delta.state())
            return flat.index_put((delta.indices,), delta.effective_values().to(base.dtype)).view(base.shape)
        out = flat
        for name, weight in adapters:
            delta = self.sara_deltas[name]
            if weight == 0.0:
                continue
            change = (delta.effective_values().to(base.dtype) - flat[delta.indices]) * weight
            out = out.index_put((delta.indices,), change, accumulate=True)
        return out.view(base.shape)

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        return self.compose(base, self.effective_adapters())

    # -- fuse: write into the base, keep only the overwritten entries as the backup ---------------------------
    def merge(self, names: list[str], safe: bool = True) -> None:
        if self.merged_adapters:
            raise AdapterStateError("adapters are already fused; call unfuse() first")
        self._live.release()
        adapters = [(n, self.adapter_weights.get(n, 1.0)) for n in names if n in self.sara_deltas]
        if not adapters or self.disabled:
            return
        base = self._original()
        with torch.no_grad():
            new = self.compose(base, adapters)
            if safe and not torch.isfinite(new).all():
                raise AdapterStateError(f"fusing {names} gives non-finite values in {self.tensor_name}")
            positions = torch.unique(torch.cat([self.sara_deltas[n].indices.long() for n, _ in adapters]))
            flat = base.data.view(-1)
            self._merge_backup = {"positions": positions, "values": flat[positions].clone()}
            flat[positions] = new.reshape(-1)[positions]
        self.merged_adapters = [n for n, _ in adapters]

    def unmerge(self) -> None:
        self._live.release()
        if self._merge_backup:
            with torch.no_grad():
                self._original().data.view(-1)[self._merge_backup["positions"]] = self._merge_backup["values"]
        self._merge_backup = {}
        self.merged_adapters = []

    def _original(self) -> torch.Tensor:
        owner_list = self._parametrization_list
        if owner_list is None:
            raise AdapterStateError(f"{self.tensor_name}: the parametrisation is not attached to a module")
        return owner_list.original

    @property
    def _parametrization_list(self) -> Any:
        return self.__dict__.get("_plist")

    def attach(self, plist: nn.Module) -> None:
        self.__dict__["_plist"] = plist  # plain reference: not a submodule (that would be a cycle)

    def extra_repr(self) -> str:
        return f"{self.tensor_name}, adapters={self.adapter_names}, active={self.active_adapters}"


def sara_tensors(host: nn.Module) -> list[tuple[str, nn.Module, str, SaRATensor]]:
    """`(canonical name, owner, attribute, SaRATensor)` of every SaRA-parametrised tensor on `host`."""
    out = []
    for path, module in host.named_modules():
        if "parametrizations" in path.split(".") or not parametrize.is_parametrized(module):
            continue
        for attr, plist in module.parametrizations.items():
            for p in plist:
                if isinstance(p, SaRATensor):
                    out.append((canonical_name(path, attr), module, attr, p))
    return out


def attach(owner: nn.Module, attr: str, name: str, is_root: bool) -> SaRATensor:
    """The `SaRATensor` on `owner.<attr>`, registering one if there is none."""
    if parametrize.is_parametrized(owner, attr):
        for p in owner.parametrizations[attr]:
            if isinstance(p, SaRATensor):
                return p
        raise IncompatibleBaseError(f"{name} already has another parametrisation; SaRA cannot target it")
    layer = SaRATensor(name)
    cls_name = type(owner).__name__
    owner.__dict__.setdefault(_ORDER_ATTR, list(owner._parameters))
    parametrize.register_parametrization(owner, attr, layer, unsafe=True)
    if is_root:  # keep the host's class name: adapter signatures compare it
        type(owner).__name__ = cls_name
    layer.attach(owner.parametrizations[attr])
    return layer


def detach(owner: nn.Module, attr: str) -> None:
    """Remove SaRA's parametrisation of `owner.<attr>`; the original `Parameter` object comes back."""
    parametrize.remove_parametrizations(owner, attr, leave_parametrized=False)
    if not parametrize.is_parametrized(owner) and _ORDER_ATTR in owner.__dict__:
        order = owner.__dict__.pop(_ORDER_ATTR)  # put the parameters back in their original order
        params = dict(owner._parameters)
        owner._parameters.clear()
        for key in [k for k in order if k in params] + [k for k in params if k not in order]:
            owner._parameters[key] = params[key]
