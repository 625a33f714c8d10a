"""Everything a run carries from step to step, in one object with one snapshot/restore table.

A checkpoint is ``TrainingState.snapshot()``; resuming is ``restore(snapshot)``. Both walk the one table
``FIELDS`` (a name, how to capture it, how to put it back), so a new piece of state cannot be saved and
forgotten on restore (or the reverse); tests/test_training_state.py checks that a restore brings back
every field. ``LoopState`` holds the loop's counters and the epoch order; ``rng_states``/``restore_rngs``
capture every random-number generator (Python, NumPy, torch's global one, and the loop's own sampler,
resampler and order generators), which is what makes a resumed run bitwise identical.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .budget import Budget


class GradientVariance:
    """A running estimate of the gradient estimator's variance, E|g|^2 - |E g|^2, by exponential
    moving averages over steps (the parameters drift slowly, so nearby steps stand in for repeated
    draws at one point). Comparable across methods on the same model and parameters."""

    def __init__(self, decay: float = 0.9):
        self.decay, self.mean, self.square, self.count = decay, None, 0.0, 0

    def update(self, params) -> float | None:
        grads = [p.grad.detach().flatten().double() for p in params if p.grad is not None]
        if not grads:
            return None
        g = torch.cat(grads)
        if self.mean is None:
            self.mean, self.square = torch.zeros_like(g), 0.0
        self.mean.mul_(self.decay).add_(g, alpha=1 - self.decay)
        self.square = self.decay * self.square + (1 - self.decay) * float(g @ g)
        self.count += 1
        correction = 1 - self.decay ** self.count  # as Adam's bias correction of zero-started EMAs
        mean = self.mean / correction
        return max(self.square / correction - float(mean @ mean), 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "square": self.square, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.square, self.count = state["mean"], state["square"], state["count"]


@dataclass
class LoopState:
    step: int = 0  # last completed step
    order: list[int] = field(default_factory=list)  # rest of the current epoch's permutation
    sequences_scored: int = 0
    tokens_scored: int = 0  # prompt + continuation tokens of every scored row (trice.training.budget)
    tokens_forward: int = 0  # tokens methods ran forward without gradient (trice.training.budget)
    next_curve_point: int = 1  # the learning curve's next evaluation point (config.eval_points)
    bad_steps: int = 0  # consecutive steps skipped for a non-finite loss or gradient
    step_costs: list[float] = field(default_factory=list)  # the latest steps' costs, in the budget's unit
    accuracy_before: float | None = None
    verdicts_before: list[bool] = field(default_factory=list)  # per held-out question, for the paired test
    last_eval: tuple | None = None  # (step, accuracy, verdicts) of the latest periodic evaluation
    variance: GradientVariance = field(default_factory=GradientVariance)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "order": list(self.order), "sequences_scored": self.sequences_scored,
                "tokens_scored": self.tokens_scored, "tokens_forward": self.tokens_forward,
                "next_curve_point": self.next_curve_point,
                "bad_steps": self.bad_steps, "step_costs": list(self.step_costs), "accuracy_before": self.accuracy_before,
                "verdicts_before": list(self.verdicts_before), "last_eval": self.last_eval,
                "variance": self.variance.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.order = state["step"], list(state["order"])
        self.sequences_scored, self.bad_steps = state["sequences_scored"], state["bad_steps"]
        self.tokens_scored = state.get("tokens_scored", 0)
        self.tokens_forward = state.get("tokens_forward", 0)
        self.next_curve_point = state.get("next_curve_point", 1)
        self.step_costs = list(state.get("step_costs", []))
        self.accuracy_before = state["accuracy_before"]
        self.verdicts_before = list(state.get("verdicts_before", []))
        self.last_eval = state.get("last_eval")
        self.variance.load_state_dict(state["variance"])


def rng_states(generators: dict[str, torch.Generator], order_rng: random.Random) -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "order": order_rng.getstate(), **{name: g.get_state() for name, g in generators.items()}}


def restore_rngs(states: dict[str, Any], generators: dict[str, torch.Generator], order_rng: random.Random) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    order_rng.setstate(states["order"])
    for name, g in generators.items():
        g.set_state(states[name])


@dataclass
class TrainingState:
    policy: Any
    method: Any
    sampler: Any  # a trice.generation.Sampler (counts the tokens it samples)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    rngs: dict[str, torch.Generator]  # "sampler" (proposals, memory init, evaluation), "resampler" (subsample)
    order_rng: random.Random  # epoch-wise minibatch order
    run: Any  # the RunDir (its metrics.jsonl position is part of the state)
    config: Any
    exemplars: list = field(default_factory=list)  # the few-shot exemplars the prefix is made of
    loop: LoopState = field(default_factory=LoopState)
    started: float = field(default_factory=time.perf_counter)  # perf_counter of the (resumed) run's start

    def __post_init__(self):
        # what the run spent and may still spend (a time budget counts the (resumed) run's seconds)
        self.budget = Budget(self.config, self.sampler, self.loop, clock=lambda: time.perf_counter() - self.started)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return self.policy.trainable_parameters()

    def snapshot(self) -> dict[str, Any]:
        """The whole state after a completed step (what a checkpoint holds), but the sharded fields of a
        sharded model (:data:`SHARDED`, :meth:`sharded_state`)."""
        skip = SHARDED if self.policy.sharded else ()
        return {name: capture(self) for name, capture, _ in FIELDS if name not in skip}

    def restore(self, saved: dict[str, Any], sharded: dict | None = None) -> None:
        """Put back exactly what :meth:`snapshot` (and :meth:`sharded_state`, as ``sharded``) captured."""
        for name, _, put_back in FIELDS:
            if put_back is not None and name in saved:
                put_back(self, saved[name])
        if sharded is not None:
            from torch.distributed.checkpoint.state_dict import set_state_dict

            set_state_dict(self.policy.base_model, self.optimizer, model_state_dict=sharded["model"],
                           optim_state_dict=sharded["optim"])
        self.sampler.on_update()  # the weights changed under the sampler

    def sharded_state(self) -> dict:
        """A sharded model's trainable parameters and Adam's state, each rank's shards (a template to load into
        too): what torch.distributed.checkpoint writes, one file per rank."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        model, optim = get_state_dict(self.policy.base_model, self.optimizer,
                                      options=StateDictOptions(ignore_frozen_params=True))
        return {"model": model, "optim": optim}

    def mark(self) -> dict[str, Any]:
        """What a step changes before its update (generators, token count, epoch order): taken at the
        start of a step so that a stop in the middle of its sampling can roll the step back."""
        return {"rngs": rng_states(self.rngs, self.order_rng), "tokens": self.sampler.tokens,
                "order": list(self.loop.order)}

    def roll_back(self, mark: dict[str, Any]) -> None:
        restore_rngs(mark["rngs"], self.rngs, self.order_rng)
        self.sampler.tokens, self.loop.order = mark["tokens"], list(mark["order"])


def _set_tokens(t: TrainingState, tokens: int) -> None:
    t.sampler.tokens = tokens


def _set_started(t: TrainingState, elapsed: float) -> None:
    t.started = time.perf_counter() - elapsed


# The state a checkpoint holds: (name, capture, put back); None: saved for the record, not restored
# (the config is read from the run directory's config.yaml). With sharded weights the SHARDED fields go to the
# checkpoint's shards instead (TrainingState.sharded_state).
SHARDED = ("params", "optimizer")
FIELDS = (
    ("params", lambda t: t.policy.trainable_values(), lambda t, v: t.policy.load_trainable(v)),
    ("optimizer", lambda t: t.optimizer.state_dict(), lambda t, v: t.optimizer.load_state_dict(v)),
    ("scheduler", lambda t: t.scheduler.state_dict(), lambda t, v: t.scheduler.load_state_dict(v)),
    ("method", lambda t: t.method.state_dict(), lambda t, v: t.method.load_state_dict(v)),
    ("loop", lambda t: t.loop.state_dict(), lambda t, v: t.loop.load_state_dict(v)),
    ("tokens_sampled", lambda t: t.sampler.tokens, _set_tokens),
    ("rngs", lambda t: rng_states(t.rngs, t.order_rng), lambda t, v: restore_rngs(v, t.rngs, t.order_rng)),
    ("metrics_bytes", lambda t: t.run.metrics_bytes(), lambda t, v: t.run.truncate_metrics(v)),
    ("seconds_elapsed", lambda t: time.perf_counter() - t.started, _set_started),
    ("config", lambda t: t.config.to_dict(), None),
)
