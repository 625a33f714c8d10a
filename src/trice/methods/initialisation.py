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

from rich.progress import Progress

from ..errors import TriceError
from ..prompts import PLAIN, PromptFormat
from ..tasks.base import Example, Task
from ..tools import OPEN, visible
from .memory import Memory


def load_exemplars(path: str | Path) -> list[Example]:
    """Exemplars from a JSONL file of {question, rationale, answer} objects."""
    from ..tasks.io import read_jsonl

    exemplars = []
    for lineno, row in read_jsonl(path):
        missing = [k for k in ("question", "rationale", "answer") if not isinstance(row.get(k), str)]
        if missing:
            raise TriceError(f"{path}:{lineno}: exemplar needs string field(s) {', '.join(missing)}")
        exemplars.append(Example(row["question"], row["answer"], rationale=row["rationale"]))
    return exemplars


def find_exemplars(sampler, task: Task, train_set: list[Example], num: int = 3, max_tries: int = 64,
                   fmt: PromptFormat = PLAIN, tools: bool = False) -> list[Example]:
    """The first ``num`` training questions on which the untuned model's rationale is correct
    (``sampler`` samples from the untuned model; its prefix is replaced here). With ``tools`` (the
    sampler calls the tool) the search starts from the calculator's format prompt and keeps only
    rationales that call the tool, so the exemplars show the protocol."""
    candidates = train_set[:max_tries]
    found: dict[int, Example] = {}
    bootstrap = fmt.bootstrap_prefix(tools)
    attempts = [(fmt.prefix([]), 0.0), (bootstrap, 0.0), (bootstrap, 1.0), (bootstrap, 1.0)]
    if tools:
        attempts = [(bootstrap, 0.0), (bootstrap, 1.0), (bootstrap, 1.0), (bootstrap, 1.0)]
    for prefix, temperature in attempts:
        if len(found) >= num:
            break
        todo = [i for i in range(len(candidates)) if i not in found]
        samples = sampler.sample([fmt.prompt(candidates[i].question) for i in todo],
                                 temperature=temperature, prefix=prefix)
        ok = task.verdicts([s.text for s in samples], [candidates[i] for i in todo])
        for i, s, right in zip(todo, samples, ok):
            if s.finished and right and (not tools or OPEN in s.text):
                found[i] = Example(candidates[i].question, candidates[i].answer, rationale=visible(s.text).strip())
    if len(found) < num:
        raise TriceError(f"found only {len(found)} of {num} correct exemplars"
                         + (" that call the tool" if tools else "") + f" in the first "
                         f"{len(candidates)} training questions; supply some with --exemplars FILE.jsonl "
                         "or raise --exemplar-search")
    return [found[i] for i in sorted(found)[:num]]


def init_memory(sampler, task: Task, train_set: list[Example], exemplars: list[Example],
                progress: Progress | None = None, chunk: int = 256, fmt: PromptFormat = PLAIN) -> Memory:
    """Memory from the hinted guide (the sampler counts the tokens).

    ``sampler`` must still sample from the untuned model (its prefix is replaced by the guide's).
    """
    guide = fmt.guide_prefix(exemplars)
    memory = Memory(len(train_set))
    bar = progress.add_task("memory from the guide", total=len(train_set)) if progress else None
    for start in range(0, len(train_set), chunk):
        examples = train_set[start:start + chunk]
        samples = sampler.sample([fmt.guide_prompt(e.question, e.answer) for e in examples], temperature=1.0,
                                 prefix=guide)
        memory.initialize(range(start, start + len(examples)), [s.text for s in samples],
                          task.verdicts([s.text for s in samples], examples))
        if progress:
            progress.advance(bar, len(examples))
    if progress:
        progress.remove_task(bar)
    return memory


def save_exemplars(exemplars: list[Example], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for e in exemplars:
            f.write(json.dumps({"question": e.question, "rationale": e.rationale, "answer": e.answer}) + "\n")
