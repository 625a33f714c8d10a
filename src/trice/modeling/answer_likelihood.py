"""The model's own likelihood of the gold answer after a rationale, l(z) = p(y | x, z) (ALGORITHM.md section 6).

The answer is scored as a sentence after the rationale's reasoning: the rationale text up to its first
"(So) the answer is" (the whole text when it states none), then " So the answer is {y}." and the format's
end of turn. So l(z) does not care which answer the rationale itself wrote; it asks how likely the gold
answer is after that reasoning, which needs no checker (free-form answers).

>>> from trice.prompts import PLAIN
>>> answer_row("Question: 2 + 3 =\\nAnswer: Let's think step by step.\\n", "2 + 3 = 5. So the answer is 5.", "5", PLAIN)
("Question: 2 + 3 =\\nAnswer: Let's think step by step.\\n2 + 3 = 5.", ' So the answer is 5.\\n\\n')
"""

from __future__ import annotations

import re

import torch

from ..prompts import PromptFormat
from ..tools import visible
from .scoring import count_tokens, score

ANSWER_SENTENCE = "So the answer is {answer}."
_STATED = re.compile(r"(so )?the answer is", re.IGNORECASE)


def reasoning(rationale: str) -> str:
    """The rationale before its first "(So) the answer is", without a tool's marks (it becomes prompt text)."""
    text = visible(rationale)
    found = _STATED.search(text)
    return (text[:found.start()] if found else text).rstrip()


def answer_row(prompt: str, rationale: str, answer: str, fmt: PromptFormat) -> tuple[str, str]:
    """``(prompt, continuation)`` whose score is log p(y | x, z): the answer sentence after the reasoning."""
    head = reasoning(rationale)
    return prompt + head, (" " if head else "") + ANSWER_SENTENCE.format(answer=answer) + fmt.end


def answer_logliks(policy, prompts: list[str], rationales: list[str], answers: list[str], fmt: PromptFormat,
                   batch_size: int | None = 16) -> tuple[torch.Tensor, int]:
    """``(log l(z_i) for each row, tokens run forward)``, without gradient (float64 on the CPU)."""
    rows = [answer_row(p, z, y, fmt) for p, z, y in zip(prompts, rationales, answers)]
    if not rows:
        return torch.zeros(0, dtype=torch.float64), 0
    heads, tails = [r[0] for r in rows], [r[1] for r in rows]
    with torch.no_grad():
        loglik = score(policy, heads, tails, batch_size=batch_size).double().cpu()
    return loglik, count_tokens(policy.tokenizer, heads, tails)


def rationale_logprobs(policy, prompts: list[str], continuations: list[str],
                       batch_size: int | None = 16) -> tuple[torch.Tensor, int]:
    """``(log p(z_i | x) for each row, tokens run forward)``, without gradient."""
    if not prompts:
        return torch.zeros(0, dtype=torch.float64), 0
    with torch.no_grad():
        logp = score(policy, prompts, continuations, batch_size=batch_size).double().cpu()
    return logp, count_tokens(policy.tokenizer, prompts, continuations)
