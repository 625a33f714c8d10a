"""The compute every method is charged for: token-passes (issue 15).

    token_passes = tokens sampled + tokens forwarded + 3 x tokens scored

A sampled token costs one forward pass of the model through one token (decoding, with a KV cache);
a scored token costs a forward and a backward pass, and the backward pass costs about twice the
forward (the gradients with respect to activations and to weights), so 3 forward-token equivalents.
Counting only sampled tokens (the earlier budget) made methods that sample little and score much
(direct prompt tuning, SFT on gold rationales) free, and charged ``trice-full`` (2M scored terms) the
same as ``trice`` (L terms). With token-passes every method pays for the model passes it makes,
whether they sample or score, so "the same budget" means about the same FLOPs and, on one device,
about the same time. Scored tokens are the prompt and continuation tokens of each scored row (the
shared prefix is run once per scoring pass and not counted, as prompt prefill is not counted when
sampling). A token forwarded without gradient (the answer likelihood p(y | x, z) of ``trice-soft``, ``jepo``
and ``latro``, LaTRO's reference log-probs) costs one pass, as a sampled one. Held-out evaluation is not
charged; its sampled tokens are reported apart.

>>> token_passes(tokens_sampled=1000, tokens_scored=200)
1600
"""

from __future__ import annotations

PASSES_PER_SCORED_TOKEN = 3  # forward + backward (about twice the forward)
COST_WINDOW = 5  # steps whose mean cost predicts the next step's


def token_passes(tokens_sampled: int, tokens_scored: int, tokens_forward: int = 0) -> int:
    return tokens_sampled + tokens_forward + PASSES_PER_SCORED_TOKEN * tokens_scored


class Budget:
    """A run's compute: spent so far and whether more fits, in the unit the config budgets (token-passes
    under ``compute_budget``, sampled tokens under ``token_budget``, else optimiser steps). The trainer
    owns it; methods see it as ``ctx.budget`` (STaR asks whether another outer iteration fits).

    ``sampler.tokens`` counts sampled tokens; ``loop`` holds ``tokens_scored``, ``tokens_forward`` and ``step``.
    """

    def __init__(self, config, sampler, loop, clock=None):
        self.config, self.sampler, self.loop = config, sampler, loop
        self.clock = clock  # () -> seconds the run has taken (the time budget's unit)

    @property
    def limited(self) -> bool:
        """Whether a time, token or compute budget ends the run (else the step count does)."""
        return bool(self.config.time_budget or self.config.compute_budget or self.config.token_budget)

    @property
    def unit(self) -> str:
        return ("seconds" if self.config.time_budget else "token_passes" if self.config.compute_budget
                else "tokens_sampled" if self.config.token_budget else "steps")

    def passes(self) -> int:
        """Token-passes spent so far, set-up included."""
        return token_passes(self.sampler.tokens, self.loop.tokens_scored, self.loop.tokens_forward)

    def used(self) -> float:
        """What the run has spent, in the budget's unit."""
        if self.config.time_budget:
            return self.clock()
        if self.config.compute_budget:
            return self.passes()
        if self.config.token_budget:
            return self.sampler.tokens
        return self.loop.step

    def total(self) -> float:
        return (self.config.time_budget or self.config.compute_budget or self.config.token_budget
                or max(self.config.steps, 1))

    def spent(self) -> float:
        """The fraction of the budget spent."""
        return self.used() / self.total()

    def fits(self, cost: float) -> bool:
        """Whether spending ``cost`` more (in the budget's unit) stays within the budget."""
        return self.used() + cost <= self.total()

    def predicted_step(self) -> float:
        """The next step's cost, predicted as the mean cost of the latest steps (``COST_WINDOW``); 0 before any."""
        costs = self.loop.step_costs[-COST_WINDOW:]
        return sum(costs) / len(costs) if costs else 0.0

    def allows_step(self) -> bool:
        """Whether the next step may start: its predicted cost fits in what is left. So a run ends within
        about one step's cost under its budget instead of passing it by one."""
        return not self.limited or self.fits(self.predicted_step())

    def overshoot(self) -> str | None:
        """Why a run that took a single step passed its budget, or None. The first step has no cost before it
        to predict from, so it always starts (the rule above can only stop the steps after it): a method whose
        step alone costs more than the budget spends more than it (``latro`` at 40,000 token-passes on
        word_sequence_reversal: one step of ~52,000, docs/study/grpo)."""
        if not self.limited or self.loop.step != 1 or self.used() <= self.total():
            return None
        return (f"the run's one step took it to {self.used():,.0f} {self.unit}, past its budget of "
                f"{self.total():,.0f}: a first step has no cost to predict from, so it always runs; raise the "
                "budget or make a step cheaper (a smaller batch, fewer samples per question, shorter rationales)")

    def record_step(self, used_before: float) -> None:
        """Note what the step that started at ``used_before`` cost."""
        self.loop.step_costs = (self.loop.step_costs + [self.used() - used_before])[-COST_WINDOW:]
