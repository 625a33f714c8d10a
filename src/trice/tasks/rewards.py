"""TRL-style reward functions as a task's checker: ``--reward module:function`` (repeatable).

A reward function has the signature of TRL's ``GRPOTrainer`` custom rewards: it is called with
keyword lists, one entry per completion, and returns a list of floats (or None where it does not
apply)::

    def contains_solution(completions, solution, **kwargs):
        return [1.0 if s in c else 0.0 for c, s in zip(completions, solution)]

trice calls each function for one rationale at a time with the keywords TRL passes:

* ``completions``: ``[rationale]``, the model's text after the prompt (plain strings: TRL's
  standard, non-conversational format);
* ``prompts``: ``[question]`` (the example's question; trice's full prompt adds exemplars);
* every column of the dataset under its own name (TRL passes all but ``prompt``): for ``hf:`` and
  ``jsonl:`` tasks the question and answer columns under their field names plus every other column
  (``Example.meta``); for other tasks ``question``, ``answer`` and the example's ``meta`` keys
  (``gsm8k``: ``solution``; ``gym/...``: ``entry``);
* ``completion_ids=None`` and ``trainer_state=None``: trice checks text, outside a transformers
  ``Trainer``, so there are no token ids or trainer state to give.

Several functions combine as TRL combines them: the weighted sum of their rewards (weights 1
unless given), a None or NaN reward left out (TRL's ``nansum``). The rationale is correct when the
sum is above ``threshold`` (``--reward-threshold``, default 0). ``async def`` functions are run to
completion.

The checker is installed as the task's :meth:`~trice.tasks.base.Task.check`, so the task's usual
isolation applies: a reward function that raises, returns something other than one number per
completion, or takes longer than the task's ``checker_timeout``, makes that rationale wrong, and
each kind of failure is reported once per task (a warning).

>>> from trice.tasks import Example, Task
>>> def has_gold(completions, answer, **kwargs):
...     return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]
>>> def short(completions, **kwargs):
...     return [0.5 if len(c) < 40 else None for c in completions]
>>> task = use_rewards(Task("toy", [], []), [has_gold, short], threshold=1.0)
>>> ex = Example("2 + 2?", "4")
>>> task.verdict("2 + 2 = 4. The answer is 4.", ex), task.check.score("The answer is 4.", ex)
(True, 1.5)
>>> task.verdict("I think 5.", ex), task.verdict("a long rationale that never states it " * 2, ex)
(False, False)
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Mapping
from typing import Any, Callable, Sequence

from ..errors import TriceError
from .base import Example, Task
from .io import load_function

RewardFunc = Callable[..., Sequence[Any]]
_RESERVED = ("prompt", "completion", "completion_ids")  # TRL does not pass these columns as they are


class RewardNotANumber(TypeError):
    """A reward function returned something other than a list of numbers (or None)."""


class RewardWrongLength(ValueError):
    """A reward function returned a list whose length is not the number of completions."""


def load_rewards(specs: Sequence[str | RewardFunc]) -> list[RewardFunc]:
    """``"module:function"`` or ``"path/to/file.py:function"`` specs (or callables) -> functions.

    >>> [f.__name__ for f in load_rewards(["math:isclose", len])]
    ['isclose', 'len']
    """
    return [spec if callable(spec) else load_function(str(spec), "reward") for spec in specs]


def _name(func: Any) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


def _number(value: Any, func: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise RewardNotANumber(f"reward {_name(func)} returned {type(value).__name__} {value!r:.60}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RewardNotANumber(f"reward {_name(func)} returned {type(value).__name__} {value!r:.60}, "
                               f"not a number") from None
    return None if math.isnan(number) else number


class RewardChecker:
    """c(z, y) from TRL-style reward functions: correct when the weighted reward sum > threshold.

    ``fields`` names the question and answer columns passed to the functions (``hf:``/``jsonl:``
    tasks: their field names). :meth:`rewards` gives each function's reward, :meth:`score` the sum.
    """

    def __init__(self, funcs: Sequence[RewardFunc], threshold: float = 0.0,
                 weights: Sequence[float] | None = None, fields: tuple[str, str] = ("question", "answer")):
        if not funcs:
            raise TriceError("rewards: no reward functions given")
        if weights is None:
            weights = [1.0] * len(funcs)
        if len(weights) != len(funcs):
            raise TriceError(f"rewards: {len(weights)} weights for {len(funcs)} reward functions")
        self.funcs, self.weights = list(funcs), [float(w) for w in weights]
        self.threshold, self.fields = float(threshold), tuple(fields)

    def columns(self, example: Example) -> dict[str, Any]:
        """The dataset's columns for ``example``: its meta, plus the question and the answer."""
        question_field, answer_field = self.fields
        columns = dict(example.meta)
        columns[question_field], columns[answer_field] = example.question, example.answer
        return columns

    def rewards(self, rationale: str, example: Example) -> list[float | None]:
        """Each function's reward for ``rationale`` (None where it returned None or NaN)."""
        kwargs = {k: [v] for k, v in self.columns(example).items() if k not in _RESERVED}
        kwargs.update(prompts=[example.question], completions=[rationale], completion_ids=None,
                      trainer_state=None)
        out = []
        for func in self.funcs:
            result = func(**kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
            if isinstance(result, (str, bytes, Mapping)) or not hasattr(result, "__len__"):
                raise RewardNotANumber(f"reward {_name(func)} returned {type(result).__name__} {result!r:.60}, "
                                       f"not a list with one reward per completion")
            if len(result) != 1:
                raise RewardWrongLength(f"reward {_name(func)} returned {len(result)} rewards for 1 completion")
            out.append(_number(result[0], func))
        return out

    def score(self, rationale: str, example: Example) -> float:
        """The weighted sum of the rewards, Nones left out (TRL's nansum); NaN when every function returned
        None (TRL then leaves the completion out of its group statistics)."""
        rewards = self.rewards(rationale, example)
        if all(r is None for r in rewards):
            return math.nan
        return sum(w * r for w, r in zip(self.weights, rewards) if r is not None)

    def __call__(self, rationale: str, example: Example) -> bool:
        return self.score(rationale, example) > self.threshold  # (NaN: not above, so wrong)


async def _awaited(awaitable):
    return await awaitable


def _fields(task: Task) -> tuple[str, str]:
    if hasattr(task, "question_field") and hasattr(task, "answer_field"):  # hf:
        return task.question_field, task.answer_field
    fields = getattr(task, "fields", None)  # jsonl: (question, answer, rationale)
    if isinstance(fields, tuple) and len(fields) >= 2 and all(isinstance(f, str) for f in fields[:2]):
        return fields[0], fields[1]
    return "question", "answer"


def use_rewards(task: Task, specs: Sequence[str | RewardFunc], threshold: float = 0.0,
                weights: Sequence[float] | None = None) -> Task:
    """Make TRL-style reward functions ``task``'s checker (in place; returns ``task``).

    The :class:`RewardChecker` becomes the instance's ``check``, so ``Task.verdict`` isolates it as
    it does every checker; the task's own answer check is no longer used.
    """
    funcs = load_rewards(specs)
    task.check = RewardChecker(funcs, threshold, weights, _fields(task))
    task.checker_name = "reward " + " + ".join(s if isinstance(s, str) else _name(s) for s in specs)
    return task
