"""Held-out evaluation (ALGORITHM.md section 4): greedy accuracy and self-consistency.

Both reuse the training sampler and the task's checker. Self-consistency samples k rationales at
temperature 1, majority-votes the extracted (normalised) answers, and is correct when a rationale
carrying the voted answer is correct.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from .prompts import STOP, rationale_prompt
from .sampler import sample
from .tasks.base import Example, Task, extract_answer
from .tools import visible


def standard_error(accuracy: float, n: int) -> float:
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) if n else float("nan")


def greedy_accuracy(policy, task: Task, examples: list[Example], max_new_tokens: int = 64,
                    batch_size: int = 32, prompt=rationale_prompt,
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
                              batch_size: int = 32, prompt=rationale_prompt, stop: tuple[str, ...] = STOP,
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
