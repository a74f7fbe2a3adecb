"""`vadapters` command line: list, info, generate, train, export, demo.

The CLI calls the same public functions a library user calls.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Any

from vadapters.commands.options import add_training_arguments, parse_adapter, parse_sets, run_training


# ----------------------------------------------------------------------------------------------------- commands
def cmd_list(args: argparse.Namespace) -> int:
    from vadapters.core.registry import all_specs

    for spec in all_specs():
        merge = "fuse" if spec.supports_merge else "-"
        print(f"{spec.name:<16} hosts={','.join(spec.hosts):<18} {merge:<5} {spec.description}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from vadapters.core.api import read_adapter

    for hint, config, tensors in read_adapter(args.path, args.method):
        n = sum(t.numel() for t in tensors.values())
        print(
            json.dumps({"name": hint, "config": config.to_dict(), "tensors": len(tensors), "parameters": n}, indent=2)
        )
        if args.keys:
            for key in sorted(tensors):
                print(f"  {key} {tuple(tensors[key].shape)} {str(tensors[key].dtype).removeprefix('torch.')}")
    return 0


def _generate(pipe: Any, args: argparse.Namespace, height: int, width: int):
    import torch

    from vadapters.pipelines import to_uint8

    generator = torch.Generator("cpu").manual_seed(args.seed)
    out = pipe(
        args.prompt,
        negative_prompt=args.negative_prompt,
        height=height,
        width=width,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        generator=generator,
        output_type="np",
    )
    return to_uint8(out.images)[0]


def _check_generate_args(args: argparse.Namespace) -> list[tuple[int, int]]:
    """What `generate` can check before loading a model; returns the requested sizes."""
    from vadapters.core.validation import check_float, check_int, check_prompt, parse_sizes

    check_int(args.steps, "--steps", low=1)
    check_float(args.guidance_scale, "--guidance-scale", low=0.0)
    check_int(args.scale, "--scale", 1, 64)
    check_prompt(args.prompt, "--prompt")
    if args.negative_prompt is not None:
        check_prompt(args.negative_prompt, "--negative-prompt")
    if args.sweep:
        return parse_sizes(args.sweep, "--sweep")
    return [(check_int(args.height, "--height", low=1), check_int(args.width, "--width", low=1))]


def cmd_generate(args: argparse.Namespace) -> int:
    sizes = _check_generate_args(args)
    if args.image:  # image-to-video: the I2V-Adapter pipeline (`vadapters i2v` has every option)
        from vadapters.commands.i2v_adapter import i2v_from_generate

        return i2v_from_generate(args)
    import vadapters
    from vadapters.core.hosts.diffusers import check_pipeline_sizes
    from vadapters.core.validation import check_int
    from vadapters.pipelines import load_pipeline, save_image, side_by_side

    pipe = load_pipeline(args.pipeline)
    check_int(args.steps, "--steps", 1, pipe.scheduler.config.num_train_timesteps)
    sizes = check_pipeline_sizes(pipe, sizes, batch_size=2 if args.guidance_scale > 1 else 1)
    names, weights = [], []
    for spec in args.adapter or []:
        path, weight = parse_adapter(spec)
        before = set(vadapters.list_adapters(pipe))
        vadapters.load(pipe, path, method=args.method)
        new = [n for n in vadapters.list_adapters(pipe) if n not in before]
        names += new
        weights += [1.0 if weight is None else weight] * len(new)
    if names:
        vadapters.set_adapters(pipe, names, weights)
    tiles = []
    for h, w in sizes:
        image = _generate(pipe, args, h, w)
        if args.compare and names:
            with vadapters.disabled(pipe):
                base = _generate(pipe, args, h, w)
            image = side_by_side([base, image])
        tiles.append(image)
    path = save_image(side_by_side(tiles) if len(tiles) > 1 else tiles[0], args.out, scale=args.scale)
    print(f"wrote {path} ({', '.join(f'{h}x{w}' for h, w in sizes)}; adapters: {dict(zip(names, weights)) or 'none'})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {key: getattr(args, key) for key in ("rank", "alpha") if getattr(args, key) is not None}
    return run_training(args.method, args, "resolutions", overrides=overrides)


def cmd_train_base(args: argparse.Namespace) -> int:
    from vadapters.commands.world import WORLD_BASES, train_world_base

    if args.name in WORLD_BASES:
        return train_world_base(args)
    if args.name == "judge-shape-colour":
        from vadapters.metrics.judges import train_shape_colour_judge
        from vadapters.models.weights import record_entry, weights_dir

        out = args.out or str(weights_dir() / args.name)
        start = time.time()
        metrics = train_shape_colour_judge(
            out, steps=args.steps or 1500, batch_size=args.batch_size or 64, seed=args.seed
        )
        if os.path.abspath(os.path.dirname(out)) == os.path.abspath(weights_dir()):
            record_entry(
                args.name,
                command=f"vadapters train-base {args.name} --seed {args.seed}",
                seed=args.seed,
                train_seconds=time.time() - start,
                metrics={"held_out_ground_truth": metrics},
                extra={
                    "description": "shape (6) and colour (9) classifier for 32x32 single-shape scenes; metric only"
                },
            )
        print(json.dumps(metrics, indent=2))
        return 0
    if args.name.startswith("tiny-classifier-") or args.name == "tiny-sam":
        return _train_perception_default(args)
    if args.name == "tiny-animatediff":
        return _train_tiny_animatediff(args)
    if args.name == "tiny-sdxl":
        from vadapters.train.base_sdxl import train_tiny_sdxl as train

        extra = {"sd": args.sd}
    else:
        from vadapters.train.base import train_tiny_sd as train

        extra = {"vae_steps": args.vae_steps}
    summary = train(
        args.out or os.path.join("outputs", "train-base", args.name),
        **extra,
        unet_steps=args.unet_steps,
        batch_size=args.batch_size or 32,
        resolution=args.resolution,
        learning_rate=args.lr if args.lr is not None else 6e-4,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every,
        scene_options=parse_sets(args.scenes) or None,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _train_tiny_animatediff(args: argparse.Namespace) -> int:
    from vadapters.train.video import train_tiny_animatediff

    summary = train_tiny_animatediff(
        args.out or os.path.join("outputs", "train-base", "tiny-animatediff"),
        args.sd,
        steps=args.steps or 3000,
        batch_size=args.batch_size or 8,
        frames=args.frames,
        resolution=args.resolution,
        learning_rate=args.lr if args.lr is not None else 3e-4,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        eval_clips=args.eval_clips,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _train_perception_default(args: argparse.Namespace) -> int:
    from vadapters.models.weights import record_entry, weights_dir
    from vadapters.train import perception

    out = args.out or str(weights_dir() / args.name)
    start = time.time()
    opts = {"seed": args.seed, "checkpoint_every": args.checkpoint_every}
    if args.steps:
        opts["steps"] = args.steps
    if args.batch_size:
        opts["batch_size"] = args.batch_size
    if args.name == "tiny-sam":
        metrics = perception.train_tiny_sam(out, **opts)
        description = "segment_anything Sam (ViT 4x48, 64 px) trained on salient scenes with point/box/no prompts"
    else:
        kind = args.name.removeprefix("tiny-classifier-")
        metrics = perception.train_tiny_classifier(kind, out, **opts)
        description = f"timm {perception.CLASSIFIER_ARCHS[kind]} trained on clean ShapeClasses 32x32 (10 classes)"
    if os.path.abspath(os.path.dirname(out)) == os.path.abspath(weights_dir()):
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in opts.items())
        record_entry(
            args.name,
            command=f"vadapters train-base {args.name} {flags}",
            seed=args.seed,
            train_seconds=time.time() - start,
            metrics=metrics,
            extra={"description": description},
        )
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vadapters.core.api import read_adapter

    sources = read_adapter(args.path, args.method)
    if len(sources) != 1:
        raise SystemExit(f"{args.path} holds {len(sources)} adapters; export one folder at a time")
    _, config, tensors = sources[0]
    if args.to in ("official", "kohya"):
        if config.method != "res_adapter":
            raise SystemExit(f"--to {args.to} exists for res_adapter only, not {config.method}")
        from vadapters.methods.res_adapter.conversion import export_official

        written = export_official(tensors, config, args.out)
    else:
        from vadapters.core.api import write_adapter

        written = write_adapter(tensors, config, args.out, single_file=args.to == "single-file")
    print("\n".join(f"wrote {p}" for p in written))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded defaults: every landed method, written as index.html + metrics.json."""
    from vadapters.demo import run_demo

    metrics = run_demo(args.out, quick=args.quick, only=args.only, train=getattr(args, "train", False))
    print(f"wrote {os.path.join(args.out, 'index.html')} and metrics.json in {metrics['seconds']} s")
    return 0


# ------------------------------------------------------------------------------------------------------ parser
def add_diffusion_train_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `vadapters train <method>` for adapters trained on a diffusers pipeline."""
    base = ("--pipeline", "pipeline folder or Hub id ORG/NAME (default: the embedded trained tiny-sd; 'tiny': random)")
    data = ("synthetic", "image folder with captions, or 'synthetic'")
    add_training_arguments(p, base=base, data=data, batch_size=4, lr=1e-4, config="the method's config")
    p.add_argument("--resolutions", default="16,24,32", help="bucket sizes: comma list of S or HxW")
    p.add_argument("--rank", type=int, default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.set_defaults(func=cmd_train)
    return p


def build_parser() -> argparse.ArgumentParser:
    import vadapters
    from vadapters.commands import command_modules
    from vadapters.core.registry import all_specs

    parser = argparse.ArgumentParser(prog="vadapters", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vadapters {vadapters.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the installed adapter methods")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="describe an adapter folder, single file, or official checkpoint")
    p.add_argument("path")
    p.add_argument("--method", help="force a method's converter for an official checkpoint")
    p.add_argument("--keys", action="store_true", help="also list every tensor")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("generate", help="text-to-image with adapters (tiny embedded pipeline by default)")
    p.add_argument("--pipeline", help="pipeline folder or Hub id ORG/NAME (default: the embedded trained tiny-sd)")
    p.add_argument(
        "--adapter",
        action="append",
        help="adapter folder/file or Hub id ORG/NAME[/FOLDER], optionally :WEIGHT; repeatable",
    )
    p.add_argument("--method", help="force a converter for official checkpoints (e.g. res_adapter)")
    p.add_argument("--prompt", default="a red disc on a blue to green background")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--height", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--sweep", help="comma list of sizes (S or HxW) to generate instead of --height/--width")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--guidance-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", action="store_true", help="put the output without adapters on the left")
    p.add_argument("--scale", type=int, default=1, help="integer upscaling of the saved PNG (tiny images)")
    p.add_argument("--image", help="first frame: generate a video with I2V-Adapter (see `vadapters i2v`)")
    p.add_argument("--frames", type=int, default=None, help="with --image: number of frames (default 8)")
    p.add_argument("--out", required=True, help="output PNG path (.gif / .webp / .mp4 with --image)")
    p.set_defaults(func=cmd_generate)

    train = sub.add_parser("train", help="train an adapter with HF Accelerate (resumable)")
    tsub = train.add_subparsers(dest="method", required=True, metavar="METHOD")
    custom_train: set[str] = set()
    for module in command_modules():
        if hasattr(module, "register_train"):
            custom_train |= set(module.register_train(tsub) or ())
    for spec in all_specs():
        if spec.name not in custom_train and set(spec.hosts) & {"diffusers.unet"}:
            add_diffusion_train_arguments(tsub.add_parser(spec.name, help=spec.description))

    p = sub.add_parser("train-base", help="train an embedded default model from scratch on synthetic data")
    p.add_argument(
        "name",
        choices=(
            "tiny-sd", "tiny-sdxl", "tiny-animatediff", "tiny-classifier-cnn", "tiny-classifier-vit", "tiny-sam",
            "judge-shape-colour", "tiny-world-vae", "tiny-clip", "tiny-sd-v2", "judge-shape-colour-v2",
        ),
    )  # fmt: skip
    p.add_argument(
        "--out", default=None, help="run folder (default outputs/train-base/NAME for tiny-sd(xl); judges: weights/)"
    )
    p.add_argument(
        "--steps", type=int, default=None, help="classifiers, tiny-sam, judges, tiny-animatediff: optimizer steps"
    )
    p.add_argument(
        "--sd",
        default=None,
        help="tiny-animatediff: the frozen image pipeline; tiny-sdxl: the tiny-sd giving VAE and first text encoder "
        "(default weights/tiny-sd)",
    )
    p.add_argument("--frames", type=int, default=8, help="tiny-animatediff: frames per clip (8-16)")
    p.add_argument("--eval-clips", type=int, default=32, help="tiny-animatediff: held-out clips to evaluate (0: none)")
    p.add_argument("--vae-steps", type=int, default=1500, help="tiny-sd: VAE steps")
    p.add_argument("--unet-steps", type=int, default=6000, help="tiny-sd, tiny-sdxl: UNet (+ text encoder) steps")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="default: 32 (tiny-sd, tiny-sdxl), 8 (tiny-animatediff), 64 (judges), 128 (classifiers)",
    )
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument(
        "--lr", type=float, default=None, help="default: 6e-4 (tiny-sd, tiny-sdxl), 3e-4 (tiny-animatediff)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--validate-every", type=int, default=0)
    p.add_argument(
        "--scenes",
        action="append",
        default=[],
        help="tiny-sd(xl): ShapeScenes option KEY=VALUE (default: 1 large shape)",
    )
    p.add_argument("--num-items", type=int, default=None, help="v2 bases: pre-rendered training items")
    p.add_argument(
        "--init",
        default=None,
        help="tiny-world-vae / tiny-clip: start from this folder's weights; tiny-sd-v2: a UNet .safetensors",
    )
    p.add_argument("--decoder-only", action="store_true", help="tiny-world-vae: train the decoder alone")
    p.add_argument("--mix", default=None, help="tiny-world-vae: world shares, e.g. scenes_small=0.6,scenes_large=0.2")
    p.add_argument("--motion-group", type=int, default=0, help="tiny-clip: motion clips per hard-negative run")
    p.add_argument("--edge-weight", type=float, default=1.0, help="tiny-world-vae: weight of the Sobel L1 term")
    p.add_argument("--vae", default=None, help="tiny-sd-v2: the world VAE (default weights/tiny-world-vae)")
    p.add_argument("--clip", default=None, help="tiny-sd-v2: tiny-clip folder (default weights/tiny-clip)")
    p.add_argument(
        "--install", action="store_true", help="v2 bases: copy the result to weights/NAME and record the manifest"
    )
    p.set_defaults(func=cmd_train_base)

    p = sub.add_parser("export", help="convert an adapter to another format")
    p.add_argument("path", help="adapter folder/file or official checkpoint")
    p.add_argument("--to", choices=("vadapters", "single-file", "official", "kohya"), default="vadapters")
    p.add_argument("--method", help="force a converter for official checkpoints")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="main job on the embedded default: train a ResAdapter, then generate")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--quick", action="store_true", help="short training runs (under 3 minutes on 2 CPU cores)")
    p.add_argument("--only", action="append", help="run only this section (repeatable), e.g. res_adapter")
    p.add_argument("--train", action="store_true", help="train live where a section would load a shipped adapter")
    p.set_defaults(func=cmd_demo)

    for module in command_modules():
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `vadapters` command: errors in the input print one `error: ...` line (exit 2), Ctrl-C one line
    naming the checkpoint to resume from (exit 130)."""
    from vadapters.errors import VAdaptersError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VAdaptersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        checkpoint = getattr(interrupt, "checkpoint", None)
        if checkpoint:
            words = sys.argv[1:] if argv is None else argv
            command = " ".join(shlex.quote(w) for w in ["vadapters", *words])
            print(f"interrupted: checkpoint saved at {checkpoint}; run the same command to resume: {command}",
                  file=sys.stderr)  # fmt: skip
        else:
            print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
