"""Training arms of benchmarks/perf.py: one training step's time and peak memory, one fresh process per arm.

A step is what the trainer does per optimizer step, without data loading: forward on a fixed batch (pre-encoded
latents and text embeddings; SAM: pixels and a mask), the method's loss (SaRA: plus its nuclear-norm term through
its own training hooks, as `DiffusionAdapterRecipe` adds it), backward, gradient clipping, AdamW step, zero_grad.

Arms on a UNet: `full` (every UNet weight), `lora` (PEFT LoRA through diffusers' `add_adapter`, rank 8 on attention
and feed-forward projections, as benchmarks/sara_benchmark.py), `sara` (the selection quantile chosen so that
SaRA trains as many entries as that LoRA), `res_adapter`; `mv_adapter` (4 views) and `i2v_adapter` (8 frames,
frame 0 clean and masked out of the loss); on SAM `sam_adapter` and `sam_full`. The worker (`run_worker`) builds
the host and the batch, resets the memory high-water mark (see `_perf_timing`), sets the arm up, runs
`warmup + steps` steps and reports the timed steps and the peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import _perf_hosts as hosts
import torch
import torch.nn.functional as F
from _perf_timing import proc_kib, reset_peak, trim

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
ARMS = {  # host -> arms
    "sd": ("full", "lora", "sara", "sara_no_rank", "res_adapter"),
    "multiview": ("mv_adapter",),
    "video": ("i2v_adapter",),
    "sam": ("sam_adapter", "sam_full"),
}


# --------------------------------------------------------------------------------------------------- the arms
def _lora(unet: torch.nn.Module, rank: int = 8):
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS))
    return [p for p in unet.parameters() if p.requires_grad]


def lora_count(unet: torch.nn.Module) -> int:
    """Trainable elements of the `lora` arm on this UNet's architecture (counted on a meta copy)."""
    with torch.device("meta"):
        meta = type(unet).from_config(unet.config)
    meta.requires_grad_(False)
    return sum(p.numel() for p in _lora(meta))


def setup_arm(arm: str, model: torch.nn.Module) -> tuple[list, Any]:
    """Make `arm` trainable on `model`: `(parameters, hooks)` (hooks: SaRA's training hooks or None)."""
    import vadapters

    model.requires_grad_(False)
    if arm in ("full", "sam_full"):
        model.requires_grad_(True)
        return list(model.parameters()), None
    if arm == "lora":
        return _lora(model), None
    if arm in ("sara", "sara_no_rank"):
        from vadapters.methods.sara import SaRAConfig
        from vadapters.methods.sara.sparse import find_targets

        eligible = sum(t.base.numel() for t in find_targets(model, SaRAConfig()))
        config = SaRAConfig(quantile=lora_count(model) / eligible, lambda_rank=0.0 if arm == "sara_no_rank" else 5e-4)
    elif arm == "res_adapter":
        from vadapters.methods.res_adapter import ResAdapterConfig

        config = ResAdapterConfig()
    elif arm == "mv_adapter":
        from vadapters.methods.mv_adapter import MVAdapterConfig

        config = MVAdapterConfig(num_views=hosts.VIEWS, topology="row")
    elif arm == "i2v_adapter":
        from vadapters.methods.i2v_adapter import I2VAdapterConfig

        config = I2VAdapterConfig()
    elif arm == "sam_adapter":
        from vadapters.methods.sam_adapter import SAMAdapterConfig

        config = SAMAdapterConfig()
    else:
        raise ValueError(f"unknown training arm {arm!r}")
    vadapters.inject(model, config, adapter_name="trained")
    spec = vadapters.get_method(config.method)
    params = list(spec.injector_cls().adapter_parameters(model, "trained"))
    hooks = spec.training_hooks(model, "trained", seed=0) if spec.training_hooks else None
    return params, hooks


def build(host: str, size: str) -> tuple[torch.nn.Module, dict]:
    """The frozen host and a fixed training batch."""
    gen = torch.Generator().manual_seed(0)
    if host == "sam":
        sam = hosts.build_sam(size)
        side = sam.image_encoder.img_size
        batch = {"pixels": torch.randn(1, 3, side, side, generator=gen)}
        batch["mask"] = (torch.rand(1, side, side, generator=gen) > 0.5).float()
        return sam, batch
    if host == "video":
        unet = hosts.build_motion(size)
        return unet, hosts.unet_inputs(unet, 1, hosts.LATENT[size], frames=hosts.FRAMES[size])
    unet = hosts.build_sd(size)
    return unet, hosts.unet_inputs(unet, hosts.VIEWS if host == "multiview" else 1, hosts.LATENT[size])


def loss_fn(host: str, model: torch.nn.Module, batch: dict) -> torch.Tensor:
    if host == "sam":
        from vadapters.methods.sam_adapter.train import bce_iou_loss, predict_logits

        logits = predict_logits(model, batch["pixels"])[:, 0]
        return bce_iou_loss(logits, batch["mask"], torch.ones_like(batch["mask"]))
    target = torch.randn(batch["sample"].shape, generator=torch.Generator().manual_seed(1))
    if host == "multiview":
        from vadapters.methods.mv_adapter import multiview_state

        with multiview_state(model, num_views=hosts.VIEWS):
            prediction = model(**batch, return_dict=False)[0]
    else:
        prediction = model(**batch, return_dict=False)[0]
    if host == "video":  # frame 0 is the clean condition frame: out of the loss
        return F.mse_loss(prediction[:, :, 1:], target[:, :, 1:])
    return F.mse_loss(prediction, target)


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, measure, report (runs in a fresh process; see the module docstring)."""
    torch.set_num_threads(int(spec["threads"]))
    with open("/proc/self/oom_score_adj", "w") as fh:  # if memory runs out, this process goes first
        fh.write("1000")
    model, batch = build(spec["host"], spec["size"])
    model.train()
    trim()
    baseline = proc_kib("VmRSS")
    hwm_reset = reset_peak()
    params, hooks = setup_arm(spec["arm"], model)
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    if hooks is not None:
        hooks.on_train_begin(optimizer=optimizer, max_steps=10**9)  # no re-selection inside the timed steps
    walls, cpus = [], []
    for step in range(spec["warmup"] + spec["steps"]):
        c0, t0 = time.process_time(), time.perf_counter()
        if hooks is not None:
            hooks.before_loss(step)
        loss = loss_fn(spec["host"], model, batch)
        extra = hooks.extra_loss(step) if hooks is not None else None
        loss = loss if extra is None else loss + extra
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t1, c1 = time.perf_counter(), time.process_time()
        if step >= spec["warmup"]:
            walls.append(t1 - t0)
            cpus.append(c1 - c0)
    peak = (proc_kib("VmHWM") - baseline) * 1024 if hwm_reset else None
    state = sum(t.numel() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.ndim)
    top = None
    if spec.get("profile"):  # one more step under torch.profiler: where the step's time goes
        from perf import profile

        def one_step():
            loss = loss_fn(spec["host"], model, batch)
            extra = hooks.extra_loss(0) if hooks is not None else None
            (loss if extra is None else loss + extra).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        top = profile(one_step, top=15)
    rank_cost = nuclear_norm_cost(model) if spec["arm"] == "sara" else None
    return {
        **spec,
        "rank_cost": rank_cost,
        "wall": walls,
        "cpu": cpus,
        "peak_bytes": peak,
        "hwm_reset": hwm_reset,
        "trainable": sum(p.numel() for p in params),
        "optimizer_state": state,
        "profile": top,
    }


def nuclear_norm_cost(model: torch.nn.Module) -> dict[str, Any]:
    """The expected CPU time of SaRA's nuclear-norm term per step (one eligible matrix drawn uniformly, forward and
    backward): each distinct matrix shape timed once, weighted by how many eligible matrices have it. The timed
    steps draw their matrices by step number, so their own SVD cost depends on which two were drawn."""
    from vadapters.methods.sara.regularizers import eligible_matrices, matrix_nuclear_norm

    matrices = eligible_matrices(model, "trained", 64)
    by_shape: dict[tuple, list] = {}
    for _, owner, attr, delta in matrices:
        by_shape.setdefault(tuple(owner.parametrizations[attr].original.shape), []).append((owner, attr, delta))
    per_shape = {}
    for shape, items in by_shape.items():
        owner, attr, delta = items[0]
        with torch.no_grad():
            delta.values.add_(1e-3)  # a non-zero update, as after the first steps
        c0 = time.process_time()
        matrix_nuclear_norm(owner, attr, delta).backward()
        per_shape["x".join(map(str, shape))] = {"count": len(items), "cpu_s": time.process_time() - c0}
        delta.values.grad = None
    mean = sum(v["count"] * v["cpu_s"] for v in per_shape.values()) / max(1, len(matrices))
    return {"eligible": len(matrices), "mean_cpu_s": mean, "per_shape": per_shape}


# ---------------------------------------------------------------------------------------------------- parent
def mem_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def spawn(script: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one worker in a fresh process (one malloc arena: allocator noise below the differences measured)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MALLOC_ARENA_MAX": "1"}
    done = subprocess.run(
        [sys.executable, script, "--train-worker", json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=3600,
    )  # fmt: skip
    if done.returncode != 0:
        return {**spec, "error": done.stderr[-2000:] or f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def training(script: str, size: str, repeats: int, steps: int, threads: int, log, only=None) -> dict[str, Any]:
    """Every arm of every host (or the `HOST/ARM` names in `only`): `repeats` rounds of fresh processes, arms in
    rotating order."""
    runs: dict[str, list[dict]] = {}
    # real size: the SD 1.5 arms (the SaRA gates); MV / I2V / SAM training steps at real size cost minutes each
    # on 2 CPU cores (SAM ViT-B's is measured by benchmarks/sam_lean_memory.py)
    plan = [(h, a) for h, arms in ARMS.items() for a in arms if size == "tiny" or (h == "sd" and a != "res_adapter")]
    plan = [(h, a) for h, a in plan if only is None or f"{h}/{a}" in only]
    for round_ in range(repeats):
        shift = round_ % len(plan)
        for host, arm in plan[shift:] + plan[:shift]:
            spec = {"host": host, "arm": arm, "size": size, "steps": steps, "warmup": 1, "threads": threads}
            spec["profile"] = round_ == 0 and host == "sd" and arm in ("sara", "lora")  # one more step, profiled
            need = _need_bytes(host, arm, size)
            if need and mem_available() < need:
                result = {**spec, "error": f"skipped: needs about {need / 2**30:.1f} GiB, "
                                           f"{mem_available() / 2**30:.1f} GiB available"}  # fmt: skip
            else:
                result = spawn(script, spec)
            runs.setdefault(f"{host}/{arm}", []).append(result)
            log(f"  train {size} {host}/{arm}: " + (result.get("error", "")[:200] or _brief(result)))
    return runs


def _need_bytes(host: str, arm: str, size: str) -> int:
    """Memory a real-size SD 1.5 full fine-tune needs: fp32 weights, gradients, two AdamW moments (13.8 GB), and
    about 0.6 GB of activations at batch 1 (the worker runs first in line for the OOM killer all the same)."""
    if size != "real" or arm != "full":
        return 0
    return 4 * 4 * 860_000_000 + 600 * 2**20


def _brief(result: dict) -> str:
    import statistics

    peak = result["peak_bytes"]
    peak_text = f"{peak / 2**20:.0f} MiB" if peak is not None else "n/a"
    return f"step {statistics.median(result['wall']):.3f} s wall, peak {peak_text}"
