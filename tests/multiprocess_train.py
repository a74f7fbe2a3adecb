"""Train every trainer's method a few steps and dump each process's trainable values (run by accelerate launch).

`python tests/multiprocess_train.py OUT BATCH [METHOD ...]`, alone (one process) or under
`accelerate launch --multi_gpu --num_processes 2` (CPU processes, gloo). Each method goes through its registered
recipe (`vadapters.train.recipes.find_recipe`, as `train_adapter` does) and the one `Trainer`; afterwards every
process writes `OUT/METHOD/rank{R}.safetensors` (its trainable parameters by name) and `rank{R}.json` (processes,
final loss, or the error). `BATCH` is the per-process batch size, so 2 processes at BATCH equal 1 at 2 x BATCH.
Used by tests/test_multiprocess.py.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VADAPTERS_NO_PROGRESS", "1")

# method -> (config overrides, recipe options, learning rate); small data so that a few steps take seconds
CASES: dict[str, tuple[dict, dict, float]] = {
    "res_adapter": ({"rank": 4, "alpha": 4.0}, {"resolutions": "16", "num_items": 8}, 1e-3),
    "sara": (
        {"quantile": 0.1, "rank_min_dim": 8, "lambda_rank": 1e-2, "progressive_at": 2},
        {"resolutions": "16", "num_items": 8},
        1e-3,
    ),
    "sam_adapter": ({}, {"num_items": 10, "val_fraction": 0.2}, 1e-3),
    "mv_adapter": ({"use_ref": True}, {"num_items": 8, "num_views": 2, "resolutions": "16"}, 1e-3),  # random refs
    "i2v_adapter": ({}, {"num_items": 8, "num_frames": 8, "resolutions": "16"}, 1e-3),
}
STEPS = 3


def run(method: str, out: str, batch: int) -> None:
    import torch
    from safetensors.torch import save_file

    from vadapters.train import RecipeInputs, Trainer, TrainingArguments, find_recipe

    overrides, options, lr = CASES[method]
    folder = os.path.join(out, method)
    os.makedirs(folder, exist_ok=True)
    inputs = RecipeInputs(None, None, dict(overrides), batch, 0, method)
    recipe = find_recipe(method).build(inputs, **options)
    args = TrainingArguments(
        output_dir=os.path.join(folder, "run"), max_steps=STEPS, learning_rate=lr, batch_size=batch,
        checkpoint_every=0, lr_scheduler="constant", seed=0,
    )  # fmt: skip
    trainer = Trainer(recipe, args)
    summary = trainer.train()
    rank = trainer.accelerator.process_index
    ids = {id(p) for p in recipe.trainable_parameters()}
    values = {n: p.detach().clone().contiguous() for n, p in recipe.model.named_parameters() if id(p) in ids}
    save_file(values, os.path.join(folder, f"rank{rank}.safetensors"))
    info = {"processes": trainer.accelerator.num_processes, "loss": summary["final_loss"], "tensors": len(values)}
    with open(os.path.join(folder, f"rank{rank}.json"), "w") as fh:
        json.dump(info, fh)
    trainer.accelerator.wait_for_everyone()
    torch.manual_seed(0)


def main(argv: list[str]) -> int:
    out, batch, methods = argv[0], int(argv[1]), argv[2:] or list(CASES)
    failed = 0
    for method in methods:
        try:
            run(method, out, batch)
        except Exception:  # one broken method must not hide the others' results
            failed += 1
            rank = os.environ.get("RANK", "0")
            os.makedirs(os.path.join(out, method), exist_ok=True)
            with open(os.path.join(out, method, f"rank{rank}.error"), "w") as fh:
                fh.write(traceback.format_exc())
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
