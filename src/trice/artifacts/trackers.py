"""Experiment trackers for ``--report-to`` (transformers' names): every numeric value of every
metrics.jsonl record also goes to TensorBoard, Weights & Biases or trackio, under the same key.

A record's ``"step"`` is the x-axis, not a metric; a record without one (the ``"init"`` record)
is logged at the last step seen (0 at the start). Strings (``"event": "eval"``, ``"skipped"``) and
``None`` are not numbers and are left out; ``True``/``False`` are logged as 1/0. Each library is
imported only when chosen, and only rank 0 of a distributed run opens a tracker (``RunDir.writes``).

Several records can share a step: the step record and the evaluation after it both carry
``tokens_sampled`` and ``seconds_elapsed``, the init record and the first evaluation ``seconds``.
The event file and trackio keep every value; W&B keeps one row per step and TensorBoard's viewer
one point per tag and step, so there the later record's value wins.

Resuming (``trice train --resume``) drops the metrics.jsonl records written after the checkpoint
and logs those steps again. TensorBoard hides the first attempt's values from that step on
(``purge_step``; a new run in the same directory hides all the old ones); W&B continues the same
run (its id is kept in ``<run>/wandb/trice_run_id``) and keeps the first attempt's values of the
steps it already has; trackio continues the run of the same name and keeps both attempts' values
of the repeated steps.

>>> from trice.artifacts.trackers import open_tracker
>>> tracker = open_tracker("tensorboard", "run", {"lr": 1e-3}, "demo")  # scalars in run/tensorboard
>>> tracker.log({"step": 1, "loss": 0.5, "grad_variance": None}, step=1)  # loss only
>>> tracker.close()
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Protocol

from ..choices import TRACKERS
from ..errors import TriceError

PROJECT = "trice"  # the W&B / trackio project unless WANDB_PROJECT / TRACKIO_PROJECT says otherwise


class Tracker(Protocol):
    """Where ``RunDir.log`` sends each metrics.jsonl record besides the file.

    >>> from trice.artifacts.trackers import NoTracker
    >>> tracker: Tracker = NoTracker()
    >>> tracker.log({"step": 1, "loss": 0.5}, step=1)
    >>> tracker.close()
    """

    def log(self, record: dict, step: int | None) -> None: ...

    def close(self, failed: bool = False) -> None: ...


def scalars(record: dict) -> dict[str, float | int]:
    """The numeric values of a metrics.jsonl record, under the same keys (``"step"`` excepted).

    >>> scalars({"event": "eval", "step": 3, "greedy_accuracy": 0.5, "seconds_elapsed": None, "ok": True})
    {'greedy_accuracy': 0.5, 'ok': 1}
    """
    return {key: int(value) if isinstance(value, bool) else value for key, value in record.items()
            if key != "step" and isinstance(value, numbers.Real)}


class _Steps:
    """The step a record is logged at: its own, or the last one seen (records without a step)."""

    def __init__(self):
        self.last = 0

    def __call__(self, step: int | None) -> int:
        if step is not None:
            self.last = int(step)
        return self.last


class NoTracker:
    """``--report-to none``: metrics.jsonl only.

    >>> from trice.artifacts.trackers import NoTracker
    >>> NoTracker().log({"step": 1, "loss": 0.5}, step=1)
    """

    def log(self, record: dict, step: int | None) -> None:
        pass

    def close(self, failed: bool = False) -> None:
        pass


class TensorBoardTracker:
    """Scalars in ``<run>/tensorboard``, one tag per metrics.jsonl key (``tensorboard --logdir runs/``).

    ``resume``: the first step logged hides every value the interrupted attempt logged from that
    step on (SummaryWriter's ``purge_step``), so re-logged steps are not drawn twice; a new run
    hides whatever an earlier run left in the same directory, as it empties metrics.jsonl.

    >>> from trice.artifacts.trackers import TensorBoardTracker
    >>> tracker = TensorBoardTracker("run")
    >>> tracker.log({"event": "eval", "step": 0, "greedy_accuracy": 0.25}, step=0)
    >>> tracker.close()
    """

    def __init__(self, run_dir: str | Path, resume: bool = False):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self._writer_class = SummaryWriter
        self.log_dir = Path(run_dir) / "tensorboard"
        self.resume = resume
        self.writer = None if resume else SummaryWriter(log_dir=str(self.log_dir), flush_secs=10, purge_step=0)
        self.step = _Steps()

    def log(self, record: dict, step: int | None) -> None:
        step = self.step(step)
        if self.writer is None:  # resuming: the first step after the checkpoint is where to purge from
            self.writer = self._writer_class(log_dir=str(self.log_dir), flush_secs=10, purge_step=step)
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, global_step=step)

    def close(self, failed: bool = False) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbTracker:
    """A Weights & Biases run named after the run directory, in project ``trice`` (or $WANDB_PROJECT),
    with the config as its config. Its files go under ``<run>/wandb``; set ``WANDB_MODE=offline`` to
    log without an account (``wandb sync <run>/wandb/offline-run-*`` uploads them later).

    The W&B run id is kept in ``<run>/wandb/trice_run_id``, so ``resume`` continues the same run.

    >>> from trice.artifacts.trackers import WandbTracker
    >>> tracker = WandbTracker("run", {"lr": 1e-3}, "demo")  # with WANDB_MODE=offline: files in run/wandb
    >>> tracker.log({"step": 1, "loss": 0.5}, step=1)
    >>> tracker.close()
    """

    def __init__(self, run_dir: str | Path, config: dict, run_name: str, resume: bool = False):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        self.wandb = wandb
        files = Path(run_dir) / "wandb"
        files.mkdir(parents=True, exist_ok=True)
        id_path = files / "trice_run_id"
        run_id = id_path.read_text(encoding="utf-8").strip() if resume and id_path.exists() else None
        # The id is kept here rather than left to W&B's resume="auto", which only picks up a run that
        # did not finish: a stopped trice run finishes (marked failed) before `trice train --resume`.
        try:  # a new run gets an id from W&B; a resumed one asks for its own again
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or PROJECT, name=run_name,
                                  dir=str(run_dir), config=config, id=run_id,
                                  resume="allow" if run_id else None)
        except wandb.errors.Error as exc:  # e.g. no API key: say how to log without one
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise TriceError(f"--report-to wandb: {first} (set WANDB_MODE=offline to log locally)") from None
        id_path.write_text(self.run.id + "\n", encoding="utf-8")
        self.step = _Steps()

    def log(self, record: dict, step: int | None) -> None:
        step = self.step(step)
        # W&B refuses steps below the run's current one (a resumed run's steps already logged before
        # the interruption) with a warning each; skip them here instead.
        if step < self.run.step:
            return
        values = scalars(record)
        if values:
            self.run.log(values, step=step)

    def close(self, failed: bool = False) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None


class TrackioTracker:
    """A trackio run named after the run directory, in project ``trice`` (or $TRACKIO_PROJECT), with
    the config as its config. trackio logs locally (a SQLite database under $TRACKIO_DIR, by default
    ``~/.cache/huggingface/trackio``; ``trackio show --project trice``) unless $TRACKIO_SPACE_ID names
    a Hugging Face Space.

    >>> from trice.artifacts.trackers import TrackioTracker
    >>> tracker = TrackioTracker({"lr": 1e-3}, "demo")  # doctest: +ELLIPSIS
    * ...
    >>> tracker.log({"step": 1, "loss": 0.5}, step=1)
    >>> tracker.close()  # doctest: +ELLIPSIS
    * Run finished...
    """

    def __init__(self, config: dict, run_name: str, resume: bool = False):
        try:
            import trackio
        except ImportError:
            raise _missing("trackio", "trackio") from None
        self.trackio = trackio
        # trackio.log and trackio.finish act on the process's current run: the one init returns here.
        self.run = trackio.init(project=os.environ.get("TRACKIO_PROJECT") or PROJECT, name=run_name,
                                config=config, resume="allow" if resume else "never")
        self.open = True
        self.step = _Steps()

    def log(self, record: dict, step: int | None) -> None:
        step = self.step(step)
        values = scalars(record)
        if values and self.open:
            self.trackio.log(values, step=step)

    def close(self, failed: bool = False) -> None:
        if self.open:
            self.trackio.finish()
            self.open = False


def open_tracker(name: str, run_dir: str | Path, config: dict, run_name: str, resume: bool = False) -> Tracker:
    """The tracker ``--report-to name`` asks for (``resume``: continue the run in ``run_dir``).

    >>> from trice.artifacts.trackers import open_tracker
    >>> open_tracker("none", "run", {}, "demo")  # doctest: +ELLIPSIS
    <trice.artifacts.trackers.NoTracker object at ...>
    """
    if name == "none":
        return NoTracker()
    if name == "tensorboard":
        return TensorBoardTracker(run_dir, resume)
    if name == "wandb":
        return WandbTracker(run_dir, config, run_name, resume)
    if name == "trackio":
        return TrackioTracker(config, run_name, resume)
    raise TriceError(f"--report-to {name}: unknown tracker (choose from {', '.join(TRACKERS)})")


def _missing(name: str, package: str) -> TriceError:
    return TriceError(f"--report-to {name} needs the {package} package: pip install 'trice-cot[trackers]' "
                      f"(or pip install {package})")
