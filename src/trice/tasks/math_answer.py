"""Math answers compared with math-verify (Hugging Face's answer checker: LaTeX, fractions, units,
boxed answers), for GSM8K and the ``math`` answer type of ``hf:`` tasks.

math-verify runs with its own time-outs off (they use ``signal.alarm``, main thread only; task checks
are isolated by :meth:`Task.verdict`) and without the warning it logs about that. Any error inside
it, an empty text, a text over :data:`MAX_CHARS` characters, or an expression too large to evaluate
quickly (a power tower, a huge factorial) counts as not equal.

>>> math_equal("\\\\frac{1}{2}", "0.5"), math_equal("$1,000", "1000"), math_equal("5", "50")
(True, True, False)
"""

from __future__ import annotations

import functools
import logging

from .base import CheckerTimeout, extract_answer

MAX_CHARS = 200  # longer answers are not equal, unparsed: keeps every check fast
MAX_EXPONENT = 10_000  # |n| of a numeric power or factorial above which an answer is rejected


class _NoTimeoutWarning(logging.Filter):
    """Drops math-verify's "Timeout is disabled ..." warning (we disable them on purpose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


@functools.lru_cache(maxsize=1)
def _math_verify():
    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_NoTimeoutWarning())
    return math_verify


@functools.lru_cache(maxsize=8192)  # the same gold is compared with many samples
def _parse(text: str) -> tuple:
    """math-verify's reading of one answer. A bare answer (no ``$``, ``\\(``, ``\\[`` or ``\\boxed``)
    is read as LaTeX math only, ``$answer$``: "72 clips", "10:30" and "2, 3" are then not read as one
    of their numbers, nor "2 Animals #146" as 2 (math-verify's fallback to the first number).
    ``\\$`` and a final period are dropped. raise_on_error: a failed parse raises (lru_cache then
    stores nothing) rather than caching []."""
    mv = _math_verify()
    text = text.replace("\\$", "").strip().removesuffix(".").strip()
    if any(mark in text for mark in ("$", "\\(", "\\[", "\\boxed")):
        return tuple(mv.parse(text, parsing_timeout=None, raise_on_error=True))
    return tuple(mv.parse(f"${text}$", extraction_config=[mv.LatexExtractionConfig()],
                          parsing_timeout=None, raise_on_error=True))


def _too_large(parsed: tuple) -> bool:
    """Whether verifying would evaluate a huge number: sympy's big-integer arithmetic runs in C, where
    no time-out can stop it ($9^{9^{9^9}}$ hangs math-verify), so such answers are refused first.
    Hand-written: math-verify has no such guard."""
    import sympy

    for expr in parsed:
        if not isinstance(expr, sympy.Basic):
            continue
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, sympy.Pow):
                arg = node.exp
            elif isinstance(node, sympy.factorial):
                arg = node.args[0]
            else:
                continue
            if arg.free_symbols:
                continue
            if arg.has(sympy.Pow, sympy.factorial):
                return True  # a tower (even 2^{3^2}): do not evaluate the exponent to find out
            try:
                if abs(complex(arg)) > MAX_EXPONENT:
                    return True
            except (TypeError, ValueError, OverflowError):
                return True
    return False


def math_equal(prediction: str, gold: str) -> bool:
    """Whether ``prediction`` (a model's extracted answer) equals ``gold`` as math-verify reads them.

    >>> [math_equal(p, "0.5") for p in ["\\\\frac{1}{2}", "1/2", "50%", "\\\\boxed{0.5}", "0.6", "", "9^9^9"]]
    [True, True, True, True, False, False, False]
    """
    if not (prediction and gold and prediction.strip() and gold.strip()):
        return False
    if len(prediction) > MAX_CHARS or len(gold) > MAX_CHARS:
        return False
    try:
        gold_parsed, pred_parsed = _parse(gold), _parse(prediction)
        if not gold_parsed or not pred_parsed or _too_large(gold_parsed) or _too_large(pred_parsed):
            return False
        return bool(_math_verify().verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))
    except CheckerTimeout:  # Task.verdict's time-out: let it report itself
        raise
    except Exception:  # noqa: BLE001 - math-verify/sympy failures mean "not shown equal"
        return False


def math_answer_text(rationale: str) -> str | None:
    """The answer to compare in a rationale: the text after its last "the answer is" (final period
    dropped), else the text from its last ``\\boxed`` on (math-verify reads the box); else None.

    >>> math_answer_text("x = 1/2. So the answer is $\\\\frac{1}{2}$."), math_answer_text("no answer")
    ('$\\\\frac{1}{2}$', None)
    """
    answer = extract_answer(rationale)
    if answer is not None:
        return answer
    start = rationale.rfind("\\boxed")
    return rationale[start:] if start >= 0 else None
