"""Tool calls inside rationales: the calculator protocol and how tool-inserted text is marked.

A rationale calls the calculator by writing ``<<EXPR=`` (GSM8K's convention): the sampler stops the
row there, evaluates EXPR with :func:`calculate` and appends ``RESULT>>`` as tokens the model did not
choose; sampling then continues. So ``3 * 4 is <<3*4=12>>12`` has the model write ``3 * 4 is <<3*4=``
and ``12`` after it, and the tool write ``12>>``.

The latent z is the whole text, but p(z | x) is the product over the model's own tokens only (the
tool's are not a choice of the model). So a rationale keeps its tool-inserted spans marked, between
:data:`OPEN` and :data:`CLOSE` (two private-use characters no tokenizer produces from text a task
gives). The marks travel with the text through the memory, the methods' weighted sequences and
checkpoints; the scorer (:mod:`trice.modeling.scoring`) tokenizes the spans separately and leaves them out of
the log-prob and the gradient; the checker and the exemplars see :func:`visible` text.

>>> calculate("3*4")
'12'
>>> calculate("9**9**9")
'?'
>>> hook = Calculator()
>>> hook("So 3 * 4 is <<3*4=")
'12>>'
>>> mark("12>>")
'\\ue00012>>\\ue001'
>>> visible("<<3*4=" + mark("12>>") + "12")
'<<3*4=12>>12'
>>> segments("<<3*4=" + mark("12>>") + "12")
[('<<3*4=', False), ('12>>', True), ('12', False)]
"""

from __future__ import annotations

import ast
import math
import operator
import re

from .choices import TOOLS
from .errors import TriceError

OPEN, CLOSE = "\ue000", "\ue001"  # around tool-inserted text (Unicode private use)
CALL, RESULT_END = "<<", ">>"
ERROR = "?"  # what the calculator returns for a malformed, unsafe or failing expression
MAX_EXPRESSION = 100  # characters of an expression the calculator reads
MAX_MAGNITUDE = 10 ** 15  # larger intermediate or final values are an error
MAX_CALLS = 8  # tool calls per rationale; later "<<...=" are left to the model


# ------------------------------------------------------------------------------------------- marking
def mark(text: str) -> str:
    """``text`` marked as tool-inserted."""
    return OPEN + text + CLOSE


def visible(text: str) -> str:
    """The text as the checker and a reader see it: the marks removed, the tool's text kept."""
    return text.replace(OPEN, "").replace(CLOSE, "") if OPEN in text or CLOSE in text else text


def segments(text: str) -> list[tuple[str, bool]]:
    """``[(piece, inserted by the tool)]`` in order, empty pieces dropped; unmarked text is one piece."""
    if OPEN not in text and CLOSE not in text:
        return [(text, False)] if text else []
    out, inside = [], False
    for piece in re.split(f"([{OPEN}{CLOSE}])", text):
        if piece == OPEN:
            inside = True
        elif piece == CLOSE:
            inside = False
        elif piece:
            out.append((piece, inside))
    return out


def mark_gold(text: str) -> str:
    """Hand-written text in the protocol (a GSM8K gold rationale, a user's exemplar) with the spans the
    calculator would have inserted marked: after every ``<<EXPR=``, the text up to and including ``>>``."""
    return re.sub(r"(<<[^<>=]*=)([^<>]*>>)", lambda m: m.group(1) + mark(m.group(2)), visible(text))


# ----------------------------------------------------------------------------------------- calculator
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class _Refused(Exception):
    pass


def _bounded(value):
    if not isinstance(value, (int, float)) or isinstance(value, float) and not math.isfinite(value) \
            or abs(value) > MAX_MAGNITUDE:  # complex (a negative number to a fractional power) included
        raise _Refused
    return value


def _value(node):
    # Only numbers and the arithmetic operators: no names, calls, attributes, subscripts or strings.
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow):  # bounded before computing: 9**9**9 is refused, not computed
            if abs(right) > 64 or (left != 0 and abs(right) * math.log10(abs(left) + 1) > 16) \
                    or (left == 0 and right < 0):
                raise _Refused
        return _bounded(_BINARY[type(node.op)](left, right))
    raise _Refused


def calculate(expression: str) -> str:
    """The value of an arithmetic expression as text (integers without a decimal point, other values to 6
    decimals, trailing zeros dropped), or :data:`ERROR`. Numbers, ``+ - * / // % **`` and parentheses;
    at most :data:`MAX_EXPRESSION` characters and values up to :data:`MAX_MAGNITUDE`. Parsed with
    :mod:`ast` and walked by hand (never ``eval``): nothing but those nodes is accepted.

    Written by hand: the libraries that evaluate arithmetic safely (simpleeval, asteval) allow names and
    functions, and sympy's parser calls ``eval``."""
    if len(expression) > MAX_EXPRESSION or not re.fullmatch(r"[\d\s.,+\-*/%()]*", expression):
        return ERROR
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", expression.strip())  # thousands separators: 1,000
    if not text or "," in text:
        return ERROR
    try:
        value = _value(ast.parse(text, mode="eval").body)
    except (_Refused, SyntaxError, ZeroDivisionError, OverflowError, ValueError, TypeError, RecursionError,
            MemoryError):
        return ERROR
    if isinstance(value, float):
        if value.is_integer():
            value = int(value)
        else:
            return f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


# a completed call "<<EXPR=RESULT>>" in visible text: what the cap counts (a ">>" the model writes is not a call)
_CLOSED_CALL = re.compile(r"<<[^<>=]*=[^<>]*>>")


class Calculator:
    """The sampler's tool hook: given a row's visible text so far, returns ``RESULT>>`` to append when the
    text ends with an open call ``<<EXPR=`` (no ``>>`` after the last ``<<``), else None; at most
    ``max_calls`` calls per rationale."""

    name = "calculator"
    trigger = "="  # the character a token must contain for the text to end a call (the engine's filter)

    def __init__(self, max_calls: int = MAX_CALLS):
        self.max_calls = max_calls

    def __call__(self, text: str) -> str | None:
        if not text.endswith("="):
            return None
        start = text.rfind(CALL)
        if start < 0 or RESULT_END in text[start:]:
            return None
        expression = text[start + len(CALL):-1]
        if CALL in expression or "=" in expression or len(_CLOSED_CALL.findall(text)) >= self.max_calls:
            return None
        return calculate(expression) + RESULT_END


def make_tool(name: str | None):
    """The hook for ``--tools``: None for "none"."""
    if name in (None, "", "none"):
        return None
    if name == "calculator":
        return Calculator()
    raise TriceError(f"unknown tool {name!r}: choose {', '.join(TOOLS)}")


# ------------------------------------------------------------------------------------------ statistics
_CALL_RE = re.compile(r"<<([^<>=]*)=" + OPEN + r"([^" + CLOSE + r"]*)" + CLOSE)


def tool_stats(texts: list[str], verdicts: list[bool] | None = None) -> dict:
    """How rationales used the tool: ``tool_use`` (fraction of rationales with a call), ``tool_calls``
    (calls per rationale), ``tool_calls_valid`` (fraction of calls the calculator could evaluate, i.e.
    not :data:`ERROR`) and, given the rationales' verdicts, ``accuracy_with_tool`` /
    ``accuracy_without_tool`` (None where no rationale is in the group).

    >>> tool_stats(["<<2+2=" + mark("4>>") + "4", "<<2+=" + mark("?>>"), "4"], [True, False, True])
    {'tool_use': 0.667, 'tool_calls': 0.667, 'tool_calls_valid': 0.5, 'accuracy_with_tool': 0.5, 'accuracy_without_tool': 1.0}
    """
    calls = [_CALL_RE.findall(t) for t in texts]
    total = sum(len(c) for c in calls)
    valid = sum(1 for c in calls for _, result in c if not result.startswith(ERROR))
    n = max(len(texts), 1)
    out = {"tool_use": round(sum(1 for c in calls if c) / n, 3), "tool_calls": round(total / n, 3),
           "tool_calls_valid": round(valid / total, 3) if total else None}
    if verdicts is not None:
        for name, used in (("accuracy_with_tool", True), ("accuracy_without_tool", False)):
            group = [v for c, v in zip(calls, verdicts) if bool(c) == used]
            out[name] = round(sum(group) / len(group), 3) if group else None
    return out
