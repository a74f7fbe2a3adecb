"""Background training jobs for vadapters studio: progress, loss history, and a Stop that keeps a checkpoint.

A job runs the library's training function (`vadapters.train.train_adapter`, for every method) in a thread,
inside `vadapters.train.trainer.observe_steps`: each optimizer step is recorded (step, loss, lr, seconds), and when Stop was asked the observer raises `KeyboardInterrupt`, which the trainer
handles as Ctrl-C (it saves the checkpoint of the last finished step). The job then writes the adapter from that
checkpoint by calling the same training function with `steps=<that step>, resume=True` (no further step runs),
so a stopped run still leaves an adapter the Generate and Segment tabs can load.

`JobManager` runs one job at a time; each job belongs to the session that submitted it. Jobs of other sessions
wait in a visible queue (their status says how many are ahead), and Stop stops or withdraws only the caller's
own job. Work a job leaves behind (an unpacked upload) is removed by its `cleanup` callbacks however it ends.

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

from vadapters.errors import AdapterStateError, VAdaptersError

QUEUED, RUNNING, FINISHED, STOPPED, FAILED = "queued", "running", "finished", "stopped", "failed"


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
        self.owner: str | None = None
        self.cleanup: list[Callable[[], Any]] = []  # called once when the job ends, however it ends
        self.records: list[dict[str, Any]] = []
        self.state = QUEUED
        self.message = "waiting to start"
        self.summary: dict[str, Any] | None = None
        self.started = time.time()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=f"vadapters-train-{name}", daemon=True)

    # ------------------------------------------------------------------------------------------------ control
    def start(self) -> TrainingJob:
        self.state, self.message, self.started = RUNNING, "starting", time.time()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop after the current step (the trainer then saves a checkpoint)."""
        self._stop.set()
        if self.state == RUNNING:
            self.message = "stopping after the current step"

    def withdraw(self) -> None:
        """End a job that never started (taken out of the queue)."""
        self.state, self.message = STOPPED, "withdrawn from the queue before it started; nothing was trained"
        self._finish()

    def _finish(self) -> None:
        for callback in self.cleanup:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a failed clean-up must not hide how the job ended
                traceback.print_exc()
        self.cleanup = []
        self._done.set()

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
        except VAdaptersError as exc:  # bad input, said in the UI: no traceback in the server log
            self.state, self.message = FAILED, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - shown in the UI; the traceback goes to the server log
            traceback.print_exc()
            self.state, self.message = FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            self._finish()

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
            "owner": self.owner,
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
    """One training job runs at a time (the device is shared with the other tabs); the others wait in order.

    Each job belongs to its `owner` (the studio passes the browser session): an owner has at most one job running
    or waiting, and `stop(owner)` only reaches that owner's job.

    Example:
        >>> manager = JobManager()
        >>> slow = TrainingJob("a", lambda steps, resume: time.sleep(0.3) or {}, output_dir="unused", max_steps=1)
        >>> quick = TrainingJob("b", lambda steps, resume: {}, output_dir="unused", max_steps=1)
        >>> manager.submit(slow, "alice").state, manager.submit(quick, "bob").state
        ('running', 'queued')
        >>> manager.stop("mallory") is None, quick.wait(10), quick.state
        (True, True, 'finished')
    """

    def __init__(self, max_waiting: int = 8) -> None:
        self._lock = threading.Lock()
        self.max_waiting = int(max_waiting)
        self.current: TrainingJob | None = None
        self.waiting: list[TrainingJob] = []

    def submit(self, job: TrainingJob, owner: str | None) -> TrainingJob:
        """Start `job` for `owner` now if no job runs, else queue it; refuses a second job of the same owner."""
        with self._lock:
            mine = self._job_of(owner)
            if mine is not None:
                raise AdapterStateError(
                    f"your training job {mine.name!r} is still {mine.state}; stop it (Stop button) or wait for it"
                )
            if len(self.waiting) >= self.max_waiting:
                raise AdapterStateError(f"the training queue is full ({self.max_waiting} jobs wait); try again later")
            job.owner = owner
            job.cleanup.append(self._advance)
            if self.current is None or self.current.done:
                self.current = job
                return job.start()
            self.waiting.append(job)
            job.message = self._queued_message(job)
            return job

    def stop(self, owner: str | None) -> TrainingJob | None:
        """Stop `owner`'s running job or withdraw its queued one; None when `owner` has no job."""
        with self._lock:
            job = self._job_of(owner)
            if job is not None and job in self.waiting:
                self.waiting.remove(job)
                job.cleanup.remove(self._advance)
                self._refresh_messages()
        if job is None:
            return None
        if job.state == QUEUED:
            job.withdraw()
        else:
            job.stop()
        return job

    def position(self, job: TrainingJob) -> int:
        """0 for the running job, n for the n-th waiting one."""
        with self._lock:
            return self.waiting.index(job) + 1 if job in self.waiting else 0

    # -------------------------------------------------------------------------------------------- internals
    def _job_of(self, owner: str | None) -> TrainingJob | None:
        for job in [self.current, *self.waiting]:
            if job is not None and not job.done and job.owner == owner:
                return job
        return None

    def _queued_message(self, job: TrainingJob) -> str:
        ahead = self.waiting.index(job) + 1
        running = self.current.name if self.current is not None else "another job"
        return f"queued: {ahead} job(s) ahead of yours ({running!r} of another session is training)"

    def _refresh_messages(self) -> None:
        for job in self.waiting:
            job.message = self._queued_message(job)

    def _advance(self) -> None:
        """Called when the current job ends: start the next waiting one."""
        with self._lock:
            if self.waiting:
                self.current = self.waiting.pop(0)
                self._refresh_messages()
                self.current.start()


JOBS = JobManager()
"""The studio's job slot (one process)."""
