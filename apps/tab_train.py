"""Train tab: train an adapter in the background with a progress bar, a live loss plot, sample previews and a
Stop button that keeps the last checkpoint and still saves the adapter.

Calls only public functions: `vadapters.train.train_adapter` (ResAdapter, SaRA and any other diffusion method;
MV-Adapter on view sets and I2V-Adapter on clips, each through its own recipe; SAM-Adapter), through
`apps.jobs.TrainingJob`. The adapter lands in
`<workdir>/runs/<run name>/`, which the Generate and Segment tabs list.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zipfile
from typing import Any

from vadapters.errors import BadInputError

from .context import StudioContext
from .jobs import JOBS, RUNNING, TrainingJob
from .security import check_choice, check_number, ui_errors

DIFFUSION_DATA = ("synthetic:shapes", "synthetic:discs")
SAM_DATA = ("synthetic:camouflage", "synthetic:salient", "synthetic:shadow")
RECIPE_DATA = {  # method -> {choice: what its recipe reads}: view sets for MV-Adapter, clips for I2V-Adapter
    "mv_adapter": {"synthetic:views": None},  # None: the recipe's view sets of the synthetic 3D objects
    "i2v_adapter": {"synthetic:motion": "synthetic"},  # synthetic motion clips; a folder of clips works too
}
FOLDER_DATA = {"mv_adapter": False}  # methods whose recipe reads no dataset folder here
DEFAULT_OVERRIDES = {"res_adapter": "rank=4\nalpha=4.0", "sara": "", "sam_adapter": "scale_factor=8"}
MAX_UPLOAD_BYTES = 200 * 2**20
MAX_UPLOAD_FILES = 5000
MAX_UPLOAD_RATIO = 100


def training_methods() -> list[str]:
    """Registered methods with a training entry point here: the diffusion adapters, then SAM-Adapter."""
    from vadapters.core.registry import all_specs
    from vadapters.train import DIFFUSION_HOSTS

    names = [s.name for s in all_specs() if set(s.hosts) & set(DIFFUSION_HOSTS)]
    names.sort(key=lambda n: (n not in DEFAULT_OVERRIDES, n))  # the defaults-tested ones first
    return names + (["sam_adapter"] if "sam_adapter" in {s.name for s in all_specs()} else [])


def data_choices(method: str) -> tuple[str, ...]:
    """The synthetic datasets the Train tab offers for `method` (each recipe reads its own kind of data).

    Example:
        >>> data_choices("mv_adapter"), data_choices("i2v_adapter"), data_choices("sara")
        (('synthetic:views',), ('synthetic:motion',), ('synthetic:shapes', 'synthetic:discs'))
    """
    if method == "sam_adapter":
        return SAM_DATA
    return tuple(RECIPE_DATA[method]) if method in RECIPE_DATA else DIFFUSION_DATA


def parse_overrides(text: str) -> dict[str, Any]:
    """`KEY=VALUE` lines (JSON values, else strings) -> dict.

    Example:
        >>> parse_overrides("rank=4\\nalpha=4.0\\nrule=random")
        {'rank': 4, 'alpha': 4.0, 'rule': 'random'}
    """
    out = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise BadInputError(f"config overrides are KEY=VALUE lines, got {line!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def extract_upload(zip_path: str, dest: str) -> str:
    """Unpack an uploaded dataset `.zip` into `dest` safely; returns the folder that holds the data (the single top
    folder of the archive, if there is one).

    Before anything is written: no absolute or `..` members, at most `MAX_UPLOAD_FILES` files and
    `MAX_UPLOAD_BYTES` unpacked, no member compressed more than `MAX_UPLOAD_RATIO`:1 (a zip bomb), and room on
    the disk. While unpacking, the bytes really written are counted. On any failure `dest` is removed.
    """
    if not zipfile.is_zipfile(zip_path):
        raise BadInputError("the uploaded dataset must be a .zip of a folder")
    root = os.path.realpath(dest)
    with zipfile.ZipFile(zip_path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_UPLOAD_FILES:
            raise BadInputError(f"the archive holds {len(members)} files; at most {MAX_UPLOAD_FILES}")
        unpacked = sum(m.file_size for m in members)
        if unpacked > MAX_UPLOAD_BYTES:
            raise BadInputError(
                f"the archive unpacks to {unpacked / 2**20:.0f} MiB; at most {MAX_UPLOAD_BYTES // 2**20} MiB"
            )
        for m in members:
            target = os.path.realpath(os.path.join(root, m.filename))
            if os.path.isabs(m.filename) or not target.startswith(root + os.sep):
                raise BadInputError(f"the archive member {m.filename!r} points outside its folder")
            if m.file_size > MAX_UPLOAD_RATIO * max(m.compress_size, 1) and m.file_size > 2**20:
                raise BadInputError(
                    f"the archive member {m.filename!r} unpacks {m.file_size / 2**20:.0f} MiB from "
                    f"{m.compress_size / 1024:.0f} KiB (more than {MAX_UPLOAD_RATIO}:1, a zip bomb?); "
                    "upload images that are already compressed (PNG, JPEG)"
                )
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        if shutil.disk_usage(parent).free < 2 * unpacked:
            raise BadInputError(f"not enough free disk space to unpack {unpacked / 2**20:.0f} MiB")
        try:
            os.makedirs(root, exist_ok=True)
            written = 0
            for m in members:
                target = os.path.realpath(os.path.join(root, m.filename))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with archive.open(m) as src, open(target, "wb") as out:
                    while chunk := src.read(2**20):
                        written += len(chunk)
                        if written > MAX_UPLOAD_BYTES:
                            raise BadInputError(f"the archive unpacks to more than {MAX_UPLOAD_BYTES // 2**20} MiB")
                        out.write(chunk)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
    entries = [e for e in os.listdir(root) if not e.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and os.path.isdir(os.path.join(root, entries[0])):
        return os.path.join(root, entries[0])
    return root


def make_job(
    ctx: StudioContext, method: str, base: str, data: str, upload: str | None, steps: Any, batch_size: Any,
    learning_rate: Any, overrides: str, resolutions: str, preview_every: Any, run_name: str, resume: bool,
) -> TrainingJob:  # fmt: skip
    """Validate the form and build (not start) the training job; an unpacked upload is removed when the job ends
    (or at once, when the form is refused)."""
    from vadapters.core.registry import get_method
    from vadapters.core.validation import parse_sizes

    method = check_choice(method, "method", training_methods())
    steps = check_number(steps, "steps", 1, 100_000, integer=True)
    batch_size = check_number(batch_size, "batch size", 1, 256, integer=True)
    learning_rate = check_number(learning_rate, "learning rate", 1e-7, 1.0)
    preview_every = check_number(preview_every, "preview every", 0, 100_000, integer=True)
    config = parse_overrides(overrides)
    get_method(method).config_cls.from_overrides(config)  # names and types, before anything is unpacked or loaded
    out = ctx.run_dir(run_name)
    if os.path.exists(out) and os.listdir(out) and not resume:
        raise BadInputError(f"run {run_name!r} already exists in {ctx.runs_dir}; pick another name or tick Continue")
    sam = method == "sam_adapter"
    if sam:
        options = {"num_items": 200}
    else:
        sizes = parse_sizes((resolutions or "16,24,32").strip(), "resolutions")
        options = {"num_items": 200 if method in RECIPE_DATA else 500, "resolutions": sizes}
    if not FOLDER_DATA.get(method, True) and (upload or data not in data_choices(method)):
        raise BadInputError(f"{method} trains on {', '.join(data_choices(method))} here; a dataset folder is not read")
    unpacked = None
    try:
        if upload:
            uploads = os.path.join(ctx.workdir, "uploads")
            os.makedirs(uploads, exist_ok=True)
            unpacked = tempfile.mkdtemp(prefix=f"{os.path.basename(out)}-", dir=uploads)
            data = extract_upload(upload, unpacked)
        elif data not in data_choices(method):
            data = ctx.roots.resolve(data, what="dataset folder", kind="dir")
        data = RECIPE_DATA.get(method, {}).get(data, data)
        base_path = ctx.optional_path(base, "SAM checkpoint" if sam else "pipeline folder")
    except BaseException:
        if unpacked is not None:
            shutil.rmtree(unpacked, ignore_errors=True)
        raise
    common = {"output_dir": out, "batch_size": batch_size, "learning_rate": learning_rate, "seed": 0,
              "config_overrides": config, "checkpoint_every": max(1, min(50, steps)),
              "validate_every": preview_every}  # fmt: skip

    def run(n: int, resume_run: bool) -> dict:
        from vadapters.train import train_adapter

        return train_adapter(method, base=base_path, data=data, steps=n, resume=resume_run, **options, **common)

    job = TrainingJob(run_name, run, out, steps)
    if unpacked is not None:
        job.cleanup.append(lambda: shutil.rmtree(unpacked, ignore_errors=True))
    return job


def _status(snap: dict[str, Any]) -> str:
    lines = [f"**{snap['name']}**: {snap['state']} - {snap['message']} ({snap['seconds']} s)"]
    if snap["checkpoint"]:
        lines.append(f"last checkpoint: `{snap['checkpoint']}`")
    if snap["adapter_files"]:
        lines.append(f"adapter saved in `{snap['output_dir']}` (pick it in Generate / Segment)")
    return "\n\n".join(lines)


def _loss_frame(snap: dict[str, Any]):
    import pandas as pd

    steps = [int(r["step"]) for r in snap["records"]]
    return pd.DataFrame({"step": pd.Series(steps, dtype=int), "loss": [float(r["loss"]) for r in snap["records"]]})


def _previews(job: TrainingJob) -> list[Any]:
    import numpy as np
    from PIL import Image

    return [(np.asarray(Image.open(p).convert("RGB")), os.path.basename(p)) for p in job.previews()]


def report(job: TrainingJob) -> tuple[str, Any, list, dict]:
    snap = job.snapshot()
    info = {k: snap[k] for k in ("state", "step", "max_steps", "output_dir", "checkpoint", "adapter_files")}
    return _status(snap), _loss_frame(snap), _previews(job), info


def build(ctx: StudioContext, heavy: dict[str, Any]) -> None:
    """Add the Train tab's components and events to the current `gr.Blocks`."""
    import gradio as gr
    import pandas as pd

    methods = training_methods()
    with gr.Row():
        with gr.Column(scale=2):
            method = gr.Dropdown(methods, value=methods[0], label="Method")
            base = gr.Textbox(label="Base model", placeholder="empty = embedded default (pipeline or tiny SAM)")
            data = gr.Dropdown(
                list(DIFFUSION_DATA), value=DIFFUSION_DATA[0], allow_custom_value=True,
                label="Dataset (synthetic generator, or a folder under the allowed roots)",
            )  # fmt: skip
            upload = gr.File(label="...or upload a dataset .zip", file_types=[".zip"], type="filepath")
            run_name = gr.Textbox(label="Run name", value="my-adapter")
            resume = gr.Checkbox(label="Continue an existing run of this name", value=False)
        with gr.Column(scale=2):
            with gr.Row():
                steps = gr.Number(label="Steps", value=100, precision=0, minimum=1)
                batch_size = gr.Number(label="Batch size", value=4, precision=0, minimum=1)
                learning_rate = gr.Number(label="Learning rate", value=1e-3, minimum=0)
            with gr.Row():
                resolutions = gr.Textbox(label="Resolutions (diffusion)", value="16,24,32")
                preview_every = gr.Number(label="Preview every N steps (0: off)", value=25, precision=0, minimum=0)
            overrides = gr.Textbox(label="Config overrides (KEY=VALUE lines)", value=DEFAULT_OVERRIDES.get(methods[0], ""),
                                   lines=3)  # fmt: skip
            with gr.Row():
                start = gr.Button("Train", variant="primary")
                stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown("No training job yet.")
    with gr.Row():
        loss = gr.LinePlot(
            pd.DataFrame({"step": pd.Series(dtype=int), "loss": pd.Series(dtype=float)}),
            x="step",
            y="loss",
            title="Loss",
            height=260,
        )
        previews = gr.Gallery(label="Sample previews", columns=2, height=260, object_fit="contain")
    info = gr.JSON(label="Job")

    def on_method(name):
        choices = list(data_choices(name))
        return gr.Dropdown(choices=choices, value=choices[0]), DEFAULT_OVERRIDES.get(name, "")

    @ui_errors
    def on_train(
        method, base, data, upload, steps, batch_size, learning_rate, overrides, resolutions, preview_every,
        run_name, resume, request: gr.Request,
        progress=gr.Progress(),  # noqa: B008 - Gradio's progress idiom
    ):  # fmt: skip
        job = make_job(ctx, method, base, data, upload, steps, batch_size, learning_rate, overrides, resolutions,
                       preview_every, run_name, resume)  # fmt: skip
        try:
            JOBS.submit(job, owner=request.session_hash)
        except BaseException:
            job.withdraw()  # never started: remove what make_job unpacked
            raise
        while True:
            snap = job.snapshot()
            progress((snap["step"], snap["max_steps"]), desc=snap["message"], unit="steps")
            yield report(job)
            if job.done:
                break
            job.wait(0.5)
        if job.state not in (RUNNING, "finished", "stopped"):
            raise gr.Error(f"training failed: {job.message}")

    def on_stop(request: gr.Request):
        job = JOBS.stop(owner=request.session_hash)  # only the caller's own job
        if job is None:
            return "You have no training job running or queued.", _loss_frame({"records": []}), [], {}
        deadline = time.time() + 120
        while not job.wait(0.5) and time.time() < deadline:
            pass
        return report(job)

    # Gradio finds the session by the annotation, which `from __future__ import annotations` leaves as a string
    on_train.__annotations__["request"] = on_stop.__annotations__["request"] = gr.Request
    method.change(on_method, method, [data, overrides], api_name="train_method_defaults", queue=False)
    event = start.click(
        on_train,
        [method, base, data, upload, steps, batch_size, learning_rate, overrides, resolutions, preview_every,
         run_name, resume],
        [status, loss, previews, info],
        api_name="train",
        concurrency_id="train",  # not the heavy slot: the job trains in its own thread, queued by JOBS
        concurrency_limit=None,
    )  # fmt: skip
    stop.click(on_stop, None, [status, loss, previews, info], api_name="train_stop", cancels=[event],
               concurrency_limit=None, concurrency_id="control")  # fmt: skip
