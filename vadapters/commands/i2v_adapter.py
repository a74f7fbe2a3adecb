"""CLI: `vadapters train i2v_adapter ...` (clips with a clean first frame) and `vadapters i2v ...` (image-to-video)."""

from __future__ import annotations

import argparse

from vadapters.commands.options import add_training_arguments, parse_adapter, run_training


def cmd_train_i2v_adapter(args: argparse.Namespace) -> int:
    return run_training("i2v_adapter", args, "num_items", "num_frames", "resolutions", "caption_dropout")


def cmd_i2v(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    import vadapters
    from vadapters.core.hosts.diffusers import check_pipeline_sizes
    from vadapters.core.images import load_image
    from vadapters.core.validation import check_float, check_int, check_prompt
    from vadapters.pipelines.image2video import I2VPipeline, load_video_pipeline, save_video

    image = Image.fromarray(load_image(args.image, name="--image"))  # every input is checked before a model loads
    check_prompt(args.prompt, "--prompt")
    check_int(args.frames, "--frames", low=1)
    check_int(args.steps, "--steps", low=1)
    check_float(args.guidance_scale, "--guidance-scale", low=0.0)
    check_int(args.scale, "--scale", 1, 64)
    pipe = I2VPipeline.from_pipe(load_video_pipeline(args.pipeline))
    pipe.set_progress_bar_config(disable=True)
    check_int(args.steps, "--steps", 1, pipe.scheduler.config.num_train_timesteps)
    check_int(args.frames, "--frames", 1, pipe.unet.config.get("motion_max_seq_length") or None)
    cfg = 2 if args.guidance_scale > 1 else 1
    check_pipeline_sizes(pipe, [(args.height, args.width)], batch_size=args.frames * cfg)
    for spec in args.adapter or []:
        path, weight = parse_adapter(spec)
        vadapters.load(pipe, path, weight=weight)
    prior = args.prior_strength
    if prior is not None and prior != "auto":
        prior = float(prior)
    out = pipe(
        args.prompt, image=image, num_frames=args.frames, height=args.height, width=args.width,
        num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
        generator=torch.Generator("cpu").manual_seed(args.seed), keep_first_frame=not args.step_first_frame,
        prior_strength=prior, prior_mask_prob=args.prior_mask_prob, prior_blur_sigma=args.prior_blur_sigma,
        color_match=args.color_match, i2v_scale=args.i2v_scale, output_type="np",
    )  # fmt: skip
    path = save_video(out.frames[0], args.out, fps=args.fps, scale=args.scale)
    print(
        f"wrote {path} ({args.frames} frames, {args.height}x{args.width}; adapters: {vadapters.list_adapters(pipe)})"
    )
    return 0


def add_i2v_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `vadapters i2v` (also what `vadapters generate --image` routes to)."""
    p.add_argument("--image", required=True, help="first frame (PNG / JPEG / WebP)")
    p.add_argument("--prompt", default="", help="text prompt, e.g. 'a red square moving right slowly'")
    p.add_argument("--pipeline", default=None, help="AnimateDiff pipeline or MotionAdapter folder, or 'tiny'")
    p.add_argument("--adapter", action="append", help="I2V-Adapter folder/file, optionally DIR:WEIGHT; repeatable")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--height", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior-strength", default=None, help="Frame Similarity Prior: 'auto' or a share in [0, 1)")
    p.add_argument("--prior-mask-prob", type=float, default=0.5)
    p.add_argument("--prior-blur-sigma", type=float, default=18.0)
    p.add_argument("--color-match", action="store_true", help="match each frame's colours to frame 0")
    p.add_argument("--step-first-frame", action="store_true", help="denoise frame 0 too (default: kept clean)")
    p.add_argument("--i2v-scale", type=float, default=1.0, help="scale of the adapter's first-frame branch")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--scale", type=int, default=1, help="integer upscaling of the written video (tiny videos)")
    p.add_argument("--out", required=True, help="output video: .gif, .webp or .mp4 (needs imageio-ffmpeg)")
    p.set_defaults(func=cmd_i2v)
    return p


def register(sub) -> None:
    add_i2v_arguments(sub.add_parser("i2v", help="image-to-video with an I2V-Adapter (AnimateDiff pipeline)"))


def register_train(tsub) -> list[str]:
    p = tsub.add_parser("i2v_adapter", help="I2V-Adapter: first-frame attention on clips (frame 0 clean)")
    base = ("--pipeline", "AnimateDiff folder, MotionAdapter folder, or 'tiny'")
    data = ("synthetic", "'synthetic' motion clips or a folder of clips")
    add_training_arguments(p, base=base, data=data, batch_size=2, lr=1e-4, config="I2VAdapterConfig")
    p.add_argument("--num-items", type=int, default=200, help="number of synthetic clips")
    p.add_argument("--frames", dest="num_frames", type=int, default=8, help="frames per clip")
    p.add_argument("--resolutions", default="16", help="pixel sizes, e.g. '16' or '16,24x32'")
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.set_defaults(func=cmd_train_i2v_adapter)
    return ["i2v_adapter"]


def i2v_from_generate(args: argparse.Namespace) -> int:
    """Run `vadapters i2v` from the namespace of `vadapters generate --image ... [--frames N]`: the i2v options
    `generate` lacks take their defaults (the output should be a .gif / .webp / .mp4 path)."""
    defaults = add_i2v_arguments(argparse.ArgumentParser()).parse_args(["--image", args.image, "--out", args.out])
    merged = {**vars(defaults), **{k: v for k, v in vars(args).items() if k in vars(defaults) and v is not None}}
    return cmd_i2v(argparse.Namespace(**merged))
