"""The run directory: config.yaml, metrics.jsonl, memory.jsonl, exemplars.jsonl, policy/, summary.json
(and tensorboard/ or wandb/ with ``--report-to``)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from ..config import TrainConfig
from ..errors import TriceError
from .trackers import NoTracker, Tracker, open_tracker


class RunDir:
    """Files of one run. ``log`` appends one JSON object per line to metrics.jsonl and sends it to the
    tracker ``config.report_to`` names (opened by ``create`` and ``open``; ``close`` or a ``with``
    block closes it).

    >>> from trice import TrainConfig
    >>> from trice.artifacts.run_dir import RunDir
    >>> with RunDir.create(TrainConfig(out="run", report_to="tensorboard")) as run:
    ...     run.log({"step": 1, "loss": 0.5})
    >>> run.metrics()
    [{'step': 1, 'loss': 0.5}]
    """

    def __init__(self, path: str | Path, writes: bool = True):
        self.path = Path(path)
        self.writes = writes  # False on every process but rank 0 of a distributed run
        self.tracker: Tracker = NoTracker()  # rank 0 only, like every file here

    @staticmethod
    def default_path(config: TrainConfig) -> str:
        return f"runs/{config.task.replace('/', '_').replace(':', '_')}-{config.method}-{time.strftime('%Y%m%d-%H%M%S')}"

    @classmethod
    def create(cls, config: TrainConfig, writes: bool = True) -> "RunDir":
        path = Path(config.out or cls.default_path(config))
        if not writes:
            return cls(path, writes=False)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TriceError(f"cannot create run directory {path}: {exc.strerror}") from None
        run = cls(path)
        explicit = dataclasses.replace(config, lr=config.resolved_lr())  # defaults made explicit
        explicit.save(run.config_path)
        (path / "metrics.jsonl").write_text("", encoding="utf-8")
        run.tracker = open_tracker(config.report_to, path, explicit.to_dict(), path.name)
        return run

    @classmethod
    def open(cls, path: str | Path, writes: bool = True) -> "RunDir":
        """An existing run directory (to resume it; its tracker continues the run's)."""
        run = cls(path, writes)
        config = run.config()  # a clear error if it is not one
        if writes:
            run.tracker = open_tracker(config.report_to, run.path, config.to_dict(), run.path.name, resume=True)
        return run

    config_path = property(lambda self: self.path / "config.yaml")
    checkpoints_path = property(lambda self: self.path / "checkpoints")
    memory_path = property(lambda self: self.path / "memory.jsonl")
    exemplars_path = property(lambda self: self.path / "exemplars.jsonl")
    policy_path = property(lambda self: self.path / "policy")
    summary_path = property(lambda self: self.path / "summary.json")

    def log(self, record: dict) -> None:
        if not self.writes:
            return
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.tracker.log(record, record.get("step"))

    def close(self, failed: bool = False) -> None:
        """Close the tracker (flush TensorBoard, finish the W&B / trackio run; ``failed``: marked so)."""
        tracker, self.tracker = self.tracker, NoTracker()
        tracker.close(failed)

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    def metrics_bytes(self) -> int:
        """Size of metrics.jsonl: a checkpoint's position in it."""
        if not self.writes:
            return 0
        return (self.path / "metrics.jsonl").stat().st_size

    def truncate_metrics(self, size: int) -> None:
        """Drop the records written after a checkpoint (they will be written again on resume)."""
        if not self.writes:
            return
        with open(self.path / "metrics.jsonl", "r+b") as f:
            f.truncate(size)

    def metrics(self) -> list[dict]:
        lines = (self.path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line]

    def write_summary(self, summary: dict) -> None:
        if self.writes:
            self.summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text(encoding="utf-8"))

    def config(self) -> TrainConfig:
        if not self.config_path.exists():
            raise TriceError(f"{self.path} is not a trice run directory (no config.yaml)")
        config = TrainConfig.from_yaml(self.config_path)
        saved = self.config_path.read_text(encoding="utf-8")
        if "prompt_format" not in saved:
            config.prompt_format = "plain"  # runs from before prompt formats were plain text
        if "data_seed" not in saved:
            config.data_seed = config.seed  # runs from before data_seed drew their data with the training seed
        return config
