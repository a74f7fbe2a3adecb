"""torch.compile on CPU (inductor) for benchmarks/perf.py: adapted tiny hosts, eager vs compiled.

Hosts: the tiny SD UNet with a ResAdapter, the tiny SAM image encoder with a SAM-Adapter, and a tiny timm
classifier with SaRA (its sparse parametrisation is traced through). Each compiled model is called once (the
compile, timed on its own), checked against eager (max absolute difference), then eager and compiled calls are
interleaved. Tiny hosts only: inductor compiles a real-size UNet for many minutes on 2 cores.
"""

from __future__ import annotations

import time
from typing import Any

import _perf_hosts as hosts
import torch
from _perf_timing import Arm, interleave, ratios


def cases() -> dict[str, tuple[Any, Any]]:
    """name -> (module, call(module) -> output tensor)."""
    from vadapters.methods.res_adapter import ResAdapterConfig
    from vadapters.methods.sam_adapter import SAMAdapterConfig
    from vadapters.methods.sara import SaRAConfig

    unet = hosts.adapted(hosts.build_sd("tiny"), ResAdapterConfig(), "res")
    unet_in = hosts.unet_inputs(unet, 1, hosts.LATENT["tiny"])
    sam = hosts.adapted(hosts.build_sam("tiny"), SAMAdapterConfig(), "sam")
    side = sam.image_encoder.img_size
    pixels = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    timm_model = hosts.adapted(hosts.build_classifier("tiny"), SaRAConfig(quantile=0.05), "sara")
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return {
        "unet_res_adapter": (unet, lambda m: m(**unet_in, return_dict=False)[0]),
        "sam_encoder_sam_adapter": (sam.image_encoder, lambda m: m(pixels)),
        "timm_sara": (timm_model, lambda m: m(images)),
    }


def compile_section(repeats: int, log) -> dict[str, Any]:
    torch._dynamo.reset()
    out: dict[str, Any] = {}
    for name, (module, run) in cases().items():
        compiled = torch.compile(module, backend="inductor")
        with torch.no_grad():
            expected = run(module)
            start = time.perf_counter()
            got = run(compiled)
            compile_seconds = time.perf_counter() - start
        diff = float((got - expected).abs().max())
        samples = interleave(
            {"eager": Arm(_nograd(run, module)), "compiled": Arm(_nograd(run, compiled))}, repeats, warmup=1
        )
        result = ratios(samples, "eager")
        out[name] = {
            "compile_seconds": compile_seconds,
            "max_abs_difference": diff,
            "reference_scale": float(expected.abs().max()),
            "speedup_wall": 1.0 / result["compiled"]["wall"]["ratio"],
            "speedup_cpu": 1.0 / result["compiled"]["cpu"]["ratio"],
            "timing": result,
        }
        log(f"  compile {name}: {compile_seconds:.1f} s to compile, max diff {diff:.2e}, "
            f"speedup {out[name]['speedup_wall']:.2f}x wall, {out[name]['speedup_cpu']:.2f}x CPU")  # fmt: skip
    return out


def _nograd(run, module):
    def call():
        with torch.no_grad():
            return run(module)

    return call
