"""SaRA benchmark on the embedded tiny-sd (issue 4): premise, new-domain fit vs forgetting, memory, speed.

1. Premise (paper: the smallest-magnitude weights are "ineffective"): on the base UNet, zero the smallest q% of
   all weights (one global magnitude threshold) vs a random q% (3 draws), and report the change of the
   domain-A validation denoising loss.
2. Fine-tune from domain A (one large shape on a flat background, what tiny-sd is trained on) to domain B (the
   same shapes on a textured background, captions say "textured background") with equal step budgets and 3
   seeds: full fine-tune, peft LoRA (attention + FF, rank chosen by --lora-rank), SaRA with the quantile that
   matches LoRA's trainable count, random sparse selection with the same count, SaRA without the nuclear norm,
   SaRA without progressive re-selection. Validation denoising MSE on B (fit) and on A (forgetting) on fixed
   noise and timesteps, every --eval-every steps; "forgetting at equal fit" interpolates the A loss of SaRA and
   LoRA at the B loss both reached.
3. Cost: trainable count, optimizer-state and gradient elements kept by a step (exact); median step time with
   the variants interleaved step by step in one process; peak memory of training in a fresh single-threaded
   process per variant (glibc bytes in use sampled after every aten op, and the RSS high-water mark), at the
   benchmark batch and at batch 1; plus SaRA implemented with gradient hooks on full weights instead of the
   parametrisation, the alternative the implementation was chosen against.

The UNet is trained on pre-encoded latents and text embeddings (frozen VAE and text encoder), so every variant
pays only for its UNet steps. `vadapters.pipelines.load_pipeline(None)` gives the embedded tiny-sd, or the tiny
architecture with random weights when none is committed: then the base is first trained on domain A for
--pretrain-steps (full fine-tune), so "forgetting" means something.

Usage:
    python benchmarks/sara_benchmark.py --quick      # a couple of minutes on 2 CPU cores
    python benchmarks/sara_benchmark.py              # full: 3 seeds x 300 steps

Writes benchmarks/results/sara_benchmark[_quick].json and .md (command, seeds, machine, torch version).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import re
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
METHODS = ("full", "lora", "sara", "random_sparse", "sara_no_nuclear", "sara_no_progressive")


# ------------------------------------------------------------------------------------------------------- data
def domain_scenes(domain: str, n: int, seed: int):
    from vadapters.synthetic.scenes import ShapeScenes

    background = {"A": "flat", "B": "texture"}[domain]
    return ShapeScenes(n, seed=seed, max_shapes=1, background=background, min_size=0.4, max_size=0.7)


def encode_domain(pipe, domain: str, n: int, seed: int, size: int) -> dict[str, Any]:
    """Latents (VAE mean x scaling) and text embeddings of `n` scenes of `domain`."""
    import torch

    scenes = domain_scenes(domain, n, seed)
    images = torch.stack([scenes.render(i, size, size)["image"] for i in range(n)])
    captions = [scenes.caption(i) for i in range(n)]
    with torch.no_grad():
        latents = pipe.vae.encode(images).latent_dist.mean * pipe.vae.config.scaling_factor
        ids = pipe.tokenizer(
            captions, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids  # fmt: skip
        emb = pipe.text_encoder(ids)[0]
    return {"latents": latents, "emb": emb, "captions": captions}


class Denoising:
    """Epsilon-prediction DDPM loss on pre-encoded data; validation on fixed noise and timesteps."""

    def __init__(self, scheduler_config: dict, val: dict[str, dict], draws: int = 2, seed: int = 1234) -> None:
        import torch
        from diffusers import DDPMScheduler

        self.scheduler = DDPMScheduler.from_config(scheduler_config)
        self.steps = self.scheduler.config.num_train_timesteps
        self.val = {}
        g = torch.Generator().manual_seed(seed)
        for name, data in val.items():
            lat = data["latents"].repeat(draws, 1, 1, 1)
            emb = data["emb"].repeat(draws, 1, 1)
            noise = torch.randn(lat.shape, generator=g)
            t = torch.randint(0, self.steps, (lat.shape[0],), generator=g)
            self.val[name] = (self.scheduler.add_noise(lat, noise, t), t, emb, noise)

    def loss(self, unet, latents, emb, generator):
        import torch
        import torch.nn.functional as F

        noise = torch.randn(latents.shape, generator=generator)
        t = torch.randint(0, self.steps, (latents.shape[0],), generator=generator)
        pred = unet(self.scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=emb).sample
        return F.mse_loss(pred.float(), noise.float())

    def validate(self, unet, batch: int = 64) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        out = {}
        with torch.no_grad():
            for name, (noisy, t, emb, noise) in self.val.items():
                total = 0.0
                for i in range(0, noisy.shape[0], batch):
                    pred = unet(
                        noisy[i : i + batch], t[i : i + batch], encoder_hidden_states=emb[i : i + batch]
                    ).sample
                    total += float(F.mse_loss(pred, noise[i : i + batch], reduction="sum"))
                out[name] = total / noise.numel()
        return out


# ---------------------------------------------------------------------------------------------------- variants
class HookSparse:
    """SaRA's selection trained with gradient hooks on the full weights (the alternative to the parametrisation).

    The frozen weights keep `requires_grad=True` so autograd computes their full gradient; a post-accumulate
    hook moves `grad[idx]` into the sparse vector's `.grad` and frees the full one; after each optimizer step the
    values are written back into the weights in place. Benchmark-only: DDP would all-reduce full-size gradient
    buckets for those weights and never see the sparse gradients.
    """

    def __init__(self, unet, quantile: float) -> None:
        import torch

        from vadapters.methods.sara import SaRAConfig
        from vadapters.methods.sara.sparse import find_targets, select

        targets = find_targets(unet, SaRAConfig(quantile=quantile))
        _, indices = select(targets, SaRAConfig(quantile=quantile))
        unet.requires_grad_(False)
        self.pairs = []
        for target in targets:
            idx = indices.get(target.name)
            if idx is None:
                continue
            weight = target.base
            weight.requires_grad_(True)
            values = torch.nn.Parameter(weight.detach().reshape(-1)[idx.long()].clone())
            idx = idx.long()

            def hook(p, values=values, idx=idx):
                g = p.grad.reshape(-1)[idx]
                values.grad = g if values.grad is None else values.grad + g
                p.grad = None

            weight.register_post_accumulate_grad_hook(hook)
            self.pairs.append((weight, values, idx))
        self.params = [v for _, v, _ in self.pairs]

    def sync(self) -> None:
        import torch

        with torch.no_grad():
            for weight, values, idx in self.pairs:
                weight.view(-1)[idx] = values


def build_variant(method: str, base_unet, quantile: float, args, seed: int) -> dict[str, Any]:
    """A fresh copy of the base UNet set up for `method`: params, optimizer, optional SaRA hooks."""
    import torch

    import vadapters
    from vadapters.methods.sara import SaRAConfig, SaRAInjector, upstream_lr
    from vadapters.methods.sara.train import SaRATrainingHooks

    unet = copy.deepcopy(base_unet).train()
    hooks = sync = None
    index_elements = 0
    if method == "full":
        unet.requires_grad_(True)
        params, lr = list(unet.parameters()), args.lr_full
    elif method == "lora":
        from peft import LoraConfig

        torch.manual_seed(seed)
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=args.lora_rank, lora_alpha=args.lora_rank, target_modules=LORA_TARGETS))
        params, lr = [p for p in unet.parameters() if p.requires_grad], args.lr_lora
    elif method == "sara_hooks":
        hs = HookSparse(unet, quantile)
        params, lr, sync = hs.params, args.lr_sara or upstream_lr(_quantile_tau(base_unet, quantile)), hs.sync
        index_elements = sum(idx.numel() for *_, idx in hs.pairs)
    else:
        fields = {
            "quantile": quantile,
            "lambda_rank": args.lambda_rank,
            "rank_min_dim": args.rank_min_dim,
            "progressive_at": args.progressive_at,
        }
        if method == "random_sparse":
            fields.update(rule="random", random_seed=seed, progressive_at=None)
        elif method == "sara_no_nuclear":
            fields["lambda_rank"] = 0.0
        elif method == "sara_no_progressive":
            fields["progressive_at"] = None
        vadapters.inject(unet, SaRAConfig(**fields), adapter_name="sara")
        config = vadapters.get_adapter_config(unet, "sara")
        params = SaRAInjector().adapter_parameters(unet, "sara")
        lr = args.lr_sara or upstream_lr(config.realised_threshold)
        hooks = SaRATrainingHooks(unet, "sara", seed=seed)
        index_elements = sum(d.indices.numel() for d in SaRAInjector().deltas(unet, "sara").values())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if hooks is not None:
        hooks.on_train_begin(optimizer=optimizer, max_steps=args.steps)
    own = {id(p) for p in unet.parameters()}
    return {
        "unet": unet,
        "params": params,
        "outside": [p for p in params if id(p) not in own],  # HookSparse's vectors live outside the module
        "optimizer": optimizer,
        "hooks": hooks,
        "sync": sync,
        "lr": lr,
        "index_elements": index_elements,
    }


_TAU_CACHE: dict[tuple[int, float], float] = {}


def _quantile_tau(unet, quantile: float) -> float:
    key = (id(unet), quantile)
    if key not in _TAU_CACHE:
        from vadapters.methods.sara import SaRAConfig
        from vadapters.methods.sara.sparse import find_targets, select

        _TAU_CACHE[key] = select(find_targets(unet, SaRAConfig(quantile=quantile)), SaRAConfig(quantile=quantile))[0]
    return _TAU_CACHE[key]


def train_step(variant, task: Denoising, data, step: int, batch_size: int, generator) -> tuple[float, dict]:
    """One optimizer step; returns the loss and the element counts of what the step keeps."""
    import torch

    unet, hooks = variant["unet"], variant["hooks"]
    if hooks is not None:
        hooks.before_loss(step)
    idx = torch.randint(0, data["latents"].shape[0], (batch_size,), generator=generator)
    loss = task.loss(unet, data["latents"][idx], data["emb"][idx], generator)
    if hooks is not None:
        extra = hooks.extra_loss(step)
        if extra is not None:
            loss = loss + extra
    loss.backward()
    grads = sum(p.grad.numel() for p in [*unet.parameters(), *variant["outside"]] if p.grad is not None)
    torch.nn.utils.clip_grad_norm_(variant["params"], 1.0)
    variant["optimizer"].step()
    if variant["sync"] is not None:
        variant["sync"]()
    state = sum(t.numel() for s in variant["optimizer"].state.values() for k, t in s.items() if k != "step")
    variant["optimizer"].zero_grad(set_to_none=True)
    return float(loss.detach()), {"grad_elements": grads, "optimizer_state_elements": state}


# ------------------------------------------------------------------------------------------------- experiments
def premise(base_unet, task: Denoising, qs: list[float], draws: int) -> dict[str, Any]:
    """Validation loss on A after zeroing the smallest q of all weights vs a random q (mean over draws)."""
    import torch

    from vadapters.methods.sara import SaRAConfig
    from vadapters.methods.sara.sparse import find_targets, select

    base = task.validate(base_unet)
    rows = []
    for q in qs:
        row = {"q": q}
        for rule in ("magnitude", "random"):
            losses = []
            for draw in range(draws if rule == "random" else 1):
                unet = copy.deepcopy(base_unet)
                config = SaRAConfig(quantile=q, rule=rule, random_seed=draw)
                targets = find_targets(unet, config)
                _, indices = select(targets, config)
                with torch.no_grad():
                    for t in targets:
                        if t.name in indices:
                            t.base.view(-1)[indices[t.name].long()] = 0.0
                losses.append(task.validate(unet))
            row[rule] = {
                d: {"loss": statistics.fmean(x[d] for x in losses), "change": statistics.fmean(x[d] for x in losses) - base[d]}
                for d in ("A", "B")
            }  # fmt: skip
            if rule == "random":
                row[rule]["A"]["std"] = statistics.stdev([x["A"] for x in losses]) if len(losses) > 1 else 0.0
        rows.append(row)
    return {"base": base, "rows": rows, "random_draws": draws}


def finetune(method, base_unet, quantile, task, train_b, args, seed) -> dict[str, Any]:
    import torch

    variant = build_variant(method, base_unet, quantile, args, seed)
    generator = torch.Generator().manual_seed(10_000 + seed)
    curve = [{"step": 0, **task.validate(variant["unet"])}]
    losses = []
    start = time.perf_counter()
    for step in range(args.steps):
        loss, _ = train_step(variant, task, train_b, step, args.batch_size, generator)
        losses.append(loss)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            curve.append({"step": step + 1, **task.validate(variant["unet"])})
    trainable = sum(p.numel() for p in variant["params"])
    hooks = variant["hooks"]
    return {
        "method": method,
        "seed": seed,
        "lr": variant["lr"],
        "trainable": trainable,
        "curve": curve,
        "final_train_loss": statistics.fmean(losses[-max(1, len(losses) // 10) :]),
        "reselection": hooks.last_reselection if hooks is not None else None,
        "seconds": round(time.perf_counter() - start, 2),
    }


def forgetting_at_fit(run: dict, level: float) -> float | None:
    """A-loss increase at the first point where the B loss reaches `level` (linear in B between evaluations)."""
    curve = run["curve"]
    a0 = curve[0]["A"]
    for prev, cur in zip(curve, curve[1:]):
        if cur["B"] <= level:
            if prev["B"] == cur["B"]:
                return cur["A"] - a0
            w = (prev["B"] - level) / (prev["B"] - cur["B"])
            return prev["A"] + w * (cur["A"] - prev["A"]) - a0
    return None


def _hwm_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _proc_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"{field}:\s+(\d+)", fh.read()).group(1))


COST_VARIANTS = ("full", "lora", "sara", "sara_hooks")


def cost(base_unet, quantile, task, train_b, args) -> dict[str, Any]:
    """Step time (variants interleaved step by step, in this process) and peak memory (one fresh subprocess per
    variant: VmHWM of its training steps above the RSS with the frozen model and data loaded), plus exact
    element counts of what a step keeps."""
    import tempfile

    import torch

    variants = {m: build_variant(m, base_unet, quantile, args, 0) for m in COST_VARIANTS}
    generators = {m: torch.Generator().manual_seed(7) for m in COST_VARIANTS}
    times: dict[str, list[float]] = {m: [] for m in COST_VARIANTS}
    counts: dict[str, dict[str, int]] = {}
    for round_ in range(args.cost_rounds + 1):
        for m in COST_VARIANTS:
            t0 = time.perf_counter()
            _, counts[m] = train_step(variants[m], task, train_b, round_, args.batch_size, generators[m])
            if round_:  # round 0 warms up (optimizer state, allocator, kernels)
                times[m].append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        payload = os.path.join(tmp, "payload.pt")
        torch.save(
            {
                "config": dict(base_unet.config),
                "state": base_unet.state_dict(),
                "train_b": {k: train_b[k] for k in ("latents", "emb")},
                "val": task.val,
                "scheduler": dict(task.scheduler.config),
                "quantile": quantile,
                "args": vars(args),
            },
            payload,
        )
        memory = {m: _memory_in_subprocess(payload, m, args.batch_size) for m in COST_VARIANTS}
        small = {m: _memory_in_subprocess(payload, m, 1) for m in COST_VARIANTS}
        for m in COST_VARIANTS:
            memory[m]["peak_rss_mb_batch1"] = small[m]["peak_rss_mb"]
            memory[m]["peak_allocated_mb_batch1"] = small[m]["peak_allocated_mb"]
    out = {}
    for m in COST_VARIANTS:
        counts[m]["trainable"] = sum(p.numel() for p in variants[m]["params"])
        extra = counts[m]["index_elements"] = variants[m]["index_elements"]
        counts[m]["retained_state_elements"] = (
            counts[m]["optimizer_state_elements"] + counts[m]["grad_elements"] + extra
        )
        out[m] = {**counts[m], "step_seconds_median": statistics.median(times[m]), **memory[m]}
    return {"rounds": args.cost_rounds, "variants": out}


def _memory_in_subprocess(payload: str, variant: str, batch_size: int) -> dict[str, float]:
    """Peak RSS (MB) of training `variant` in a fresh single-threaded process with one malloc arena (so that
    allocator noise stays below the differences being measured)."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1"}
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", variant, "--memory-payload", payload]
    done = subprocess.run(
        [*cmd, "--batch-size", str(batch_size)],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"memory probe of {variant} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_child(variant: str, payload: str, batch_size: int) -> None:
    """Child process: rebuild the frozen UNet and data, set up `variant`, then measure the peak RSS of its
    training steps above the RSS before the set-up (so the variant's own tensors and optimizer state count)."""
    import ctypes
    import gc

    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils._python_dispatch import TorchDispatchMode

    data = torch.load(payload, weights_only=True)  # our own payload: tensors, dicts, lists and numbers only
    args = argparse.Namespace(**{**data["args"], "batch_size": batch_size})
    torch.set_num_threads(1)
    unet = UNet2DConditionModel.from_config(data["config"])
    unet.load_state_dict(data["state"])
    unet.requires_grad_(False).eval()
    task = Denoising.__new__(Denoising)
    from diffusers import DDPMScheduler

    task.scheduler = DDPMScheduler.from_config(data["scheduler"])
    task.steps = task.scheduler.config.num_train_timesteps
    task.val = data["val"]
    train_b = data["train_b"]
    del data
    gc.collect()
    with contextlib.suppress(OSError):  # non-glibc: no malloc_trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    inuse = _malloc_in_use()
    baseline, baseline_inuse = _proc_kb("VmRSS"), inuse()
    v = build_variant(variant, unet, args.matched_quantile, args, 0)
    gc.collect()  # the selection's transient copies are set-up, not training: drop them from the peak
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    reset = _hwm_reset()
    generator = torch.Generator().manual_seed(7)
    steps = max(3, args.cost_rounds)
    for step in range(steps):
        train_step(v, task, train_b, step, args.batch_size, generator)
    peak = _proc_kb("VmHWM")
    peak_inuse = [inuse()]

    class Sampler(TorchDispatchMode):  # allocator bytes in use after every aten op of one more step
        def __torch_dispatch__(self, func, types, args_=(), kwargs=None):
            out = func(*args_, **(kwargs or {}))
            peak_inuse[0] = max(peak_inuse[0], inuse())
            return out

    with Sampler():
        train_step(v, task, train_b, steps, args.batch_size, generator)
    print(
        json.dumps(
            {
                "peak_rss_mb": (peak - baseline) / 1024 if reset else float("nan"),
                "peak_allocated_mb": (peak_inuse[0] - baseline_inuse) / 2**20,
                "hwm_reset": reset,
            }
        )
    )


def _malloc_in_use():
    """A function giving glibc's bytes in use (`mallinfo2`: heap + mmap'd chunks), or NaN elsewhere."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                      "keepcost")
        ]  # fmt: skip

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return lambda: float("nan")

    def inuse() -> float:
        info = libc.mallinfo2()
        return float(info.uordblks + info.hblkhd)

    return inuse


# ---------------------------------------------------------------------------------------------------- reporting
def summarise(results: dict) -> dict[str, Any]:
    runs = results["runs"]
    table = {}
    for method in METHODS:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        fit = [r["curve"][-1]["B"] for r in rs]
        forget = [r["curve"][-1]["A"] - r["curve"][0]["A"] for r in rs]
        table[method] = {
            "trainable": rs[0]["trainable"],
            "lr": rs[0]["lr"],
            "B_loss": _ms(fit),
            "A_forgetting": _ms(forget),
            "B_start": statistics.fmean(r["curve"][0]["B"] for r in rs),
            "A_start": statistics.fmean(r["curve"][0]["A"] for r in rs),
        }
    equal = []
    for seed in sorted({r["seed"] for r in runs}):
        sara = next((r for r in runs if r["method"] == "sara" and r["seed"] == seed), None)
        lora = next((r for r in runs if r["method"] == "lora" and r["seed"] == seed), None)
        if sara and lora:
            level = max(sara["curve"][-1]["B"], lora["curve"][-1]["B"])
            equal.append(
                {"seed": seed, "B_level": level, "sara": forgetting_at_fit(sara, level), "lora": forgetting_at_fit(lora, level)}
            )  # fmt: skip
    c = results["cost"]["variants"]
    claims = {
        "retained_state_sara_over_full": c["sara"]["retained_state_elements"] / c["full"]["retained_state_elements"],
        "peak_allocated_sara_over_full": c["sara"]["peak_allocated_mb"] / c["full"]["peak_allocated_mb"],
        "peak_allocated_batch1_sara_over_full": c["sara"]["peak_allocated_mb_batch1"]
        / c["full"]["peak_allocated_mb_batch1"],
        "peak_rss_sara_over_full": c["sara"]["peak_rss_mb"] / c["full"]["peak_rss_mb"],
        "peak_rss_batch1_sara_over_full": c["sara"]["peak_rss_mb_batch1"] / c["full"]["peak_rss_mb_batch1"],
        "step_time_sara_over_lora": c["sara"]["step_seconds_median"] / c["lora"]["step_seconds_median"],
        "step_time_sara_over_full": c["sara"]["step_seconds_median"] / c["full"]["step_seconds_median"],
        "step_time_hooks_over_parametrisation": c["sara_hooks"]["step_seconds_median"]
        / c["sara"]["step_seconds_median"],
        "peak_allocated_hooks_over_parametrisation": c["sara_hooks"]["peak_allocated_mb"]
        / c["sara"]["peak_allocated_mb"],
        "forgetting_at_equal_fit": equal,
    }
    sara_less = [e for e in equal if e["sara"] is not None and e["lora"] is not None]
    claims["goals"] = {
        "retained_state_at_most_one_third_of_full": claims["retained_state_sara_over_full"] <= 1 / 3,
        "peak_step_memory_below_full": claims["peak_allocated_sara_over_full"] < 1,
        "step_time_within_1.3x_lora": claims["step_time_sara_over_lora"] <= 1.3,
        "less_forgetting_than_lora_at_equal_fit": bool(sara_less) and all(e["sara"] < e["lora"] for e in sara_less),
        "less_forgetting_seeds": f"{sum(e['sara'] < e['lora'] for e in sara_less)} of {len(sara_less)}",
    }
    return {"table": table, "claims": claims}


def _ms(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def markdown(results: dict, summary: dict) -> str:
    lines = [
        f"# {results['name']}",
        "",
        f"`{results['command']}` on {results['machine']}, {results['seconds']} s.",
        "",
        f"Base: {results['base']}. Domain A: one large shape on a flat background; domain B: the same on a textured"
        f" background. {results['settings']['steps']} steps, batch {results['settings']['batch_size']}, seeds "
        f"{results['settings']['seeds']}; validation on {results['settings']['n_val']} items x 2 noise draws per domain.",
        "",
        "## Premise: zero the smallest q% vs a random q% of all UNet weights (domain-A loss change)",
        "",
        f"Base validation loss: A {results['premise']['base']['A']:.4f}, B {results['premise']['base']['B']:.4f}.",
        "",
        "| q | smallest q%: A change | random q%: A change (mean +- std over draws) |",
        "|---|---|---|",
    ]
    for row in results["premise"]["rows"]:
        lines.append(
            f"| {row['q']:.0%} | {row['magnitude']['A']['change']:+.5f} | "
            f"{row['random']['A']['change']:+.5f} +- {row['random']['A']['std']:.5f} |"
        )
    lines += [
        "",
        "## Fine-tuning A -> B (mean +- std over seeds; lower is better)",
        "",
        "| method | trainable | lr | B loss (start -> end) | A forgetting (end - start) |",
        "|---|---|---|---|---|",
    ]
    for m, row in summary["table"].items():
        lines.append(
            f"| {m} | {row['trainable']:,} | {row['lr']:.2e} | {row['B_start']:.4f} -> {row['B_loss']['mean']:.4f} +- "
            f"{row['B_loss']['std']:.4f} | {row['A_forgetting']['mean']:+.4f} +- {row['A_forgetting']['std']:.4f} |"
        )
    claims = summary["claims"]
    lines += [
        "",
        "Forgetting at equal fit (A-loss increase where the B loss reaches the level both runs reached):",
        "",
    ]
    for e in claims["forgetting_at_equal_fit"]:
        f = lambda v: "n/a" if v is None else f"{v:+.5f}"  # noqa: E731
        lines.append(f"- seed {e['seed']}: B level {e['B_level']:.4f}: SaRA {f(e['sara'])}, LoRA {f(e['lora'])}")
    c = results["cost"]["variants"]
    lines += [
        "",
        f"## Cost (step time: one process, variants interleaved over {results['cost']['rounds']} steps, median; "
        "memory: one fresh single-threaded process per variant, peak above the frozen model + data of its training "
        "steps - glibc bytes in use sampled after every aten op, and RSS high-water mark)",
        "",
        "| variant | trainable | optimizer state | grads kept by a step | index elements | retained total "
        f"| peak allocated / RSS, batch {results['settings']['batch_size']} (MB) | same, batch 1 (MB) | step time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, v in c.items():
        lines.append(
            f"| {m} | {v['trainable']:,} | {v['optimizer_state_elements']:,} | {v['grad_elements']:,} | "
            f"{v['index_elements']:,} | {v['retained_state_elements']:,} | {v['peak_allocated_mb']:.1f} / "
            f"{v['peak_rss_mb']:.1f} | {v['peak_allocated_mb_batch1']:.1f} / {v['peak_rss_mb_batch1']:.1f} | "
            f"{v['step_seconds_median']:.4f} |"
        )
    g = claims["goals"]
    lines += [
        "",
        "## The issue's goals, as measured here",
        "",
        f"- Retained training state SaRA / full: {claims['retained_state_sara_over_full']:.3f} "
        f"(goal <= 1/3: {'met' if g['retained_state_at_most_one_third_of_full'] else 'NOT met'}).",
        f"- Peak memory of a training step SaRA / full (allocator bytes in use above the frozen model): "
        f"{claims['peak_allocated_sara_over_full']:.3f} (goal < 1: "
        f"{'met' if g['peak_step_memory_below_full'] else 'NOT met'}); at batch 1, where activations weigh less "
        f"against the parameter state: {claims['peak_allocated_batch1_sara_over_full']:.3f}. Peak RSS ratios: "
        f"{claims['peak_rss_sara_over_full']:.3f} and {claims['peak_rss_batch1_sara_over_full']:.3f}.",
        f"- Step time SaRA / LoRA: {claims['step_time_sara_over_lora']:.3f} "
        f"(goal <= 1.3: {'met' if g['step_time_within_1.3x_lora'] else 'NOT met'}); SaRA / full: "
        f"{claims['step_time_sara_over_full']:.3f}.",
        f"- Less forgetting than LoRA at equal fit: {g['less_forgetting_seeds']} seeds "
        f"({'met' if g['less_forgetting_than_lora_at_equal_fit'] else 'NOT met'}).",
        f"- Gradient hooks vs parametrisation: step time {claims['step_time_hooks_over_parametrisation']:.3f}x, "
        f"peak memory {claims['peak_allocated_hooks_over_parametrisation']:.3f}x (the parametrisation is kept: hooks "
        "need requires_grad on the full weights, which breaks DDP; see vadapters/methods/sara/sparse.py).",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that everything runs")
    parser.add_argument("--pipeline", default=None, help="diffusers folder (default: the embedded tiny-sd)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-val", type=int, default=None)
    parser.add_argument("--size", type=int, default=32, help="image size (latents are size / 2 for tiny-sd)")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="domain-A steps for a random base")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lr-full", type=float, default=1e-4)
    parser.add_argument("--lr-lora", type=float, default=1e-3)
    parser.add_argument("--lr-sara", type=float, default=None, help="default: upstream 1e-3*exp(-350*threshold)")
    parser.add_argument("--lambda-rank", type=float, default=5e-4)
    parser.add_argument("--rank-min-dim", type=int, default=16, help="tiny-sd matrices are at most 64 wide")
    parser.add_argument("--progressive-at", type=float, default=0.5)
    parser.add_argument("--cost-rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default=None)
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-payload", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.memory_payload, args.batch_size)
        return {}
    q = args.quick
    args.steps = args.steps or (6 if q else 300)
    args.batch_size = args.batch_size or (8 if q else 16)
    args.seeds = args.seeds or (1 if q else 3)
    args.eval_every = args.eval_every or (3 if q else 50)
    args.n_train = args.n_train or (32 if q else 256)
    args.n_val = args.n_val or (8 if q else 64)
    args.cost_rounds = args.cost_rounds or (2 if q else 20)
    name = args.name or ("sara_benchmark_quick" if q else "sara_benchmark")
    torch.set_num_threads(args.threads)
    start = time.time()

    from vadapters.models.weights import read_manifest
    from vadapters.pipelines import load_pipeline

    pipe = load_pipeline(args.pipeline)
    embedded = args.pipeline is not None or "tiny-sd" in read_manifest()["entries"]
    train_a = encode_domain(pipe, "A", args.n_train, 0, args.size)
    train_b = encode_domain(pipe, "B", args.n_train, 1, args.size)
    val = {
        "A": encode_domain(pipe, "A", args.n_val, 100, args.size),
        "B": encode_domain(pipe, "B", args.n_val, 101, args.size),
    }
    task = Denoising(pipe.scheduler.config, val)
    base_unet = pipe.unet.eval()
    base_desc = args.pipeline or "embedded tiny-sd"
    pretrain = {}
    if not embedded:  # a random base has no domain to forget: teach it domain A first
        steps = args.pretrain_steps if args.pretrain_steps is not None else (20 if q else 600)
        base_unet.requires_grad_(True).train()
        opt = torch.optim.AdamW(base_unet.parameters(), lr=5e-4)
        g = torch.Generator().manual_seed(99)
        for _ in range(steps):
            idx = torch.randint(0, args.n_train, (args.batch_size,), generator=g)
            loss = task.loss(base_unet, train_a["latents"][idx], train_a["emb"][idx], g)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        base_unet.requires_grad_(False).eval()
        pretrain = {"steps": steps, "lr": 5e-4, "val_after": task.validate(base_unet)}
        base_desc = (
            f"tiny architecture with random weights (no tiny-sd committed), pretrained {steps} steps on domain A"
        )

    total = sum(p.numel() for p in base_unet.parameters())
    probe = build_variant("lora", base_unet, 0.1, args, 0)
    lora_count = sum(p.numel() for p in probe["params"])
    quantile = lora_count / total
    del probe
    args.matched_quantile = quantile

    results: dict[str, Any] = {
        "name": name,
        "command": " ".join(["python", *sys.argv]) if argv is None else "main(" + " ".join(argv) + ")",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}",
        "base": base_desc,
        "pretrain": pretrain,
        "settings": {
            **vars(args),
            "seeds": list(range(args.seeds)),
            "unet_parameters": total,
            "lora_targets": LORA_TARGETS,
            "matched_quantile": quantile,
        },
    }
    print(
        f"base: {base_desc}; UNet {total:,} params; LoRA r={args.lora_rank}: {lora_count:,} -> SaRA q={quantile:.4f}"
    )
    results["premise"] = premise(base_unet, task, [0.05, 0.1, 0.2], draws=2 if q else 3)
    print("premise:", json.dumps(results["premise"]["rows"])[:300])
    runs = []
    for seed in range(args.seeds):
        for method in METHODS:
            torch.manual_seed(seed)
            run = finetune(method, base_unet, quantile, task, train_b, args, seed)
            print(f"seed {seed} {method:<20} B {run['curve'][0]['B']:.4f}->{run['curve'][-1]['B']:.4f}  "
                  f"A {run['curve'][0]['A']:.4f}->{run['curve'][-1]['A']:.4f}  {run['seconds']} s")  # fmt: skip
            runs.append(run)
    results["runs"] = runs
    results["cost"] = cost(base_unet, quantile, task, train_b, args)
    results["seconds"] = round(time.time() - start, 1)
    summary = summarise(results)
    results["summary"] = summary
    os.makedirs("benchmarks/results", exist_ok=True)
    with open(f"benchmarks/results/{name}.json", "w") as fh:
        json.dump(results, fh, indent=2, default=float)
    md = markdown(results, summary)
    with open(f"benchmarks/results/{name}.md", "w") as fh:
        fh.write(md)
    print(md)
    return results


if __name__ == "__main__":
    main()
