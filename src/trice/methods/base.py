"""What every training method shares: it turns a minibatch into weighted sequences.

The update is always the same (docs/ALGORITHM.md, section 3, step 8): minimise -sum_i coefs[i] * log p_theta(continuation_i |
prompt_i). A method decides which sequences to sample and how to weight them, and keeps its own
state (TRICE's memory, STaR's outer iteration). The loop in :mod:`trice.training.loop` is the same for all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..prompts import PLAIN, PromptFormat

if TYPE_CHECKING:
    from ..tasks import Example, Task


@dataclass
class Weighted:
    """Sequences to score and their loss coefficients; ``metrics`` go to metrics.jsonl."""

    prompts: list[str]
    continuations: list[str]
    coefs: torch.Tensor
    metrics: dict[str, Any] = field(default_factory=dict)
    restart: bool = False  # the method reset the parameters: the optimiser state restarts too
    stop: bool = False  # the method cannot do useful work within the token budget: end the run here
    tokens_forward: int = 0  # tokens the method ran forward without gradient this step (trice.training.budget)


@dataclass
class Context:
    """What a method may use: the policy, the task, the training set, the run's config (a
    :class:`trice.config.TrainConfig`), the sampler the trainer owns (:class:`trice.generation.Sampler`),
    the subsample's generator and the run's compute budget (:class:`trice.training.budget.Budget`)."""

    policy: Any
    task: "Task"
    train_set: list["Example"]
    config: Any
    sampler: Any
    resampler_rng: torch.Generator
    progress: Any = None  # a rich Progress for long set-up work, or None
    budget: Any = None  # the trainer's Budget: what was spent and whether more fits

    def sample(self, prompts: list[str], temperature: float | None = None, prefix: str | None = None):
        """Sample one rationale per prompt (the proposal temperature by default); ``prefix`` replaces
        the policy's prefix with this hard text (the hinted guide)."""
        temperature = self.config.temperature if temperature is None else temperature
        return self.sampler.sample(prompts, temperature=temperature, prefix=prefix)

    @property
    def tokens_sampled(self) -> int:
        return self.sampler.tokens


class Method:
    """Base class. Subclasses implement :meth:`step`; ``prompt`` is the template the method trains
    and is evaluated with (the rationale template unless the method answers directly)."""

    name = "base"
    trains = True  # False for methods that only evaluate (few-shot CoT)
    memory = None  # a trice.methods.memory.Memory for methods that keep one
    format: PromptFormat = PLAIN  # set by make_method: the run's prompt format

    def prompt(self, question: str) -> str:
        return self.format.prompt(question)

    def coverage(self) -> float | None:
        """Training examples with a correct rationale in the method's memory or kept set (None: no such set)."""
        return self.memory.coverage() if self.memory is not None else None

    def setup(self, ctx: Context) -> None:
        """Called once after the policy is built and before the first step."""

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this method exactly (after setup)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` instead of calling :meth:`setup` (resume)."""
