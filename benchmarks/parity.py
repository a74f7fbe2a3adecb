"""Parity with the official implementations: every max difference the README quotes, measured in one run.

For each fixture folder of `../shared/fixtures/parity/` (golden outputs of a method's official code at a pinned
commit; `README.md` and `spec.json` beside them), the calls of `tests/parity_cases.py` (the ones
`tests/test_parity_*.py` assert) run through the public path: official-layout files written to disk and loaded with
`vadapters.load` or the method's official import. Each quantity's largest absolute difference is recorded with the
fixture's tolerance (`spec.json`: the README's "Tolerance for tests"); `effects` are how far the official output
lies from the base, which shows that a comparison can fail. The saliency metrics are compared with `pysodmetrics`,
the field's reference implementation, the same way.

    OMP_NUM_THREADS=1 python benchmarks/parity.py
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))  # the shared parity helpers live beside the tests that assert them
from _report import command, header, machine, write_report  # noqa: E402
from parity_cases import (  # noqa: E402
    I2V_LAYERS,
    LAME_AFFINITIES,
    LAME_SIZES,
    MV_CASES,
    PYSOD_TOLERANCE,
    i2v_adapted,
    i2v_host,
    i2v_module,
    i2v_prior,
    i2v_unet_call,
    lame_kernel,
    lame_public_class,
    lame_solve,
    mv_camera,
    mv_case,
    mv_plain,
    pysod_dataset,
    pysod_image,
    sam_encode,
    sam_host,
    sam_official,
    sam_prompts,
    sara_import,
    sara_step,
    sara_step_diffs,
)
from parity_fixtures import PARITY, max_abs, read_parity  # noqa: E402

OFFICIAL_RESADAPTER = "shared/fixtures/official/resadapter"


def fmt(value) -> str:
    """How the figures are quoted (README included): two significant digits, `2.2e-6`; counts with commas."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    text = f"{value:.2g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def row(quantity: str, value: float, tolerance: float | None) -> dict:
    """One compared quantity; `tolerance` None marks a deliberate difference or a measurement tests do not bound."""
    within = None if tolerance is None else bool(value <= tolerance)
    return {"quantity": quantity, "max_abs": value, "tolerance": tolerance, "within": within}


def _official(fixture) -> str:
    return f"{fixture.spec['official']['repo']}@{fixture.official_commit}"


def exact(value: float) -> str:
    return "exact" if value == 0 else fmt(value)


def measure_mv_adapter(fixture, folder: pathlib.Path) -> dict:
    tol = fixture.spec["tolerance"]
    cases = {name: mv_case(fixture, name, folder) for name in MV_CASES}
    cameras = [mv_camera(fixture, views) for views in (4, 6)]
    v = {key: max(c[key] for c in cases.values() if key in c) for key in cases["row_v4_ref"] if key != "effect"}
    v |= {key: max(c[key] for c in cameras) for key in cameras[0]}
    v["plain"] = max(mv_plain(fixture, views) for views in (4, 6))
    avx512 = "with" if "with AVX-512" in _cpu() else "without"
    return {
        "rows": [
            row(
                "UNet output, 6 cases (row 4 / 6 views, row + column 6 views; +- reference)",
                v["output"],
                tol["outputs"],
            ),
            row("UNet output without the condition, 6 cases", v["output_without_condition"], tol["outputs"]),
            row("reference caches", v["reference_cache"], tol["reference_cache"]),
            row(
                "T2I-Adapter encoder (torch's native kernels, as tested)",
                v["condition_features"],
                tol["condition_features"],
            ),
            row(
                "T2I-Adapter encoder (oneDNN's kernels; not bounded by the tests)",
                v["condition_features_onednn"],
                None,
            ),
            row('camera maps, convention="official", 4 and 6 views', v["camera_maps"], tol["camera_maps"]),
            row("plain host vs official base", v["plain"], tol["outputs"]),
            row("vadapters' own camera convention vs official (deliberate)", v["default_convention"], None),
        ],
        "effects": {"adapter on the UNet output, smallest over the cases": min(c["effect"] for c in cases.values())},
        "cases": cases,
        "quoted": {
            k: v[k]
            for k in ("output", "reference_cache", "condition_features", "condition_features_onednn", "camera_maps")
        }
        | {"avx512": avx512},
    }


def measure_i2v_adapter(fixture, folder: pathlib.Path) -> dict:
    tol = fixture.spec["tolerance"]["all"]
    adapted = i2v_adapted(fixture, folder)
    out = i2v_unet_call(adapted, fixture)
    modules = [i2v_module(adapted, fixture, layer) for layer in I2V_LAYERS]
    v = i2v_prior(fixture) | {key: max(m[key] for m in modules) for key in modules[0]}
    v["unet"] = max_abs(out, fixture["outputs/unet/official"])
    v["plain"] = max_abs(i2v_unet_call(i2v_host(fixture), fixture), fixture["outputs/unet/base"])
    return {
        "rows": [
            row("whole UNetMotionModel output", v["unet"], tol),
            row("single attn1 modules (2 layers)", v["module"], tol),
            row("attn1 modules at scale 0 vs base", v["module_scale_0"], tol),
            row("Frame Similarity Prior: degraded frames 1-7", v["prior_degraded"], tol),
            row("Frame Similarity Prior: initial latents", v["prior_latents"], tol),
            row("DDIM alphas_cumprod", v["alphas_cumprod"], tol),
            row("first timestep", float(v["first_timestep"]), 0.0),
            row("plain host vs official base", v["plain"], tol),
        ],
        "effects": {
            "adapter on the UNet output": max_abs(out, fixture["outputs/unet/base"]),
            "prior on frames 1-7 vs the noise": v["effect_prior"],
        },
        "quoted": {k: v[k] for k in ("unet", "module", "prior_latents")},
    }


def measure_sara(fixture, folder: pathlib.Path) -> dict:
    tol = fixture.spec["tolerance"]["all"]
    step = sara_step_diffs(fixture, sara_step(fixture))
    adamw2, ub = (sara_import(fixture, f"{group}/") for group in ("official_save_params", "official_ub_save_params"))
    imported = {key: max(adamw2[key], ub[key]) for key in adamw2}
    total = step["selected_total"]
    return {
        "rows": [
            row(f"selected entries per position ({total:,} in all)", float(step["selected_count"]), 0.0),
            row("loss before the step", step["loss"], tol),
            row("gradients at the selected entries", step["gradients"], tol),
            row("value vectors after one adamw2 step", step["values"], tol),
            row("weights after one adamw2 step", step["weights"], tol),
            row("entries not selected: change", step["unselected_change"], 0.0),
            row("UNet output after the step", step["output"], tol),
            row("save_params() import (adamw2): weights", adamw2["weights"], 0.0),
            row("save_params() import (adamw2): output", adamw2["output"], tol),
            row("save_params() import (UB): weights", ub["weights"], 0.0),
            row("save_params() import (UB): output", ub["output"], tol),
        ],
        "effects": {"the step on the UNet output": step["effect"]},
        "selected_total": total,
        "quoted": {"total": total, "selection": step["selected_count"], "imported": imported}
        | {k: step[k] for k in ("gradients", "weights", "output")},
    }


def measure_sam_adapter(fixture, folder: pathlib.Path) -> dict:
    tol = fixture.spec["tolerance"]["encoder_output"]
    sam = sam_official(fixture, folder)
    out = sam_encode(sam, fixture)
    prompts = sam_prompts(sam, fixture)
    default = sam_encode(sam_official(fixture, folder, official_token_layout=False), fixture)
    v = {
        "encoder": max_abs(out, fixture["outputs/official"]),
        "prompts": max(max_abs(p, fixture[f"outputs/prompts/{i}"]) for i, p in enumerate(prompts)),
        "plain": max_abs(sam_encode(sam_host(fixture), fixture), fixture["outputs/plain"]),
        "default_layout": max_abs(default, fixture["outputs/official"]),
    }
    return {
        "rows": [
            row("image-encoder output (official token layout, inferred)", v["encoder"], tol),
            row("per-block prompts", v["prompts"], tol),
            row("plain encoder vs official host", v["plain"], tol),
            row("vadapters' default token layout vs official (deliberate)", v["default_layout"], None),
        ],
        "effects": {"adapter on the encoder output": max_abs(out, fixture["outputs/plain"])},
        "quoted": {"encoder": v["encoder"]},
    }


def measure_lame(fixture, folder: pathlib.Path) -> dict:
    tol, iterations = fixture.spec["tolerance"], fixture.spec["iterations"]
    rows, effects, worst = [], {}, {}
    for name in LAME_AFFINITIES:
        runs = [lame_solve(fixture, n, name, stop) for n in LAME_SIZES for stop in ("vadapters", "official")]
        worst[name] = max(r["output"] for r in runs)
        label = f"{name} output, {iterations[name]} iterations, N = {', '.join(map(str, LAME_SIZES))}, both stop rules"
        rows.append(row(label, worst[name], tol[name]))
        rows.append(row(f"{name}: argmax disagreements", float(sum(r["argmax_disagreements"] for r in runs)), 0.0))
        effects[f"{name}: LAME output vs softmax, smallest over the batches"] = min(r["effect"] for r in runs)
    kernel = max(lame_kernel(fixture, n) for n in LAME_SIZES)
    rows.append(row("kNN kernel", kernel, float(tol["kernel"])))
    rows.append(
        row("kNN via the LAME class (adjust)", max(lame_public_class(fixture, n) for n in LAME_SIZES), tol["kNN"])
    )
    return {
        "rows": rows,
        "effects": effects,
        "quoted": {"iterations": iterations, "batches": len(LAME_SIZES), "kernel": kernel} | worst,
    }


def measure_pysodmetrics() -> dict:
    from importlib.metadata import version

    images = [pysod_image(index) for index in range(40)]
    dataset = pysod_dataset(range(200, 216))
    metrics = ("S", "E", "wF", "MAE")
    rows = [row(f"{m} per image (40 images)", max(d[m] for d in images if m in d), PYSOD_TOLERANCE) for m in metrics]
    rows.append(row(f"set averages ({dataset['n']} images)", max(dataset[m] for m in metrics), PYSOD_TOLERANCE))
    return {
        "official": f"pysodmetrics {version('pysodmetrics')}",
        "rows": rows,
        "effects": {},
        "quoted": {"max": max(r["max_abs"] for r in rows)},
    }


MEASURES = {
    "mv_adapter": measure_mv_adapter,
    "i2v_adapter": measure_i2v_adapter,
    "sara": measure_sara,
    "sam_adapter": measure_sam_adapter,
    "lame": measure_lame,
}


def readme_row(method: str, q: dict) -> tuple[str, str, str]:
    """(method, what is compared, the max differences) of the README's table, from a method's quoted values."""
    if method == "mv_adapter":
        compared = (
            "UNet output, row 4 / 6 views and row + column 6 views, with and without the reference branch, with the "
            'T2I-Adapter encoder; reference caches; camera maps (`convention="official"`)'
        )
        figures = (
            f"{fmt(q['output'])}; caches {fmt(q['reference_cache'])}; encoder {fmt(q['condition_features'])} "
            f"({fmt(q['condition_features_onednn'])} on oneDNN's kernels {q['avx512']} AVX-512); "
            f"camera maps {fmt(q['camera_maps'])}"
        )
        return "MV-Adapter", compared, figures
    if method == "i2v_adapter":
        compared = "whole `UNetMotionModel` output, single `attn1` modules, Frame Similarity Prior latents"
        return "I2V-Adapter", compared, "; ".join(fmt(q[k]) for k in ("unet", "module", "prior_latents"))
    if method == "sara":
        compared = (
            f"selection ({q['total']:,} entries), gradients, one `adamw2` step, `save_params()` import (adamw2 and UB)"
        )
        figures = (
            f"selection {exact(q['selection'])}; gradients {fmt(q['gradients'])}; weights {fmt(q['weights'])}; "
            f"output {fmt(q['output'])}; imported weights {exact(q['imported']['weights'])}, "
            f"outputs {fmt(q['imported']['output'])}"
        )
        return "SaRA", compared, figures
    if method == "sam_adapter":
        return "SAM-Adapter", "image-encoder output (official token layout)", fmt(q["encoder"])
    if method == "lame":
        steps = q["iterations"]
        compared = (
            f"kNN ({steps['kNN']} iterations), rbf and linear ({steps['rbf']}) outputs on {q['batches']} batches; "
            "kNN kernel"
        )
        figures = f"{', '.join(fmt(q[name]) for name in LAME_AFFINITIES)}; kernel {exact(q['kernel'])}"
        return "LAME", compared, figures
    compared = "S-measure, mean E-measure, weighted F, MAE per image and per set"
    return "saliency metrics", compared, fmt(q["max"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=str(PARITY), help="the parity fixture folders")
    parser.add_argument("--threads", type=int, default=1, help="the fixtures' differences were measured at 1")
    parser.add_argument("--name", default="parity")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    commit = _git("rev-parse", "HEAD").stdout.strip()
    if _git("diff", "--quiet", "HEAD", "--", "vadapters", "pipelines").returncode:
        commit += " + uncommitted changes"
    result: dict = {"command": command(), "machine": machine(args.threads), "cpu": _cpu(), "vadapters_commit": commit}
    result["seed"] = None  # nothing is drawn: the fixtures store every input (pysodmetrics cases: default_rng(index))
    result["tolerance_source"] = "spec.json of each fixture (the same values as its README's 'Tolerance for tests')"
    result["methods"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in MEASURES:
            fixture = read_parity(method, pathlib.Path(args.fixtures))
            folder = pathlib.Path(tmp) / method
            folder.mkdir()
            entry = {"official": _official(fixture), "fixture": f"shared/fixtures/parity/{method}"}
            result["methods"][method] = entry | MEASURES[method](fixture, folder)
    result["methods"]["saliency_metrics"] = measure_pysodmetrics()
    result["not_measured"] = {
        "res_adapter": f"{OFFICIAL_RESADAPTER} holds the released files but no outputs of the official code: "
        "tests/test_res_adapter.py checks their exact key accounting and that the loaded tensors equal the files'"
    }
    bounded = [r for m in result["methods"].values() for r in m["rows"] if r["tolerance"] is not None]
    result["all_within_tolerance"] = all(r["within"] for r in bounded)
    result["tolerances"] = sorted({r["tolerance"] for r in bounded if r["tolerance"] > 0})
    result["seconds"] = round(time.time() - start, 1)
    write_report(args.name, result, _markdown(result))
    return result


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE.parent)


def _cpu() -> str:
    """The CPU model and whether it has AVX-512 (oneDNN's float32 convolutions differ with it)."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    return f"{model}, {'with' if ' avx512f' in info else 'without'} AVX-512"


def _markdown(r: dict) -> str:
    md = header("Parity with the official implementations", r)
    md += f"CPU: {r['cpu']}. vadapters at `{r['vadapters_commit']}`. Tolerances: {r['tolerance_source']}; "
    md += f"every bounded quantity within its tolerance: **{fmt(r['all_within_tolerance'])}** (tolerances used: "
    md += ", ".join(fmt(t) for t in r["tolerances"]) + "; 0 = exact). A tolerance `-` marks a deliberate difference "
    md += "or a measurement the tests do not bound. Effects: how far the official output lies from the base, far "
    md += "above the tolerance, so each comparison can fail.\n"
    md += "\n## As the README quotes it\n\n| method | official code | compared | max difference |\n|---|---|---|---|\n"
    for method, m in r["methods"].items():
        name, compared, figures = readme_row(method, m["quoted"])
        official = re.sub(r"@([0-9a-f]{8})[0-9a-f]+$", r"@\1", m["official"])
        md += f"| {name} | {official} | {compared} | {figures} |\n"
    for method, m in r["methods"].items():
        md += f"\n## {method} ({m['official']})\n\n"
        md += "| quantity | max abs difference | tolerance | within |\n|---|---|---|---|\n"
        for x in m["rows"]:
            md += f"| {x['quantity']} | {fmt(x['max_abs'])} | {fmt(x['tolerance'])} | {fmt(x['within'])} |\n"
        if m["effects"]:
            md += "\nEffects: " + "; ".join(f"{k} {fmt(v)}" for k, v in m["effects"].items()) + ".\n"
    md += "\nNot measured: " + "; ".join(f"{k}: {v}" for k, v in r["not_measured"].items()) + ".\n"
    return md


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
