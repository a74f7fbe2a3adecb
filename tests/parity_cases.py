"""The calls compared with the official code, shared by `tests/test_parity_*.py` (which assert the tolerances) and
`benchmarks/parity.py` (which records the differences in `benchmarks/results/parity.json`).

Each function repeats the call its fixture's README describes, through the public path a user takes (official-layout
files written to disk and loaded with `vadapters.load` or the method's official import), and returns the largest
absolute differences from the official outputs, by quantity. Keys named `effect...` are how far the official output
lies from the base: far above the tolerance, they show that a comparison can fail.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from parity_fixtures import Parity, max_abs, write_official

import vadapters

# -------------------------------------------------------------------------------------------------- MV-Adapter
MV_CASES = ("row_v4_noref", "row_v4_ref", "row_v6_noref", "row_v6_ref", "rowcol_v6_noref", "rowcol_v6_ref")


def mv_host(fixture: Parity):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**fixture.spec["host"]["config"])
    unet.load_state_dict(fixture.group("host/"), strict=True)
    return unet.eval()


def mv_checkpoint(fixture: Parity, reference: bool) -> dict[str, torch.Tensor]:
    """The official i2mv / ig2mv key set, or the t2mv / tg2mv one (the same without the `_ref.` keys)."""
    tensors = fixture.group("official_ckpt/")
    return tensors if reference else {k: v for k, v in tensors.items() if "_ref." not in k}


def mv_load_case(fixture: Parity, case: dict, folder: pathlib.Path):
    """The host with the case's official file loaded the way a user would (a neutral file name: the topology is not
    in an official file, so the geometry cases pass it as the official scripts pick the processor)."""
    unet = mv_host(fixture)
    path = write_official(mv_checkpoint(fixture, case["reference"]), folder / "mvadapter_checkpoint.safetensors")
    overrides = {"topology": "rowcol6"} if case["topology"] == "rowcol6" else {}
    vadapters.load(unet, path, **overrides)
    return unet


def mv_plain(fixture: Parity, views: int) -> float:
    """The plain host against the official base output (no adapter)."""
    unet, inputs = mv_host(fixture), fixture.group(f"inputs/v{views}/")
    with torch.no_grad():
        out = unet(inputs["latents"], inputs["timesteps"], encoder_hidden_states=inputs["encoder_hidden_states"])
    return max_abs(out.sample, fixture[f"outputs/v{views}/base"])


def mv_case(fixture: Parity, name: str, folder: pathlib.Path) -> dict[str, float]:
    """One UNet call of the official guidance batch under `multiview_state`, with the intermediate tensors."""
    from vadapters.methods.mv_adapter import condition_residuals, multiview_state, record_reference

    case = fixture.spec["cases"][name]
    views = case["num_views"]
    inputs = fixture.group(f"inputs/v{views}/")
    unet = mv_load_case(fixture, case, folder)
    state, diffs = {"num_views": views, "mv_scale": case["mv_scale"]}, {}
    if case["reference"]:
        states = inputs["encoder_hidden_states"][-1:]
        cache = record_reference(unet, inputs["reference_latents"], states, inputs["reference_timestep"])
        diffs["reference_cache"] = max(
            max_abs(value, fixture[f"outputs/v{views}/reference_cache/{key}"]) for key, value in cache.items()
        )
        zero_first = {k: torch.cat([torch.zeros_like(v), v]) for k, v in cache.items()}  # object 0: unconditional
        state |= {"ref_scale": case["ref_scale"], "reference": zero_first}
    # The T2I-Adapter condition encoder's first conv sums 3 x 3 x 384 products; on CPUs without AVX-512 oneDNN's
    # float32 kernels land further from the official output than torch's native ones, which are the ones compared
    # (`condition_features`); oneDNN's distance is recorded beside it.
    for key, onednn in (("condition_features", False), ("condition_features_onednn", True)):
        with torch.no_grad(), torch.backends.mkldnn.flags(enabled=onednn):
            features = condition_residuals(unet, inputs["control"], 1.0)
        official = fixture.group(f"outputs/v{views}/condition_features/")
        assert len(features) == len(official), (len(features), len(official))
        diffs[key] = max(max_abs(feature, official[str(level)]) for level, feature in enumerate(features))
    args = (inputs["latents"], inputs["timesteps"])
    with torch.no_grad():
        with multiview_state(unet, **state):
            plain = unet(*args, encoder_hidden_states=inputs["encoder_hidden_states"]).sample
        with multiview_state(unet, **state, condition=inputs["control"], condition_scale=case["condition_scale"]):
            out = unet(*args, encoder_hidden_states=inputs["encoder_hidden_states"]).sample
    diffs["output_without_condition"] = max_abs(plain, fixture[f"outputs/{name}/official_without_condition"])
    diffs["output"] = max_abs(out, fixture[f"outputs/{name}/official"])
    diffs["effect"] = max_abs(out, fixture[f"outputs/v{views}/base"])
    return diffs


def mv_camera(fixture: Parity, views: int) -> dict[str, float]:
    """`camera_maps(..., convention="official")` against the official maps; vadapters' own (y-up) convention is
    a different code for the same rig (`default_convention`, 0.5 at 0 and 180 degrees)."""
    from vadapters.methods.mv_adapter.cameras import camera_maps, orbit_cameras

    group = fixture.group(f"camera/v{views}/")
    cameras = orbit_cameras(group["azimuth_deg"].tolist(), group["elevation_deg"].tolist())
    official, size = group["maps"], group["maps"].shape[-1]
    return {
        "camera_maps": max_abs(camera_maps(cameras, size, size, convention="official"), official),
        "default_convention": max_abs(camera_maps(cameras, size, size), official),
    }


# ------------------------------------------------------------------------------------------------- I2V-Adapter
I2V_LAYERS = (
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1",
    "mid_block.attentions.0.transformer_blocks.0.attn1",
)


def i2v_host(fixture: Parity):
    from diffusers import UNetMotionModel

    unet = UNetMotionModel(**fixture.spec["host"]["config"])
    unet.load_state_dict(fixture.group("host/"), strict=True)
    return unet.requires_grad_(False).eval()


def i2v_adapted(fixture: Parity, folder: pathlib.Path):
    """The host with the official `to_q_ff` / `to_out_ff` file loaded by `vadapters.load`."""
    unet = i2v_host(fixture)
    path = write_official(fixture.group("official_ckpt/"), folder / "i2v_module.safetensors")
    vadapters.load(unet, path, adapter_name="official")
    return unet


def i2v_unet_call(unet, fixture: Parity) -> torch.Tensor:
    inputs = fixture.group("inputs/unet/")
    with torch.no_grad():
        return unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"]).sample


def i2v_module(adapted, fixture: Parity, layer: str) -> dict[str, float]:
    """One adapted `attn1` on the stored `(clips * frames, tokens, C)` input, 8 frames per clip; at scale 0 it is
    the base module."""
    from vadapters.methods.i2v_adapter import i2v_state

    hidden, attn = fixture[f"inputs/module/{layer}/hidden_states"], adapted.get_submodule(layer)
    diffs = {}
    for key, scale, target in (("module", None, "official"), ("module_scale_0", 0.0, "base")):
        with torch.no_grad(), i2v_state(adapted, scale=scale, num_frames=8):
            diffs[key] = max_abs(attn(hidden), fixture[f"outputs/module/{layer}/{target}"])
    return diffs


def i2v_prior(fixture: Parity) -> dict[str, float]:
    """The Frame Similarity Prior on the official infer.yaml DDIM at 25 steps, frame 0 clean."""
    from diffusers import DDIMScheduler

    from vadapters.methods.i2v_adapter.sampling import degrade_prior, first_timestep_strength, prior_latents

    fsp, expected = fixture.group("inputs/fsp/"), fixture.group("outputs/fsp/")
    first, frames, seed = fsp["first_frame_latents"][:, :, 0], fsp["noise"].shape[2], int(fsp["generator_seed"])
    repeated = first[:, :, None].expand(-1, -1, frames, -1, -1)
    degraded = degrade_prior(repeated, 0.5, 18.0, 9, torch.Generator().manual_seed(seed))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear")
    scheduler.set_timesteps(25)
    latents = prior_latents(
        first, fsp["noise"], first_timestep_strength(scheduler), generator=torch.Generator().manual_seed(seed)
    )
    latents[:, :, 0] = first
    return {
        "prior_degraded": max_abs(degraded[:, :, 1:], expected["degraded"][:, :, 1:]),  # official restores frame 0
        "first_timestep": abs(int(scheduler.timesteps[0]) - int(expected["first_timestep"])),
        "alphas_cumprod": max_abs(scheduler.alphas_cumprod, expected["alphas_cumprod"]),
        "prior_latents": max_abs(latents, expected["initial_latents"]),
        "effect_prior": max_abs(latents[:, :, 1:], fsp["noise"][:, :, 1:]),
    }


# -------------------------------------------------------------------------------------------------------- SaRA
def sara_host(fixture: Parity):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**fixture.spec["host"]["config"])
    unet.load_state_dict(fixture.group("host/"), strict=True)
    return unet.train()


def sara_positions(fixture: Parity) -> list[str]:
    """Position i of the official files = the i-th of the host's `parameters()` (the spec lists their names)."""
    return fixture.spec["positions"]["names"]


def sara_weight(unet, name: str) -> torch.Tensor:
    path, _, attr = name.rpartition(".")
    return getattr(unet.get_submodule(path), attr).detach()


def sara_output(unet, fixture: Parity) -> torch.Tensor:
    inputs = fixture.group("inputs/")
    with torch.no_grad():
        return unet(
            inputs["sample"], inputs["timesteps"], encoder_hidden_states=inputs["encoder_hidden_states"]
        ).sample


def sara_official_weights(fixture: Parity, group: str) -> dict[str, torch.Tensor]:
    """The host's weights with a save_params() file's values written into the selected entries (row-major)."""
    saved, out = fixture.group(group), {}
    threshold = float(saved["threshold"])
    for i, name in enumerate(sara_positions(fixture)):
        weight = fixture[f"host/{name}"].clone()
        flat = weight.view(-1)
        flat[flat.abs() < threshold] = saved[str(i)]
        out[name] = weight
    return out


def sara_step(fixture: Parity):
    """The host after one vadapters SaRA step (the official adamw2 hyper-parameters): (unet, deltas, the
    value-vector gradients of that step, the loss before it)."""
    from vadapters.methods.sara import SaRAConfig
    from vadapters.methods.sara.config import upstream_lr
    from vadapters.methods.sara.model import SaRAInjector
    from vadapters.methods.sara.train import install_pin_hook

    step, threshold = fixture.spec["optimizer_step"], fixture.spec["selection"]["threshold"]
    unet = sara_host(fixture)
    vadapters.inject(unet, SaRAConfig(threshold=threshold, lambda_rank=0.0, progressive_at=None), "sara")
    params = list(SaRAInjector().adapter_parameters(unet, "sara"))
    betas, eps, decay = tuple(step["betas"]), step["eps"], step["weight_decay"]
    optimizer = torch.optim.AdamW(params, lr=upstream_lr(threshold), betas=betas, eps=eps, weight_decay=decay)
    install_pin_hook(optimizer, unet, "sara")
    inputs = fixture.group("inputs/")
    out = unet(inputs["sample"], inputs["timesteps"], encoder_hidden_states=inputs["encoder_hidden_states"]).sample
    loss = torch.nn.functional.mse_loss(out, inputs["target"])
    loss.backward()
    deltas = SaRAInjector().deltas(unet, "sara")
    grads = {name: delta.values.grad.clone() for name, delta in deltas.items()}
    optimizer.step()
    return unet, deltas, grads, float(loss.detach())


def sara_step_diffs(fixture: Parity, stepped) -> dict[str, float]:
    """The step against the official adamw2: selected counts, loss, gradients at the selected entries, value
    vectors, weights (unselected entries must not move at all) and the UNet output."""
    unet, deltas, grads, loss = stepped
    names, counts = sara_positions(fixture), fixture["official/selected_count_per_position"].tolist()
    saved, expected = fixture.group("official_save_params/"), sara_official_weights(fixture, "official_save_params/")
    threshold = fixture.spec["selection"]["threshold"]
    diffs = {
        "selected_count": max(abs((deltas[n].nnz if n in deltas else 0) - c) for n, c in zip(names, counts)),
        "selected_total": sum(d.nnz for d in deltas.values()),
        "loss": abs(loss - float(fixture["outputs/loss_before_step"])),
        "gradients": 0.0,
        "values": 0.0,
        "weights": 0.0,
        "unselected_change": 0.0,
    }
    for i, name in enumerate(names):
        official_grad = fixture[f"official/grad_at_selected/{i}"]
        if name in deltas:
            diffs["gradients"] = max(diffs["gradients"], max_abs(grads[name], official_grad))
            diffs["values"] = max(diffs["values"], max_abs(deltas[name].values.detach(), saved[str(i)]))
        elif official_grad.numel():
            diffs["gradients"] = float("inf")  # the official selects entries here, vadapters none
        weight, host = sara_weight(unet, name), fixture[f"host/{name}"]
        diffs["weights"] = max(diffs["weights"], max_abs(weight, expected[name]))
        unselected = host.abs() >= threshold
        diffs["unselected_change"] = max(diffs["unselected_change"], max_abs(weight[unselected], host[unselected]))
    out = sara_output(unet, fixture)
    diffs["output"] = max_abs(out, fixture["outputs/after_step/unet_output"])
    diffs["effect"] = max_abs(out, fixture["outputs/before_step/unet_output"])
    return diffs


def sara_import(fixture: Parity, group: str) -> dict[str, float]:
    """An official `save_params()` file (adamw2's or UB's) through `load_official` on a fresh host."""
    from vadapters.methods.sara.conversion import load_official

    unet = sara_host(fixture)
    load_official(unet, fixture.group(group), adapter_name="imported")
    expected = sara_official_weights(fixture, group)
    target = "outputs/after_step_ub/unet_output" if "ub" in group else "outputs/after_step/unet_output"
    return {
        "weights": max(max_abs(sara_weight(unet, n), expected[n]) for n in sara_positions(fixture)),
        "output": max_abs(sara_output(unet, fixture), fixture[target]),
    }


# ------------------------------------------------------------------------------------------------- SAM-Adapter
def sam_host(fixture: Parity):
    """A tiny segment-anything `Sam` whose image encoder holds the fixture's host weights."""
    from vadapters.models import tiny_sam

    cfg = fixture.spec["host"]["config"]
    assert (cfg["in_chans"], cfg["mlp_ratio"], cfg["qkv_bias"], cfg["use_rel_pos"]) == (3, 4.0, True, True)
    sam = tiny_sam(
        img_size=cfg["img_size"],
        patch_size=cfg["patch_size"],
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["num_heads"],
        window_size=cfg["window_size"],
        global_attn_indexes=tuple(cfg["global_attn_indexes"]),
        prompt_dim=cfg["out_chans"],
    )
    sam.image_encoder.load_state_dict(fixture.group("host/"), strict=True)
    return sam.eval()


def sam_official(fixture: Parity, folder: pathlib.Path, **overrides):
    """The host with the official-layout prompt generator loaded by `vadapters.load` (adapter "official")."""
    sam = sam_host(fixture)
    path = write_official(fixture.group("official_ckpt/"), folder / "sam_adapter_official.safetensors")
    vadapters.load(sam, path, adapter_name="official", **overrides)
    return sam


def sam_encode(sam, fixture: Parity) -> torch.Tensor:
    with torch.no_grad():
        return sam.image_encoder(fixture["inputs/images"])


def sam_prompts(sam, fixture: Parity) -> list[torch.Tensor]:
    """Prompt i is what the adapter adds to the input of block i (block input minus the previous block's output,
    or minus the patch + position embedding for block 0), shaped as the official `get_prompt` output."""
    encoder, inputs, outputs = sam.image_encoder, {}, {}
    blocks = list(enumerate(encoder.blocks))
    hooks = [b.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0])) for i, b in blocks]
    hooks += [b.register_forward_hook(lambda m, a, o, i=i: outputs.__setitem__(i, o)) for i, b in blocks]
    images = fixture["inputs/images"]
    try:
        with torch.no_grad():
            encoder(images)
            embedded = encoder.patch_embed(images) + encoder.pos_embed
    finally:
        for hook in hooks:
            hook.remove()
    prompts = [inputs[i] - (embedded if i == 0 else outputs[i - 1]) for i in range(len(encoder.blocks))]
    return [p.reshape(fixture[f"outputs/prompts/{i}"].shape) for i, p in enumerate(prompts)]


# -------------------------------------------------------------------------------------------------------- LAME
LAME_SIZES = (16, 64, 200)
LAME_AFFINITIES = {"kNN": "knn", "rbf": "rbf", "linear": "linear"}


def lame_batch(fixture: Parity, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised features and raw logits of batch N = n."""
    feats = torch.nn.functional.normalize(fixture[f"inputs/n{n}/features"], dim=1)
    return feats, fixture[f"inputs/n{n}/logits"]


def lame_solve(fixture: Parity, n: int, name: str, stop: str = "vadapters") -> dict[str, float]:
    """The solver for exactly the fixture's iteration count (no early stop) against the official output."""
    from vadapters.tta.affinity import build_affinity
    from vadapters.tta.lame import laplacian_optimisation

    feats, logits = lame_batch(fixture, n)
    iterations = fixture.spec["iterations"][name]
    affinity = build_affinity(feats, LAME_AFFINITIES[name], knn=fixture.spec["knn"])
    z, info = laplacian_optimisation(logits, affinity, max_iter=iterations, tol=-1.0, stop=stop)
    official = fixture[f"outputs/n{n}/{name}/official"]
    return {
        "output": max_abs(z, official),
        "iterations": abs(info["iterations"] - iterations),
        "argmax_disagreements": int((z.argmax(1) != official.argmax(1)).sum()),
        "effect": max_abs(official, logits.softmax(1)),
    }


def lame_kernel(fixture: Parity, n: int) -> float:
    """vadapters' kNN affinity against the official one (0/1 values: any difference is a whole entry)."""
    from vadapters.tta.affinity import build_affinity

    feats, _ = lame_batch(fixture, n)
    return max_abs(build_affinity(feats, "knn", knn=fixture.spec["knn"]).dense(), fixture[f"outputs/n{n}/kNN/kernel"])


def lame_public_class(fixture: Parity, n: int) -> float:
    """The `LAME` wrapper's `adjust` (the per-batch path of the stream runner) on the same logits and features."""
    from vadapters.tta import LAME

    feats, logits = lame_batch(fixture, n)
    lame = LAME(torch.nn.Identity(), features_fn=lambda x: x, head_fn=lambda x: x, affinity="knn", knn=5)
    lame.config.max_iter, lame.config.tol = fixture.spec["iterations"]["kNN"], 0.0
    return max_abs(lame.adjust(logits, feats), fixture[f"outputs/n{n}/kNN/official"])


# ------------------------------------------------------------------------------- saliency metrics (pysodmetrics)
PYSOD_TOLERANCE = 1e-12


def pysod_reference(pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> dict[str, float]:
    """S-measure, mean E-measure, weighted F-measure and MAE of one image by `pysodmetrics`."""
    import py_sod_metrics as sod

    metrics = {"S": sod.Smeasure(), "E": sod.Emeasure(), "wF": sod.WeightedFmeasure(), "MAE": sod.MAE()}
    for metric in metrics.values():
        metric.step(pred=pred, gt=gt, normalize=normalize)
    return {
        "S": float(metrics["S"].get_results()["sm"]),
        "E": float(metrics["E"].get_results()["em"]["curve"].mean()),
        "wF": float(metrics["wF"].get_results()["wfm"]),
        "MAE": float(metrics["MAE"].get_results()["mae"]),
    }


def pysod_ours(pred, gt, normalize: bool = True) -> dict[str, float]:
    from vadapters.metrics import saliency as M

    return {
        "S": M.s_measure(pred, gt, normalize=normalize),
        "E": M.mean_e_measure(pred, gt, normalize=normalize),
        "wF": M.weighted_f_measure(pred, gt, normalize=normalize),
        "MAE": M.mae(pred, gt, normalize=normalize),
    }


def pysod_case(index: int) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 prediction and ground truth: blobs with noisy, blurry, inverted or random predictions."""
    rng = np.random.default_rng(index)
    h, w = (int(v) for v in rng.integers(6, 48, size=2))
    yy, xx = np.mgrid[:h, :w]
    gt = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1.5, max(h, w) / 2)
        gt |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    kind = index % 4
    if kind == 0:
        pred = rng.random((h, w))
    elif kind == 1:
        pred = np.clip(gt * 0.8 + rng.normal(0, 0.25, (h, w)), 0, 1)
    elif kind == 2:
        pred = np.clip(1.0 - gt + rng.normal(0, 0.1, (h, w)), 0, 1)
    else:
        pred = np.clip(gt * rng.uniform(0.3, 1.0) + 0.2 * rng.random((h, w)), 0, 1)
    return (pred * 255).astype(np.uint8), gt.astype(np.uint8) * 255


def pysod_image(index: int) -> dict[str, float]:
    """|vadapters - pysodmetrics| per metric on case `index` (a one-sided ground truth gets one pixel flipped; an
    S-measure the reference leaves NaN, the documented corner case, is not compared)."""
    pred, gt = pysod_case(index)
    if not (0 < (gt > 128).mean() < 1):
        gt[0, 0] = 255 - gt[0, 0]
    reference, ours = pysod_reference(pred, gt), pysod_ours(pred, gt)
    return {name: abs(ours[name] - value) for name, value in reference.items() if not np.isnan(value)}


def pysod_dataset(indices) -> dict[str, float]:
    """|vadapters - pysodmetrics| of the set averages (`SegmentationMetrics` vs the reference accumulators)."""
    import py_sod_metrics as sod

    from vadapters.metrics import saliency as M

    metrics = {"S": sod.Smeasure(), "E": sod.Emeasure(), "wF": sod.WeightedFmeasure(), "MAE": sod.MAE()}
    ours = M.SegmentationMetrics()
    for index in indices:
        pred, gt = pysod_case(index)
        if not (0 < (gt > 128).mean() < 1):
            continue
        for metric in metrics.values():
            metric.step(pred=pred, gt=gt)
        ours.update(pred, gt)
    result = ours.compute()
    reference = {
        "S": metrics["S"].get_results()["sm"],
        "E": metrics["E"].get_results()["em"]["curve"].mean(),
        "wF": metrics["wF"].get_results()["wfm"],
        "MAE": metrics["MAE"].get_results()["mae"],
    }
    return {"n": result["n"]} | {name: abs(result[name] - float(value)) for name, value in reference.items()}
