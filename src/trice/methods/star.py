"""STaR (Zelikman et al. 2022), as the paper compares against it (ALGORITHM.md section 5).

Each outer iteration samples a rationale for every training question from the current model,
rationalises the wrong ones with the hinted guide (``star``; ``star-norat`` skips this), keeps the
correct ones (questions with none are dropped) and fine-tunes *from the initial parameters* on
them for ``star_inner_steps`` steps (weight 1 per kept rationale, minibatches of M). Under a token or
compute budget, an iteration that would overrun it (it costs about what the previous one did) is not
started: the current iteration goes on instead (more fine-tuning steps on its kept set, from where it is)
until the loop's budget rule ends the run, so STaR spends its budget as the other methods do.
"""

from __future__ import annotations

import torch

from .base import Context, Method, Weighted


class STaR(Method):
    def __init__(self, rationalize: bool = True, exemplars=None, inner_steps: int = 20):
        self.name = "star" if rationalize else "star-norat"
        self.rationalize, self.exemplars, self.inner_steps = rationalize, exemplars, inner_steps
        self.dataset: list[tuple[int, str]] = []  # (example index, correct rationale)
        self.covered = torch.zeros(0, dtype=torch.bool)  # example has a kept rationale this iteration
        self.steps_done = 0
        self.collection_accuracy = 0.0  # fraction of its samples that were right before rationalisation
        self.iteration_start = 0  # budget spent when the latest iteration started (ctx.budget's unit)
        self.iteration_passes = 0  # what the previous iteration cost (collection and inner steps), same unit
        self.extending = False  # no further iteration fits the budget: the latest one trains on
        self.initial: list[torch.Tensor] = []

    def coverage(self) -> float | None:  # its latest collection (hint-rationalised ones included)
        return float(self.covered.float().mean()) if len(self.covered) else None

    def setup(self, ctx: Context) -> None:
        self.initial = ctx.policy.trainable_values()

    def state_dict(self):
        return {"dataset": list(self.dataset), "covered": self.covered.clone(), "steps_done": self.steps_done,
                "collection_accuracy": self.collection_accuracy,
                "initial": [p.clone() for p in self.initial],
                "iteration_start": self.iteration_start, "iteration_passes": self.iteration_passes,
                "extending": self.extending}

    def load_state_dict(self, state) -> None:
        self.dataset, self.covered = list(state["dataset"]), state["covered"].clone()
        self.steps_done, self.initial = state["steps_done"], [p.clone() for p in state["initial"]]
        self.collection_accuracy = state.get("collection_accuracy", 0.0)
        self.iteration_start = state.get("iteration_start", 0)
        self.iteration_passes = state.get("iteration_passes", 0)
        self.extending = state.get("extending", False)

    def _collect(self, ctx: Context) -> None:
        train = ctx.train_set
        prompts = [self.prompt(e.question) for e in train]
        texts = [s.text for s in ctx.sample(prompts)]
        correct = ctx.task.verdicts(texts, train)
        self.collection_accuracy = sum(correct) / len(correct)
        if self.rationalize and not all(correct):
            wrong = [i for i, c in enumerate(correct) if not c]
            hinted = [s.text for s in ctx.sample([self.format.guide_prompt(train[i].question, train[i].answer) for i in wrong],
                                                 prefix=self.format.guide_prefix(self.exemplars))]
            for i, z, ok in zip(wrong, hinted, ctx.task.verdicts(hinted, [train[i] for i in wrong])):
                if ok:
                    texts[i], correct[i] = z, True
        self.dataset = [(i, z) for i, (z, c) in enumerate(zip(texts, correct)) if c]
        self.covered = torch.tensor(correct, dtype=torch.bool)

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        restart = self.steps_done % self.inner_steps == 0 and not self.extending
        budget = ctx.budget
        if restart and self.steps_done and budget is not None and budget.limited:
            self.iteration_passes = budget.used() - self.iteration_start
            if not budget.fits(self.iteration_passes):
                # Another iteration would overrun the budget (it costs about what the last one did) and be
                # cut after a step or two from theta_0: the finished one goes on training instead.
                self.extending, restart = True, False
                if not self.dataset:  # nothing to train on: end the run here
                    return Weighted([], [], torch.zeros(0, dtype=torch.float64), {}, stop=True)
        if restart:
            self.iteration_start = budget.used() if budget is not None else 0
            # a new outer iteration: collect with the current model, then restart from theta_0
            self._collect(ctx)
            ctx.policy.load_trainable(self.initial)
            ctx.sampler.on_update()  # the weights changed: vLLM re-syncs, the torch engine re-merges LoRA
        self.steps_done += 1
        # proposal_accuracy: the latest collection's samples over the whole training set, as the
        # other methods' per-batch samples (the memorisation check compares it with held-out accuracy)
        metrics = {"proposal_accuracy": self.collection_accuracy,
                   "memory_coverage": float(self.covered.float().mean()),
                   "kept_rationales": len(self.dataset), "outer_restart": restart}
        if not self.dataset:
            return Weighted([], [], torch.zeros(0, dtype=torch.float64), metrics)
        # minibatches over the kept set, drawn with the same size M as the other methods
        picks = torch.randint(len(self.dataset), (len(batch),), generator=ctx.resampler_rng).tolist()
        chosen = [self.dataset[j] for j in picks]
        return Weighted([self.prompt(ctx.train_set[i].question) for i, _ in chosen],
                        [z + self.format.end for _, z in chosen],
                        torch.full((len(chosen),), 1.0 / len(chosen), dtype=torch.float64),
                        metrics, restart=restart)
