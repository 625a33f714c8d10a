"""What every training method shares: it turns a minibatch into weighted sequences.

The update is always the same (DESIGN.md): minimise -sum_i coefs[i] * log p_theta(continuation_i |
prompt_i). A method decides which sequences to sample and how to weight them, and keeps its own
state (TRICE's memory, STaR's outer iteration). The loop in ``trice.trainer`` is the same for all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..prompts import STOP, rationale_prompt

if TYPE_CHECKING:
    from ..config import TrainConfig
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


@dataclass
class Context:
    """What a method may use: the policy, the task, the training set, the config and the RNGs."""

    policy: Any
    task: "Task"
    train_set: list["Example"]
    config: "TrainConfig"
    sampler_rng: torch.Generator
    resampler_rng: torch.Generator
    tokens_sampled: int = 0
    progress: Any = None  # a rich Progress for long set-up work, or None
    external: Any = None  # a VLLMSampler (--sampler vllm), or None for the torch sampler
    weights_version: int = 0  # bumped by the trainer after each update (the external sampler re-syncs)
    sampler_gap: float | None = None  # the external sampler's log-prob gap on this step's first rows

    def sample(self, prompts: list[str], temperature: float | None = None, policy=None):
        """Sample one rationale per prompt (the proposal temperature by default), counting tokens."""
        from ..sampler import sample

        temperature = self.config.temperature if temperature is None else temperature
        if self.external is not None and (policy is None or policy is self.policy):
            out = self._sample_external(prompts, temperature)
        else:
            out = sample(policy or self.policy, prompts, temperature=temperature,
                         max_new_tokens=self.config.max_new_tokens, stop=STOP, generator=self.sampler_rng,
                         batch_size=self.config.sample_batch_size)
        self.tokens_sampled += sum(s.num_tokens for s in out)
        return out

    def _sample_external(self, prompts, temperature):
        from ..distributed import world
        from ..vllm_sampler import logprob_gap

        key = int(torch.randint(0, 2 ** 62, (1,), generator=self.sampler_rng))  # as the torch sampler
        self.external.push(self.weights_version)
        here = world()
        mine = here.rows(len(prompts))
        mine_prompts = [prompts[i] for i in mine]
        out = self.external.sample(mine_prompts, max_new_tokens=self.config.max_new_tokens,
                                   temperature=temperature, key=key, row_ids=mine, stop=STOP)
        check = self.config.sampler_check_rows
        if check and out:
            self.sampler_gap = logprob_gap(self.policy, mine_prompts[:check], out[:check])
        return here.gather_rows(len(prompts), out)


class Method:
    """Base class. Subclasses implement :meth:`step`; ``prompt`` is the template the method trains
    and is evaluated with (the rationale template unless the method answers directly)."""

    name = "base"
    trains = True  # False for methods that only evaluate (few-shot CoT)
    memory = None  # a trice.memory.Memory for methods that keep one

    def prompt(self, question: str) -> str:
        return rationale_prompt(question)

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
