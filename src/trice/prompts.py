"""Prompts: the rationale and guide templates (ALGORITHM.md section 2) and the few-shot prefix.

The prefix is the text of the 3-shot exemplars; in ``prompt`` mode it initialises the soft prompt,
in ``lora``/``full`` mode it is kept as hard text. The guide prefix is the same exemplars with the
answer first, used once to draw the initial memory from hinted questions.

>>> from trice.tasks import Example
>>> ex = Example("2 + 2 =", "4", rationale="2 + 2 = 4. So the answer is 4.")
>>> print(exemplar_prefix([ex]), end="")
Question: 2 + 2 =
Answer: Let's think step by step.
2 + 2 = 4. So the answer is 4.
<BLANKLINE>
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tasks.base import Example

RATIONALE_TEMPLATE = "Question: {question}\nAnswer: Let's think step by step.\n"
GUIDE_TEMPLATE = "Question: {question}\nAnswer: The answer is {answer}. Let's think step by step.\n"

# A rationale is scored followed by this terminator, so the model also learns where to stop; the
# sampler stops at it (or at a new "Question:"), so sampled rationales never contain it.
END_OF_RATIONALE = "\n\n"
STOP = ("\n\n", "\nQuestion:")

# Used only to *find* the task's own exemplars when the untuned model will not answer in the
# "So the answer is X." form zero-shot: two generic, hand-written examples of the format.
BOOTSTRAP_PREFIX = (
    "Question: Tom has 3 apples and buys 2 more. How many apples does he have now?\n"
    "Answer: Let's think step by step.\nTom starts with 3 apples. 3 + 2 = 5. So the answer is 5.\n\n"
    "Question: Is the sky green on a clear day?\n"
    "Answer: Let's think step by step.\nOn a clear day the sky is blue, not green. So the answer is no.\n\n"
)


def rationale_prompt(question: str) -> str:
    return RATIONALE_TEMPLATE.format(question=question)


def guide_prompt(question: str, answer: str) -> str:
    return GUIDE_TEMPLATE.format(question=question, answer=answer)


def exemplar_prefix(exemplars: list["Example"]) -> str:
    """The few-shot prefix: each exemplar under the rationale template, separated by blank lines."""
    return "".join(rationale_prompt(e.question) + e.rationale + END_OF_RATIONALE for e in exemplars)


def guide_prefix(exemplars: list["Example"]) -> str:
    """The same exemplars rewritten with the answer first (the hinted guide)."""
    return "".join(guide_prompt(e.question, e.answer) + e.rationale + END_OF_RATIONALE
                   for e in exemplars)
