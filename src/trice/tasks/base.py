"""The task interface: examples with a question and an answer, and a 0/1 correctness check.

A rationale z is the model's whole continuation after the prompt, ending in "... the answer is Y."
(ALGORITHM.md section 1); ``Task.is_correct(rationale, answer)`` is c(z, y).
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

from ..tools import visible

_ANSWER_RE = re.compile(r"the answer is\s*(.*?)\s*$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    """One question/answer pair; ``rationale`` is a gold rationale where the data has one."""

    question: str
    answer: str
    rationale: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def extract_answer(rationale: str) -> str | None:
    """The text after the last "the answer is", up to a final period; None if there is none.

    >>> extract_answer("3 + 4 = 7. So the answer is 7.")
    '7'
    """
    text = " ".join(rationale.split())
    idx = text.lower().rfind("the answer is")
    if idx < 0:
        return None
    match = _ANSWER_RE.match(text, idx)
    answer = match.group(1) if match else ""
    if answer.endswith("."):
        answer = answer[:-1].rstrip()
    return answer or None


class Task:
    """A reasoning task: ``train`` and ``test`` lists of :class:`Example` and a checker.

    Subclasses set ``train``/``test`` and may override :meth:`is_correct` (c(z, y)) or
    :meth:`check` (when the check needs more than the answer string, e.g. reasoning-gym entries).

    >>> task = Task("toy", [Example("1 + 1 =", "2")], [Example("2 + 2 =", "4")])
    >>> task.is_correct("1 + 1 = 2. So the answer is 2.", "2")
    True
    """

    def __init__(self, name: str, train: list[Example], test: list[Example],
                 exemplars: list[Example] | None = None):
        self.name = name
        self.train = list(train)
        self.test = list(test)
        self.exemplars = exemplars  # task-supplied few-shot rationales, if any

    def normalize(self, answer: str) -> str:
        """Canonical form of an answer string before comparison."""
        return " ".join(answer.split()).strip().lower()

    def is_correct(self, rationale: str, answer: str) -> bool:
        """c(z, y): does the rationale end by stating ``answer``?"""
        predicted = extract_answer(rationale)
        return predicted is not None and self.normalize(predicted) == self.normalize(answer)

    def check(self, rationale: str, example: Example) -> bool:
        """c(z, y) for one example (override this or :meth:`is_correct`)."""
        return self.is_correct(rationale, example.answer)

    checker_timeout: float = 5.0  # seconds one check may take before it counts as wrong

    def verdict(self, rationale: str, example: Example) -> bool:
        """:meth:`check`, isolated: an exception, a non-bool result or a time-out counts as wrong
        and is reported once per task (a warning); the training loop and evaluator call this."""
        try:
            with _time_limit(self.checker_timeout):
                result = self.check(visible(rationale), example)  # a tool's marks removed (trice.tools)
        except Exception as exc:  # noqa: BLE001 - any checker failure is a wrong answer
            self._warn_once(type(exc).__name__, f"{self._checker_label()} raised {type(exc).__name__}: "
                            f"{exc}; such rationales count as wrong (reported once per task)")
            return False
        if not (isinstance(result, bool) or type(result).__name__ == "bool_"):  # numpy.bool_ too
            self._warn_once("non-bool", f"{self._checker_label()} returned {type(result).__name__} "
                            f"{result!r}, not a bool; such rationales count as wrong (reported once per task)")
            return False
        return bool(result)

    def verdicts(self, rationales: list[str], examples: list[Example]) -> list[bool]:
        """:meth:`verdict` of each (rationale, example) pair. With several processes each checks its
        share and all get every verdict, so a checker's time-out on one process cannot make the
        processes disagree (and the work is split)."""
        from ..runtime.distributed import world

        return world().map_rows(len(rationales), lambda mine: [self.verdict(rationales[i], examples[i]) for i in mine])

    def reward(self, rationale: str, example: Example) -> float:
        """A scalar reward for reward-driven methods (``grpo``): the ``--reward`` functions' weighted sum when
        the task checks with them (:mod:`trice.tasks.rewards`; NaN when every function returned None), else
        1.0 or 0.0 from :meth:`verdict`. Isolated as :meth:`verdict`: a reward function that raises or times
        out gives NaN (the completion is left out of the group statistics) and is reported once."""
        score = getattr(self.check, "score", None)
        if score is None:
            return float(self.verdict(rationale, example))
        try:
            with _time_limit(self.checker_timeout):
                return float(score(visible(rationale), example))
        except Exception as exc:  # noqa: BLE001 - a failing reward leaves the completion unscored
            self._warn_once(type(exc).__name__, f"{self._checker_label()} raised {type(exc).__name__}: "
                            f"{exc}; such rationales get no reward (reported once per task)")
            return float("nan")

    def rewards(self, rationales: list[str], examples: list[Example]) -> list[float]:
        """:meth:`reward` of each pair, split across processes as :meth:`verdicts`."""
        from ..runtime.distributed import world

        return world().map_rows(len(rationales), lambda mine: [self.reward(rationales[i], examples[i]) for i in mine])

    def _checker_label(self) -> str:
        name = getattr(self, "checker_name", None)
        return f"checker {name!r} of task {self.name}" if name else f"checker of task {self.name}"

    def _warn_once(self, kind: str, message: str) -> None:
        seen = self.__dict__.setdefault("_warned", set())
        if kind not in seen:
            seen.add(kind)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, train={len(self.train)}, test={len(self.test)})"


class CheckerTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise CheckerTimeout after ``seconds`` (SIGALRM; only in the main thread on Unix)."""
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise CheckerTimeout(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
