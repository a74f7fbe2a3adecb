"""Shared by the SaRA benchmark's parts: domain data, the denoising task, the fine-tuning variants and one step.

Imported by sibling scripts run as `python benchmarks/<name>.py` (the script's folder is on sys.path).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

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


def build_variant(method: str, base_unet, quantile: float, args, seed: int, lr: float) -> dict[str, Any]:
    """A fresh copy of the base UNet set up for `method` at learning rate `lr`: params, optimizer, SaRA hooks."""
    import torch

    import vadapters
    from vadapters.methods.sara import SaRAConfig, SaRAInjector
    from vadapters.methods.sara.train import SaRATrainingHooks

    unet = copy.deepcopy(base_unet).train()
    hooks = sync = None
    index_elements = 0
    if method == "full":
        unet.requires_grad_(True)
        params = list(unet.parameters())
    elif method == "lora":
        from peft import LoraConfig

        torch.manual_seed(seed)
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=args.lora_rank, lora_alpha=args.lora_rank, target_modules=LORA_TARGETS))
        params = [p for p in unet.parameters() if p.requires_grad]
    elif method == "sara_hooks":
        hs = HookSparse(unet, quantile)
        params, sync = hs.params, hs.sync
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
        params = SaRAInjector().adapter_parameters(unet, "sara")
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


def finetune(method, base_unet, quantile, task, train_b, args, seed, lr) -> dict[str, Any]:
    """Train `method` on domain B for `args.steps` steps at `lr`; the validation curve every `args.eval_every`."""
    import torch

    variant = build_variant(method, base_unet, quantile, args, seed, lr)
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


def forgetting_at_fit(run: dict, level: float, a: str = "A", b: str = "B") -> float | None:
    """`a`-loss increase at the first point where the `b` loss reaches `level` (linear in B between evaluations);
    None when the run never reaches it."""
    curve = run["curve"]
    a0 = curve[0][a]
    if curve[0][b] <= level:
        return 0.0
    for prev, cur in zip(curve, curve[1:]):
        if cur[b] <= level:
            if prev[b] == cur[b]:
                return cur[a] - a0
            w = (prev[b] - level) / (prev[b] - cur[b])
            return prev[a] + w * (cur[a] - prev[a]) - a0
    return None
