"""What every `vadapters` command parses the same way: `DIR:WEIGHT`, `KEY=VALUE`, and the training options.

Example:
    >>> parse_adapter("out/res:0.5"), parse_sets(["rank=4", "mode=row"])
    (('out/res', 0.5), {'rank': 4, 'mode': 'row'})
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def parse_adapter(spec: str) -> tuple[str, float | None]:
    """`DIR` or `DIR:WEIGHT` (the weight is the last colon-separated float, if any)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return spec, None


def parse_value(text: str) -> Any:
    """A JSON value (`4`, `1e-3`, `true`, `[1, 2]`), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """`["KEY=VALUE", ...]` (repeated `--set`) -> a dict of parsed values."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def add_training_arguments(
    p: argparse.ArgumentParser,
    *,
    base: tuple[str, str],
    data: tuple[str, str] | None,
    batch_size: int,
    lr: float,
    config: str,
) -> argparse.ArgumentParser:
    """The options every `vadapters train <method>` has: the base (`base = (flag, help)`), the data (`(default,
    help)`, or None), `--out`, `--steps`, `--batch-size`, `--lr`, `--warmup-steps`, `--set` (fields of `config`),
    `--seed`, `--checkpoint-every`, `--validate-every`."""
    p.add_argument(base[0], dest="base", default=None, help=base[1])
    if data is not None:
        p.add_argument("--data", default=data[0], help=data[1])
    p.add_argument("--out", required=True, help="output folder (adapter, checkpoints, validation, logs)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="peak AdamW learning rate")
    p.add_argument(
        "--warmup-steps", type=int, default=None, help="linear learning-rate warm-up steps (default: the recipe's)"
    )
    p.add_argument("--set", action="append", default=[], help=f"{config} field KEY=VALUE; repeatable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--validate-every", type=int, default=0)
    return p


def run_training(method: str, args: argparse.Namespace, *recipe_options: str, overrides: Any = None) -> int:
    """`vadapters.train.train_adapter(method, ...)` from the options of `add_training_arguments` plus the
    recipe's own options named in `recipe_options` (attributes of `args`); prints the summary as JSON."""
    from vadapters.train import train_adapter

    summary = train_adapter(
        method,
        base=args.base,
        data=getattr(args, "data", None),
        output_dir=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        **({} if args.warmup_steps is None else {"lr_warmup_steps": args.warmup_steps}),
        config_overrides={**parse_sets(args.set), **(overrides or {})},
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every,
        **{name: getattr(args, name) for name in recipe_options},
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0
