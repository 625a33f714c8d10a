"""Held-out evaluation (ALGORITHM.md section 4): greedy accuracy and self-consistency.

Both reuse the training sampler and the task's checker. Self-consistency samples k rationales at
temperature 1, majority-votes the extracted (normalised) answers, and is correct when a rationale
carrying the voted answer is correct.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..generation.sampler import sample
from ..prompts import PLAIN, STOP
from ..tasks.base import Example, Task, extract_answer
from ..tools import visible


def greedy_accuracy(policy, task: Task, examples: list[Example], max_new_tokens: int = 64,
                    batch_size: int = 32, prompt=PLAIN.prompt,
                    stop: tuple[str, ...] = STOP, hook=None) -> tuple[float, list[bool], list[str]]:
    """Greedy-decoding accuracy; also each example's verdict and rationale (``prompt`` and ``stop``:
    the run's prompt format, e.g. ``method.prompt`` and ``method.format.stop``; ``hook``: the run's tool,
    :mod:`trice.tools`)."""
    if not examples:
        return float("nan"), [], []
    samples = sample(policy, [prompt(e.question) for e in examples], temperature=0.0,
                     max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size, hook=hook)
    verdicts = task.verdicts([s.text for s in samples], examples)
    return sum(verdicts) / len(verdicts), verdicts, [s.text for s in samples]


def self_consistency_accuracy(policy, task: Task, examples: list[Example], num_samples: int,
                              max_new_tokens: int = 64, generator: torch.Generator | None = None,
                              batch_size: int = 32, prompt=PLAIN.prompt, stop: tuple[str, ...] = STOP,
                              hook=None) -> float:
    """Majority vote over ``num_samples`` temperature-1 rationales per question."""
    if not examples or num_samples < 1:
        return float("nan")
    prompts = [prompt(e.question) for e in examples for _ in range(num_samples)]
    samples = sample(policy, prompts, temperature=1.0, max_new_tokens=max_new_tokens, stop=stop,
                     generator=generator, batch_size=batch_size, hook=hook)
    voted_texts, voted_examples = [], []
    for i, example in enumerate(examples):
        texts = [s.text for s in samples[i * num_samples:(i + 1) * num_samples]]
        by_answer: dict[str, str] = {}
        votes: Counter[str] = Counter()
        for text in texts:
            answer = extract_answer(visible(text))
            if answer is not None:
                key = task.normalize(answer)
                votes[key] += 1
                by_answer.setdefault(key, text)
        if votes:
            voted_texts.append(by_answer[votes.most_common(1)[0][0]])
            voted_examples.append(example)
    return sum(task.verdicts(voted_texts, voted_examples)) / len(examples)


@dataclass
class HeldOut:
    """A run's held-out evaluation: its questions and how they are prompted (the run's template), sampled
    (its stop strings, tool, length and batch size) and checked (the task), so that the trainer, the
    learning curve and ``trice eval`` evaluate alike. Built by :func:`trice.training.setup.prepare`."""

    task: Task
    examples: list[Example]
    prompt: Callable[[str], str]
    stop: tuple[str, ...] = STOP
    tool: Any = None
    max_new_tokens: int = 64
    batch_size: int = 64

    def greedy(self, policy, examples: list[Example] | None = None) -> tuple[float, list[bool], list[str]]:
        """:func:`greedy_accuracy` on ``examples`` (default: all the held-out questions)."""
        return greedy_accuracy(policy, self.task, self.examples if examples is None else examples, self.max_new_tokens,
                               self.batch_size, prompt=self.prompt, stop=self.stop, hook=self.tool)

    def self_consistency(self, policy, num_samples: int, generator: torch.Generator | None = None) -> float:
        return self_consistency_accuracy(policy, self.task, self.examples, num_samples, self.max_new_tokens, generator,
                                         self.batch_size, prompt=self.prompt, stop=self.stop, hook=self.tool)
