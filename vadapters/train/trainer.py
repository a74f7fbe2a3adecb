"""The one training loop (HF Accelerate) that every method's recipe plugs into.

A *recipe* says what to train and how to compute the loss; the `Trainer` does everything else: optimizer and
schedule, mixed precision and devices, gradient accumulation, progress bar and `train_log.jsonl`, atomic
checkpoints, exact resume, validation calls, and the final adapter save.

Recipe protocol (attributes and methods the trainer uses; the optional ones may be absent):

- `recipe.model` (`nn.Module`): the module that holds every trainable parameter; it is passed to
  `accelerator.prepare` (device placement, mixed precision, DDP).
- `recipe.trainable_parameters()` -> iterable of `nn.Parameter` (all with `requires_grad=True`, all inside
  `recipe.model`); the optimizer sees only these, and checkpoints store only these.
- `recipe.dataset`: a map-style dataset.
- `recipe.batch_sampler(seed, batch_size)` (optional) -> a batch sampler with `__len__`, `batch_size` and
  `set_epoch(epoch)` whose batches depend on `(seed, epoch)` only; resuming skips the consumed batches. Without it
  the trainer uses `BucketBatchSampler` over `recipe.resolutions` (a list of `(height, width)`), whose items are
  `(index, height, width)` keys of `recipe.dataset`. Its batches are global: `batch_size` is the per-process
  batch times the number of processes, and each process gets its rows of every batch (so N processes train on
  the batches of one process at N times the batch size).
- `recipe.collate` (optional): the `DataLoader`'s `collate_fn`.
- `recipe.find_unused_parameters` (optional `bool`): some trainable parameters get no gradient from the loss
  (DDP must look for them on several processes).
- `recipe.batch_size` (optional `int`): used when `TrainingArguments.batch_size` is `None`.
- `recipe.setup(accelerator, model)` (optional): called once after `prepare`, with the prepared (possibly
  wrapped) model; the recipe should run its forward pass through it (DDP averages the gradients of calls through
  the wrapper only) and move its frozen parts to `accelerator.device`.
- `recipe.on_train_begin(optimizer=..., max_steps=...)` (optional): called once after `setup`, before a
  checkpoint is restored, with the (prepared) optimizer and the run's total steps - for methods whose training
  changes the trainable set mid-run (SaRA's progressive re-selection).
- `recipe.loss(batch, step) -> scalar tensor`: the loss of one micro-batch; `step` is the number of optimizer
  steps done so far. Randomness should come from a generator the recipe owns (and saves in `state_dict`), not
  from the global RNG, so that resuming reproduces an uninterrupted run; per-sample draws should go through
  `vadapters.core.shards.BatchShard.of(accelerator)` (the global batch's numbers, this process's rows).
- `recipe.validate(step, output_dir) -> list[str]` (optional): write validation images, return their paths;
  called on the main process every `validate_every` steps, in eval mode, without touching the global RNG.
- `recipe.save(output_dir) -> list[str]`: write the final adapter (`vadapters.save_pretrained`).
- `recipe.state_dict()` / `recipe.load_state_dict(state)` (optional): extra per-process state (RNG
  generators, EMA, ...) stored in every checkpoint.

Checkpoints (`vadapters.train.checkpoints`) are `output_dir/checkpoints/step-N/` folders, written as `.tmp-step-N`
and renamed when complete: every `checkpoint_every` steps, at the end, and on `KeyboardInterrupt` (the state as
of the last finished step, then the interrupt is re-raised with the checkpoint's path as `.checkpoint`).

Observers (`observe_steps(callback)`, a context manager): every `Trainer.train()` run in the current thread calls
`callback(record)` after each optimizer step (`record`: `step`, `max_steps`, `loss`, `lr`, `seconds`,
`output_dir`); a callback that raises `KeyboardInterrupt` stops the run exactly like Ctrl-C (an app's Stop button,
run from another thread through a flag the callback reads).

Example:
    >>> from vadapters.train.trainer import TrainingArguments
    >>> TrainingArguments(output_dir="out", max_steps=10, learning_rate=1e-4).lr_scheduler
    'constant'
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vadapters.core.validation import check_field_types
from vadapters.errors import BadInputError
from vadapters.train import checkpoints as ckpt
from vadapters.train.checkpoints import LOG_NAME, find_latest_checkpoint

__all__ = ["Trainer", "TrainingArguments", "find_latest_checkpoint", "observe_steps"]

_OBSERVERS = threading.local()


@contextlib.contextmanager
def observe_steps(callback: Any):
    """Call `callback(record)` after every optimizer step of the `Trainer.train()` runs in this thread.

    `record` holds `step`, `max_steps`, `loss`, `lr`, `seconds` and `output_dir`. Raising `KeyboardInterrupt`
    in the callback stops training as Ctrl-C does: a checkpoint of the last finished step is saved, then the
    interrupt propagates to the caller.

    Example:
        >>> records = []
        >>> with observe_steps(records.append):
        ...     len(_OBSERVERS.callbacks)
        1
        >>> getattr(_OBSERVERS, "callbacks", [])
        []
    """
    callbacks = getattr(_OBSERVERS, "callbacks", [])
    _OBSERVERS.callbacks = [*callbacks, callback]
    try:
        yield callback
    finally:
        _OBSERVERS.callbacks = callbacks


def _arg(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainingArguments:
    """Options of the training loop (method-independent; the method's own options live in its config).

    Every field carries a `help` text (`TrainingArguments.help()` lists them); `__post_init__` validates.
    """

    output_dir: str = field(metadata={"help": "Folder for the final adapter, checkpoints/, validation/, logs."})
    max_steps: int = _arg(100, "Optimizer steps to train for, in total across resumes.")
    learning_rate: float = _arg(1e-4, "Peak AdamW learning rate.")
    batch_size: int | None = _arg(None, "Per-device batch size; None takes the recipe's batch_size.")
    gradient_accumulation_steps: int = _arg(1, "Micro-batches per optimizer step.")
    lr_warmup_steps: int = _arg(0, "Linear warmup steps from 0 to the peak rate.")
    lr_scheduler: str = _arg("constant", "After warmup: 'constant', or 'cosine' decay to 0 at max_steps.")
    weight_decay: float = _arg(0.0, "AdamW decoupled weight decay.")
    max_grad_norm: float = _arg(1.0, "Gradient clipping norm; 0 disables clipping.")
    checkpoint_every: int = _arg(50, "Save a resumable checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = _arg(2, "How many of the latest checkpoints to keep.")
    validate_every: int = _arg(0, "Call recipe.validate every N steps (0: never).")
    seed: int = _arg(0, "Seed of the global RNGs, the data order and the recipe's generator.")
    mixed_precision: str = _arg("no", "'no', 'fp16' (GPU only) or 'bf16'; trainable parameters stay fp32.")
    num_workers: int = _arg(0, "DataLoader worker processes.")
    resume: bool = _arg(True, "Continue from the latest complete checkpoint in output_dir, if any.")
    log_every: int = _arg(10, "Append a train_log.jsonl line every N steps (and at the last step).")

    def __post_init__(self) -> None:
        self.output_dir = os.fspath(self.output_dir)
        check_field_types(self)
        ints = {"max_steps": 1, "gradient_accumulation_steps": 1, "keep_checkpoints": 1, "log_every": 1}
        ints.update(dict.fromkeys(("lr_warmup_steps", "checkpoint_every", "validate_every", "num_workers"), 0))
        problems = [
            f"{k} must be an int >= {low}, got {getattr(self, k)!r}"
            for k, low in ints.items()
            if not isinstance(getattr(self, k), int) or getattr(self, k) < low
        ]
        checks = [
            (bool(self.output_dir), "output_dir must be a folder path"),
            (
                self.batch_size is None or (isinstance(self.batch_size, int) and self.batch_size >= 1),
                f"batch_size must be None or an int >= 1, got {self.batch_size!r}",
            ),
            (
                math.isfinite(self.learning_rate) and self.learning_rate > 0,
                f"learning_rate must be > 0, got {self.learning_rate!r}",
            ),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}"),
            (self.max_grad_norm >= 0, f"max_grad_norm must be >= 0, got {self.max_grad_norm!r}"),
            (
                self.lr_scheduler in ("constant", "cosine"),
                f"lr_scheduler must be 'constant' or 'cosine', got {self.lr_scheduler!r}",
            ),
            (
                self.mixed_precision in ("no", "fp16", "bf16"),
                f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}",
            ),
        ]
        problems += [message for ok, message in checks if not ok]
        if problems:
            raise BadInputError("TrainingArguments: " + "; ".join(problems))

    @classmethod
    def from_options(cls, output_dir: Any, **options: Any) -> TrainingArguments:
        """`TrainingArguments(output_dir, **options)`, with unknown option names refused by name (they usually come
        from a user's `**training_kwargs`)."""
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise BadInputError(f"unknown training option(s) {unknown}; see TrainingArguments.help()")
        return cls(output_dir=os.fspath(output_dir), **options)

    @classmethod
    def help(cls) -> str:
        """One line per field: name, default, help text."""
        fields = dataclasses.fields(cls)
        defaults = ["(required)" if f.default is dataclasses.MISSING else repr(f.default) for f in fields]
        return "\n".join(f"{f.name} = {d}: {f.metadata['help']}" for f, d in zip(fields, defaults))


def _lr_lambda(warmup: int, total: int, kind: str):
    def factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        if kind == "cosine":
            progress = min(1.0, (i - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def _make_accelerator(args: TrainingArguments, find_unused_parameters: bool = False):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    kwargs = {
        "cpu": not torch.cuda.is_available(),
        "mixed_precision": args.mixed_precision,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        # each global batch (the sampler's, `batch_size` x processes) is split across the processes, so N processes
        # see the batches of one process at N times the batch size (recipes draw their rows' noise: BatchShard)
        "dataloader_config": DataLoaderConfiguration(split_batches=True),
        "kwargs_handlers": [DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    }
    try:
        return Accelerator(**kwargs)
    except ValueError as exc:  # an earlier run in this process fixed another precision / device
        if "already been initialized" not in str(exc) or PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(**kwargs)


class Trainer:
    """Runs a recipe with HF Accelerate: `Trainer(recipe, args).train()` -> summary dict.

    Args:
        recipe: an object following the recipe protocol in this module's docstring.
        args (`TrainingArguments`): loop options.
    """

    def __init__(self, recipe: Any, args: TrainingArguments) -> None:
        needed = ("model", "trainable_parameters", "dataset", "loss", "save")
        missing = [a for a in needed if not hasattr(recipe, a)]
        if not hasattr(recipe, "batch_sampler") and not hasattr(recipe, "resolutions"):
            missing.append("batch_sampler or resolutions")
        if missing:
            raise BadInputError(f"{type(recipe).__name__} is not a training recipe: it lacks {missing}")
        if not isinstance(recipe.model, nn.Module):
            raise BadInputError(f"recipe.model must be an nn.Module, got {type(recipe.model).__name__}")
        batch_size = args.batch_size or getattr(recipe, "batch_size", None)
        if batch_size is None:
            raise BadInputError("set TrainingArguments.batch_size (the recipe has no batch_size)")
        if args.batch_size is not None and getattr(recipe, "batch_size", None) not in (None, args.batch_size):
            raise BadInputError(f"batch_size {args.batch_size} differs from the recipe's {recipe.batch_size}")
        self.recipe = recipe
        self.args = args
        self.batch_size = int(batch_size)
        self.accelerator = None

    # ------------------------------------------------------------------------------------------------ set-up
    def _trainable(self) -> tuple[list[nn.Parameter], dict[str, nn.Parameter]]:
        params = list(self.recipe.trainable_parameters())
        if not params:
            raise BadInputError("the recipe has no trainable parameters (was the adapter injected?)")
        frozen = [i for i, p in enumerate(params) if not p.requires_grad]
        if frozen:
            raise BadInputError(f"{len(frozen)} of the recipe's trainable parameters have requires_grad=False")
        ids = {id(p) for p in params}
        named = {n: p for n, p in self.recipe.model.named_parameters() if id(p) in ids}
        if len(named) != len(ids):
            raise BadInputError("every trainable parameter must belong to recipe.model")
        return params, named

    def _loader(self, seed: int, processes: int = 1):
        """The DataLoader of global batches (`batch_size` x `processes` items; `prepare` gives each process its
        rows) and its batch sampler."""
        from torch.utils.data import DataLoader

        recipe, args = self.recipe, self.args
        size = self.batch_size * processes
        if hasattr(recipe, "batch_sampler"):
            sampler = recipe.batch_sampler(seed, size)
        else:
            from vadapters.train.buckets import BucketBatchSampler

            sampler = BucketBatchSampler(len(recipe.dataset), size, list(recipe.resolutions), seed=seed)
        if len(sampler) == 0:
            raise BadInputError(f"an epoch has no batches ({len(recipe.dataset)} items, batch size {size})")
        loader = DataLoader(
            recipe.dataset,
            batch_sampler=sampler,
            collate_fn=getattr(recipe, "collate", None),
            num_workers=args.num_workers,
            generator=torch.Generator().manual_seed(seed),
            persistent_workers=args.num_workers > 0,
        )
        return loader, sampler

    def _save(self, mark: tuple, started: float) -> str:
        step, epoch, consumed, recipe_state = mark[:4]
        args, accelerator = self.args, self.accelerator
        state = {
            "step": step,
            "epoch": epoch,
            "batches_in_epoch": consumed,
            "max_steps": args.max_steps,
            "seconds": round(time.time() - started, 3),
            **self._settings(),
        }
        return ckpt.save_checkpoint(accelerator, args.output_dir, state, recipe_state, args.keep_checkpoints)

    def _settings(self) -> dict[str, Any]:
        return {
            "seed": self.args.seed,
            "batch_size": self.batch_size,
            "gradient_accumulation_steps": self.args.gradient_accumulation_steps,
            "num_processes": self.accelerator.num_processes,
        }

    def _log(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with open(os.path.join(self.args.output_dir, LOG_NAME), "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    # --------------------------------------------------------------------------------------------------- train
    def train(self) -> dict[str, Any]:
        """Train (or resume) up to `max_steps`, save the adapter with `recipe.save`, return a summary."""
        from accelerate.utils import set_seed
        from tqdm.auto import tqdm

        args, recipe = self.args, self.recipe
        unused = bool(getattr(recipe, "find_unused_parameters", False))
        accelerator = self.accelerator = _make_accelerator(args, unused)
        set_seed(args.seed)
        os.makedirs(args.output_dir, exist_ok=True)
        params, named = self._trainable()
        if args.mixed_precision != "no":  # optimizer states and updates stay in fp32
            for p in params:
                p.data = p.data.float()
        optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
        # split batches: the prepared scheduler steps once per optimizer step, whatever the number of processes
        schedule = _lr_lambda(args.lr_warmup_steps, args.max_steps, args.lr_scheduler)
        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        loader, sampler = self._loader(args.seed, accelerator.num_processes)
        model, optimizer, loader, lr_scheduler = accelerator.prepare(recipe.model, optimizer, loader, lr_scheduler)
        if len(loader) == 0:
            raise BadInputError(f"an epoch has no batches on each of the {accelerator.num_processes} processes")
        ckpt.register_trainable_hooks(accelerator, named)
        if hasattr(recipe, "setup"):
            recipe.setup(accelerator, model)
        if hasattr(recipe, "on_train_begin"):
            recipe.on_train_begin(optimizer=optimizer, max_steps=args.max_steps)

        latest = find_latest_checkpoint(args.output_dir) if args.resume else None
        resumed = ckpt.checkpoint_step(latest) if latest else None
        if accelerator.is_main_process:
            ckpt.clean_output(args.output_dir, resumed)
        accelerator.wait_for_everyone()
        step, epoch, consumed = 0, 0, 0
        if latest:
            state = ckpt.load_checkpoint(accelerator, latest, recipe, self._settings())
            step, epoch, consumed = int(state["step"]), int(state["epoch"]), int(state["batches_in_epoch"])
        start_step, started = step, time.time()
        get_state = getattr(recipe, "state_dict", None)
        mark = self._mark(step, epoch, consumed, get_state)  # the state as of the last finished step
        saved_at, last_loss, losses = set(), None, []
        no_bar = not accelerator.is_local_main_process or os.environ.get("VADAPTERS_NO_PROGRESS") == "1"
        bar = tqdm(total=args.max_steps, initial=step, desc="train", disable=no_bar, dynamic_ncols=True)
        model.train()
        try:
            while step < args.max_steps:
                if consumed >= len(loader):
                    epoch, consumed = epoch + 1, 0
                sampler.set_epoch(epoch)
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
                epoch_loader = accelerator.skip_first_batches(loader, consumed) if consumed else loader
                try:
                    for batch in epoch_loader:
                        with accelerator.accumulate(model):
                            loss = recipe.loss(batch, step)
                            accelerator.backward(loss)
                            if accelerator.sync_gradients and args.max_grad_norm > 0:
                                accelerator.clip_grad_norm_(params, args.max_grad_norm)
                            lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
                            optimizer.step()
                            lr_scheduler.step()
                            optimizer.zero_grad(set_to_none=True)
                        consumed += 1
                        losses.append(loss.detach().float())
                        if not accelerator.sync_gradients:
                            continue
                        step += 1
                        mark = self._mark(step, epoch, consumed, get_state)
                        local = torch.stack(losses).mean()
                        losses = []
                        last_loss = float(local)
                        if not math.isfinite(last_loss):
                            raise FloatingPointError(
                                f"the loss is {last_loss} at step {step}; lower the learning rate or the precision"
                            )
                        bar.update(1)
                        bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
                        if step % args.log_every == 0 or step == args.max_steps:
                            mean = float(accelerator.gather(local.reshape(1)).mean())
                            seconds = round(time.time() - started, 3)
                            self._log({"step": step, "loss": mean, "lr": lr, "seconds": seconds})
                        if args.checkpoint_every and step % args.checkpoint_every == 0:
                            self._save(mark, started)
                            saved_at.add(step)
                        if args.validate_every and step % args.validate_every == 0 and hasattr(recipe, "validate"):
                            self._validate(model, step)
                        for callback in getattr(_OBSERVERS, "callbacks", ()):
                            callback(
                                {
                                    "step": step,
                                    "max_steps": args.max_steps,
                                    "loss": last_loss,
                                    "lr": lr,
                                    "seconds": round(time.time() - started, 3),
                                    "output_dir": args.output_dir,
                                }
                            )
                        if step >= args.max_steps:
                            break
                finally:
                    getattr(epoch_loader, "end", lambda: None)()
        except KeyboardInterrupt as interrupt:
            if mark[0] > start_step and mark[0] not in saved_at:
                optimizer.zero_grad(set_to_none=True)
                torch.set_rng_state(mark[4])
                accelerator.step = mark[5]
                self._save(mark, started)
            latest = find_latest_checkpoint(args.output_dir)
            if accelerator.is_main_process and latest is not None and not interrupt.args:
                # what a caller shows (the CLI: one line); a rerun of the same call resumes from it
                interrupt.checkpoint = latest
                interrupt.args = (f"training interrupted; checkpoint saved at {latest}; run it again to resume",)
            raise
        finally:
            bar.close()
        if step not in saved_at and step > start_step:
            self._save(mark, started)
        accelerator.wait_for_everyone()
        written = recipe.save(args.output_dir) if accelerator.is_main_process else []
        accelerator.wait_for_everyone()
        seconds = time.time() - started
        done = step - start_step
        return {
            "steps": step,
            "steps_this_run": done,
            "resumed_from": resumed,
            "final_loss": last_loss,
            "seconds": round(seconds, 3),
            "sec_per_step": round(seconds / done, 4) if done else None,
            "output_dir": args.output_dir,
            "adapter_files": written,
            "checkpoint": find_latest_checkpoint(args.output_dir),
        }

    def _mark(self, step: int, epoch: int, consumed: int, get_state: Any) -> tuple:
        recipe_state = get_state() if get_state is not None else None
        return step, epoch, consumed, recipe_state, torch.get_rng_state(), self.accelerator.step

    def _validate(self, model: nn.Module, step: int) -> None:
        accelerator = self.accelerator
        if accelerator.is_main_process:
            devices = [accelerator.device] if accelerator.device.type == "cuda" else []
            unwrapped = accelerator.unwrap_model(model)
            unwrapped.eval()
            try:
                with torch.random.fork_rng(devices=devices), torch.no_grad():
                    paths = self.recipe.validate(step, self.args.output_dir) or []
            finally:
                unwrapped.train()
            self._log({"step": step, "validation": [os.fspath(p) for p in paths]})
        accelerator.wait_for_everyone()
