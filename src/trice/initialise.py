"""Initialisation (ALGORITHM.md section 2): self-made exemplars and the memory from a hinted guide.

1. Exemplars: the untuned model's own correct rationales on training questions, in order (greedy,
   then temperature-1 samples), from a zero-shot prompt and, failing that, a generic 2-shot format
   prompt; or exemplars the task or the user supplies.
2. The soft prompt (or hard prefix) is the text of those exemplars.
3. Memory: one rationale per training example from the untuned model given the guide prefix (the
   exemplars answer-first) and the hinted question; kept right or wrong, no retry.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.progress import Progress

from .errors import TriceError
from .memory import Memory
from .prompts import BOOTSTRAP_PREFIX, STOP, guide_prefix, guide_prompt, rationale_prompt
from .sampler import sample
from .tasks.base import Example, Task


class HardPrefix:
    """A view of a policy whose prefix is the given text (through the model's embeddings).

    Used for the untuned model's guide and exemplar search; everything else is the policy's.
    """

    def __init__(self, policy, text: str):
        self._policy, self.text = policy, text
        ids = policy.tokenizer(text, add_special_tokens=False).input_ids if text else []
        self._ids = torch.tensor(ids, dtype=torch.long, device=policy.device)

    def prefix_embeds(self) -> torch.Tensor:
        return self._policy.embed(self._ids[None])[0]

    def __getattr__(self, name):
        return getattr(self._policy, name)


def load_exemplars(path: str | Path) -> list[Example]:
    """Exemplars from a JSONL file of {question, rationale, answer} objects."""
    from .tasks.jsonl import read_jsonl

    exemplars = []
    for lineno, row in read_jsonl(path):
        missing = [k for k in ("question", "rationale", "answer") if not isinstance(row.get(k), str)]
        if missing:
            raise TriceError(f"{path}:{lineno}: exemplar needs string field(s) {', '.join(missing)}")
        exemplars.append(Example(row["question"], row["answer"], rationale=row["rationale"]))
    return exemplars


def find_exemplars(policy, task: Task, train_set: list[Example], num: int = 3, max_tries: int = 64,
                   max_new_tokens: int = 64, generator: torch.Generator | None = None) -> list[Example]:
    """The first ``num`` training questions on which the untuned model's rationale is correct."""
    candidates = train_set[:max_tries]
    found: dict[int, Example] = {}
    attempts = [("", 0.0), (BOOTSTRAP_PREFIX, 0.0), (BOOTSTRAP_PREFIX, 1.0), (BOOTSTRAP_PREFIX, 1.0)]
    for prefix, temperature in attempts:
        if len(found) >= num:
            break
        todo = [i for i in range(len(candidates)) if i not in found]
        samples = sample(HardPrefix(policy, prefix), [rationale_prompt(candidates[i].question) for i in todo],
                         temperature=temperature, max_new_tokens=max_new_tokens, stop=STOP,
                         generator=generator)
        ok = task.verdicts([s.text for s in samples], [candidates[i] for i in todo])
        for i, s, right in zip(todo, samples, ok):
            if s.finished and right:
                found[i] = Example(candidates[i].question, candidates[i].answer, rationale=s.text.strip())
    if len(found) < num:
        raise TriceError(f"found only {len(found)} of {num} correct exemplars in the first "
                         f"{len(candidates)} training questions; supply some with --exemplars FILE.jsonl "
                         "or raise --exemplar-search")
    return [found[i] for i in sorted(found)[:num]]


def init_memory(policy, task: Task, train_set: list[Example], exemplars: list[Example],
                max_new_tokens: int = 64, generator: torch.Generator | None = None,
                batch_size: int = 32, progress: Progress | None = None) -> tuple[Memory, int]:
    """Memory from the hinted guide; returns it and the number of tokens sampled.

    ``policy`` must still be the untuned model (its prefix is replaced by the guide's).
    """
    guide = HardPrefix(policy, guide_prefix(exemplars))
    memory = Memory(len(train_set))
    tokens = 0
    chunk = max(batch_size, 1) * 4
    bar = progress.add_task("memory from the guide", total=len(train_set)) if progress else None
    for start in range(0, len(train_set), chunk):
        examples = train_set[start:start + chunk]
        samples = sample(guide, [guide_prompt(e.question, e.answer) for e in examples], temperature=1.0,
                         max_new_tokens=max_new_tokens, stop=STOP, generator=generator,
                         batch_size=batch_size)
        memory.initialize(range(start, start + len(examples)), [s.text for s in samples],
                          task.verdicts([s.text for s in samples], examples))
        tokens += sum(s.num_tokens for s in samples)
        if progress:
            progress.advance(bar, len(examples))
    if progress:
        progress.remove_task(bar)
    return memory, tokens


def save_exemplars(exemplars: list[Example], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for e in exemplars:
            f.write(json.dumps({"question": e.question, "rationale": e.rationale, "answer": e.answer}) + "\n")
