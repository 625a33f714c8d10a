"""Everything a run carries from step to step, in one object with one snapshot/restore pair.

A checkpoint is ``TrainingState.snapshot()``; resuming is ``restore(snapshot)``. Both walk the same
list of fields, so a new piece of state cannot be saved and forgotten on restore (or the reverse);
tests/test_training_state.py checks that a restore brings back every field.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .loop_state import LoopState, restore_rngs, rng_states


@dataclass
class TrainingState:
    policy: Any
    method: Any
    sampler: Any  # a trice.sampler.Sampler (counts the tokens it samples)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    rngs: dict[str, torch.Generator]  # "sampler" (proposals, memory init, evaluation), "resampler" (subsample)
    order_rng: random.Random  # epoch-wise minibatch order
    run: Any  # the RunDir (its metrics.jsonl position is part of the state)
    config: Any
    exemplars: list = field(default_factory=list)  # the few-shot exemplars the prefix is made of
    loop: LoopState = field(default_factory=LoopState)
    started: float = field(default_factory=time.perf_counter)  # perf_counter of the (resumed) run's start

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return self.policy.trainable_parameters()

    def snapshot(self) -> dict[str, Any]:
        """The whole state after a completed step (what a checkpoint holds)."""
        return {"params": [p.detach().clone() for p in self.params], "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "method": self.method.state_dict(),
                "loop": self.loop.state_dict(), "tokens_sampled": self.sampler.tokens,
                "rngs": rng_states(self.rngs, self.order_rng), "metrics_bytes": self.run.metrics_bytes(),
                "seconds_elapsed": time.perf_counter() - self.started, "config": self.config.to_dict()}

    def restore(self, saved: dict[str, Any]) -> None:
        """Put back exactly what :meth:`snapshot` captured."""
        with torch.no_grad():
            for p, value in zip(self.params, saved["params"], strict=True):
                p.copy_(value)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.method.load_state_dict(saved["method"])
        self.loop.load_state_dict(saved["loop"])
        self.sampler.tokens = saved["tokens_sampled"]
        self.sampler.on_update()  # the weights changed under the sampler
        restore_rngs(saved["rngs"], self.rngs, self.order_rng)
        self.run.truncate_metrics(saved["metrics_bytes"])
        self.started = time.perf_counter() - saved.get("seconds_elapsed", 0.0)

    def mark(self) -> dict[str, Any]:
        """What a step changes before its update (generators, token count, epoch order): taken at the
        start of a step so that a stop in the middle of its sampling can roll the step back."""
        return {"rngs": rng_states(self.rngs, self.order_rng), "tokens": self.sampler.tokens,
                "order": list(self.loop.order)}

    def roll_back(self, mark: dict[str, Any]) -> None:
        restore_rngs(mark["rngs"], self.rngs, self.order_rng)
        self.sampler.tokens, self.loop.order = mark["tokens"], list(mark["order"])
