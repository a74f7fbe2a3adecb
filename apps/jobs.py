"""Background training jobs for vadapters studio: progress, loss history, and a Stop that keeps a checkpoint.

A job runs the library's training function (`vadapters.train.train_adapter`, for every method) in a thread,
inside `vadapters.train.trainer.observe_steps`: each optimizer step is recorded (step, loss, lr, seconds), and when Stop was asked the observer raises `KeyboardInterrupt`, which the trainer
handles as Ctrl-C (it saves the checkpoint of the last finished step). The job then writes the adapter from that
checkpoint by calling the same training function with `steps=<that step>, resume=True` (no further step runs),
so a stopped run still leaves an adapter the Generate and Segment tabs can load.

Example:
    >>> import time
    >>> def fake_train(steps, resume):  # stands in for train_adapter(..., steps=steps, resume=resume)
    ...     return {"steps": steps, "final_loss": 0.5}
    >>> job = TrainingJob("demo", fake_train, output_dir="unused", max_steps=3).start()
    >>> job.wait(10)
    True
    >>> job.snapshot()["state"]
    'finished'
"""

from __future__ import annotations

import glob
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from vadapters.errors import AdapterStateError

RUNNING, FINISHED, STOPPED, FAILED = "running", "finished", "stopped", "failed"


class TrainingJob:
    """One training run in a background thread.

    Args:
        name: a label for the UI.
        run: `run(steps, resume) -> summary`; calls the library's training function.
        output_dir: the run's folder (adapter, `checkpoints/`, `validation/`, `train_log.jsonl`).
        max_steps: the run's length (for the progress bar).
    """

    def __init__(self, name: str, run: Callable[[int, bool], dict], output_dir: str, max_steps: int) -> None:
        self.name, self.run, self.output_dir, self.max_steps = name, run, output_dir, int(max_steps)
        self.records: list[dict[str, Any]] = []
        self.state = RUNNING
        self.message = "starting"
        self.summary: dict[str, Any] | None = None
        self.started = time.time()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=f"vadapters-train-{name}", daemon=True)

    # ------------------------------------------------------------------------------------------------ control
    def start(self) -> TrainingJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop after the current step (the trainer then saves a checkpoint)."""
        self._stop.set()
        if self.state == RUNNING:
            self.message = "stopping after the current step"

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job ended; True if it did."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # ----------------------------------------------------------------------------------------------- the run
    def _observe(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.records.append({k: record[k] for k in ("step", "loss", "lr", "seconds")})
            self.message = f"step {record['step']} / {record['max_steps']}, loss {record['loss']:.4f}"
        if self._stop.is_set():
            raise KeyboardInterrupt  # the trainer saves the last finished step, as on Ctrl-C

    def _main(self) -> None:
        from vadapters.train.trainer import observe_steps

        try:
            try:
                with observe_steps(self._observe):
                    self.summary = self.run(self.max_steps, True)
                self.state, self.message = FINISHED, f"finished {self.summary.get('steps')} steps"
            except KeyboardInterrupt:
                self._export_after_stop()
        except Exception as exc:  # noqa: BLE001 - shown in the UI; the traceback goes to the server log
            traceback.print_exc()
            self.state, self.message = FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            self._done.set()

    def _export_after_stop(self) -> None:
        from vadapters.train.checkpoints import checkpoint_step, find_latest_checkpoint

        latest = find_latest_checkpoint(self.output_dir)
        if latest is None:
            self.state, self.message = STOPPED, "stopped before the first step finished; nothing was saved"
            return
        step = checkpoint_step(latest)
        self.summary = self.run(step, True)  # resumes at `step` and only writes the adapter
        self.state = STOPPED
        self.message = f"stopped at step {step}; kept checkpoint {os.path.basename(latest)} and saved the adapter"

    # ------------------------------------------------------------------------------------------------ report
    def previews(self, limit: int = 4) -> list[str]:
        """The newest validation images of the run."""
        files = glob.glob(os.path.join(self.output_dir, "validation", "**", "*.png"), recursive=True)
        return sorted(files, key=os.path.getmtime)[-limit:]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            records = list(self.records)
        from vadapters.train.checkpoints import find_latest_checkpoint

        return {
            "name": self.name,
            "state": self.state,
            "message": self.message,
            "step": records[-1]["step"] if records else 0,
            "max_steps": self.max_steps,
            "records": records,
            "output_dir": self.output_dir,
            "checkpoint": find_latest_checkpoint(self.output_dir) if os.path.isdir(self.output_dir) else None,
            "adapter_files": list((self.summary or {}).get("adapter_files") or []),
            "seconds": round(time.time() - self.started, 1),
        }


class JobManager:
    """At most one training job at a time (the device is shared with the other tabs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: TrainingJob | None = None

    def start(self, job: TrainingJob) -> TrainingJob:
        with self._lock:
            if self.current is not None and not self.current.done:
                raise AdapterStateError(
                    f"training job {self.current.name!r} is still running; stop it (Stop button) or wait for it"
                )
            self.current = job
        return job.start()

    def stop(self) -> TrainingJob | None:
        job = self.current
        if job is not None:
            job.stop()
        return job


JOBS = JobManager()
"""The studio's job slot (one process)."""
