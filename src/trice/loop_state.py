"""Everything the training loop carries from step to step, so a checkpoint can restore it exactly.

``LoopState`` holds the counters and the epoch order; ``rng_states``/``restore_rngs`` capture and
restore every random-number generator (Python, NumPy, torch's global one, and the loop's own
sampler, resampler and order generators), which is what makes a resumed run bitwise identical.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


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
    tokens_scored: int = 0  # prompt + continuation tokens of every scored row (trice.budget)
    tokens_forward: int = 0  # tokens methods ran forward without gradient (trice.budget)
    next_curve_point: int = 1  # the learning curve's next evaluation point (config.eval_points)
    bad_steps: int = 0  # consecutive steps skipped for a non-finite loss or gradient
    accuracy_before: float | None = None
    verdicts_before: list[bool] = field(default_factory=list)  # per held-out question, for the paired test
    last_eval: tuple | None = None  # (step, accuracy, verdicts) of the latest periodic evaluation
    variance: GradientVariance = field(default_factory=GradientVariance)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "order": list(self.order), "sequences_scored": self.sequences_scored,
                "tokens_scored": self.tokens_scored, "tokens_forward": self.tokens_forward,
                "next_curve_point": self.next_curve_point,
                "bad_steps": self.bad_steps, "accuracy_before": self.accuracy_before,
                "verdicts_before": list(self.verdicts_before), "last_eval": self.last_eval,
                "variance": self.variance.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.order = state["step"], list(state["order"])
        self.sequences_scored, self.bad_steps = state["sequences_scored"], state["bad_steps"]
        self.tokens_scored = state.get("tokens_scored", 0)
        self.tokens_forward = state.get("tokens_forward", 0)
        self.next_curve_point = state.get("next_curve_point", 1)
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
