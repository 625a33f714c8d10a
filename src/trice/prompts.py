"""Prompts: the rationale and guide templates (ALGORITHM.md section 2), the few-shot prefix, and the
two prompt formats, plain text and the tokenizer's chat template.

The prefix is the text of the 3-shot exemplars; in ``prompt`` mode it initialises the soft prompt,
in ``lora``/``full`` mode it is kept as hard text. The guide prefix is the same exemplars with the
answer first, used once to draw the initial memory from hinted questions.

**Plain** (the paper's base-model setting)::

    Question: {question}
    Answer: Let's think step by step.
    {rationale}<blank line>

**Chat**: the same words in the model's own chat template: the question is a user turn, the
rationale the assistant turn (opened with "Let's think step by step."), which ends with the
template's end-of-turn text (``<|im_end|>`` for ChatML models); sampling stops there. The
exemplars are prior user/assistant turns in *every* parameterisation. In soft-prompt mode the
prefix text only initialises the soft prompt's embeddings, so keeping the same turns there means the
untuned soft-prompt policy is exactly the hard-prompt conversation (identical step-0 accuracy),
and the soft prompt covers the system turn the template adds, so it can learn to replace it; a
system message holding the exemplars would be a second format to measure and maintain.

``auto`` picks chat when the tokenizer has a chat template and the measurement on the packaged
SmolLM2-135M-Instruct favours chat (``AUTO_PREFERS_CHAT``; docs/prompt-formats.md).

>>> from trice.tasks import Example
>>> ex = Example("2 + 2 =", "4", rationale="2 + 2 = 4. So the answer is 4.")
>>> print(PLAIN.prefix([ex]), end="")
Question: 2 + 2 =
Answer: Let's think step by step.
2 + 2 = 4. So the answer is 4.
<BLANKLINE>
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import TriceError

if TYPE_CHECKING:
    from .tasks.base import Example

THINK = "Let's think step by step.\n"
GUIDE_THINK = "The answer is {answer}. Let's think step by step.\n"

# A rationale is scored followed by this terminator, so the model also learns where to stop; the
# sampler stops at it (or at a new "Question:"), so sampled rationales never contain it.
END_OF_RATIONALE = "\n\n"
STOP = ("\n\n", "\nQuestion:")

# Measured on the packaged SmolLM2-135M-Instruct (docs/prompt-formats.md, 2026-11-26): untuned 3-shot
# greedy accuracy, chat - plain on the same questions: chain_sum -0.003 (n = 400, McNemar z -0.20),
# BIG-Bench Hard boolean_expressions +0.070 (n = 100, z +1.12). Chat is as good or better on both,
# though neither difference is significant; ``auto`` follows the higher mean.
AUTO_PREFERS_CHAT = True

# Used only to *find* the task's own exemplars when the untuned model will not answer in the
# "So the answer is X." form zero-shot: two generic, hand-written examples of the format.
BOOTSTRAP = (
    ("Tom has 3 apples and buys 2 more. How many apples does he have now?",
     "Tom starts with 3 apples. 3 + 2 = 5. So the answer is 5.", "5"),
    ("Is the sky green on a clear day?", "On a clear day the sky is blue, not green. So the answer is no.", "no"),
)

# The same, for rationales that call the calculator (trice.tools): the exemplar search's prompt when
# --tools calculator is on, so that the untuned model sees the protocol.
TOOL_BOOTSTRAP = (
    ("Tom has 3 apples and buys 2 more. How many apples does he have now?",
     "Tom starts with 3 apples. 3 + 2 is <<3+2=5>>5. So the answer is 5.", "5"),
    ("A box holds 4 rows of 6 eggs. How many eggs are in the box?",
     "There are 4 rows of 6 eggs. 4 * 6 is <<4*6=24>>24. So the answer is 24.", "24"),
)


@dataclass(frozen=True)
class PromptFormat:
    """How questions, rationales and exemplars become text. ``PLAIN`` is the paper's; :func:`chat_format`
    builds one from a tokenizer's chat template. Every method, the guide, the exemplar search, the
    evaluation and both samplers take their text from here.

    ``system`` opens a conversation (the template's default system turn; "" for plain), ``user`` /
    ``assistant`` open the turns, ``end`` closes an assistant turn (scored after every rationale, so
    the model learns to stop), ``stop`` are the sampler's stop strings.

    >>> PLAIN.prompt("1 + 1 =")
    "Question: 1 + 1 =\\nAnswer: Let's think step by step.\\n"
    >>> PLAIN.guide_prompt("1 + 1 =", "2")
    "Question: 1 + 1 =\\nAnswer: The answer is 2. Let's think step by step.\\n"
    """

    name: str
    system: str
    user: str
    assistant: str
    end: str
    stop: tuple[str, ...]

    def prompt(self, question: str) -> str:
        """The rationale prompt: the question, then the assistant's opening "Let's think step by step."."""
        return self.user + question + self.assistant + THINK

    def guide_prompt(self, question: str, answer: str) -> str:
        """The hinted prompt of the guide: the answer comes first."""
        return self.user + question + self.assistant + GUIDE_THINK.format(answer=answer)

    def direct_prompt(self, question: str) -> str:
        """The prompt of direct answering (pt-direct): the assistant turn opens with the answer."""
        return self.user + question + self.assistant.rstrip(" ")

    def direct_target(self, answer: str) -> str:
        return (" " if self.name == "plain" else "") + f"The answer is {answer}." + self.end

    def prefix(self, exemplars: list["Example"]) -> str:
        """The few-shot prefix: the exemplars as earlier turns."""
        return self.system + "".join(self.prompt(e.question) + e.rationale + self.end for e in exemplars)

    def guide_prefix(self, exemplars: list["Example"]) -> str:
        """The same exemplars with the answer first (the hinted guide)."""
        return self.system + "".join(self.guide_prompt(e.question, e.answer) + e.rationale + self.end
                                     for e in exemplars)

    def bootstrap_prefix(self, tools: bool = False) -> str:
        """Two generic hand-written exemplars of the answer format (the exemplar search's fallback); with
        ``tools``, exemplars that call the calculator."""
        from .tasks.base import Example

        return self.prefix([Example(q, a, rationale=r) for q, r, a in (TOOL_BOOTSTRAP if tools else BOOTSTRAP)])


PLAIN = PromptFormat("plain", system="", user="Question: ", assistant="\nAnswer: ", end=END_OF_RATIONALE,
                     stop=STOP)


_Q1, _A1, _Q2 = "\x00q1\x00", "\x00a1\x00", "\x00q2\x00"  # placeholders no template produces


def chat_format(tokenizer) -> PromptFormat:
    """The prompt format of ``tokenizer``'s chat template, read off by rendering a two-turn conversation
    with placeholders: what precedes the first user text is the system turn and a user opening, what
    lies between a user text and the assistant's is the assistant opening (the generation prompt),
    and what follows an assistant text, before the next user opening, is the end of its turn.

    Raises TriceError when the tokenizer has no chat template, or one this cannot split this way
    (one that rewrites earlier turns, e.g. drops past reasoning).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise TriceError("--prompt-format chat: the tokenizer has no chat template (use plain)")

    def render(messages, generation_prompt):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    try:
        two = render([{"role": "user", "content": _Q1}, {"role": "assistant", "content": _A1},
                      {"role": "user", "content": _Q2}], True)
        one = render([{"role": "user", "content": _Q1}, {"role": "assistant", "content": _A1}], False)
    except Exception as exc:  # a template that raises is the model's, reported in one line
        raise TriceError(f"cannot render the tokenizer's chat template: {type(exc).__name__}: {exc}") from None
    if any(two.count(p) != 1 for p in (_Q1, _A1, _Q2)) or not one.startswith(two[:two.index(_A1) + len(_A1)]):
        raise TriceError("the tokenizer's chat template cannot be split into turns (use --prompt-format plain)")
    head, rest = two.split(_Q1)
    assistant, rest = rest.split(_A1)
    between, generation = rest.split(_Q2)
    end = one[one.index(_A1) + len(_A1):]  # what closes an assistant turn when nothing follows
    if not end.strip() or not between.startswith(end) or not head.endswith(between[len(end):]):
        raise TriceError("the tokenizer's chat template cannot be split into turns (use --prompt-format plain)")
    user = between[len(end):]
    if generation != assistant:
        raise TriceError("the tokenizer's chat template opens the last assistant turn differently from earlier "
                         "ones (use --prompt-format plain)")
    system = head[:len(head) - len(user)]
    # The sampler stops at the end-of-turn text (a special token in most templates: the engine stops at
    # special tokens anyway) or at the opening of another user turn.
    return PromptFormat("chat", system=system, user=user, assistant=assistant, end=end,
                        stop=(end.rstrip() or end,) + ((user.strip(),) if user.strip() else ()))


def resolve_format(name: str, tokenizer) -> PromptFormat:
    """``plain``, ``chat`` (the tokenizer's template) or ``auto`` (see the module docstring).

    >>> resolve_format("plain", None).name
    'plain'
    """
    if name == "plain":
        return PLAIN
    if name == "chat":
        return chat_format(tokenizer)
    if name == "auto":
        return chat_format(tokenizer) if AUTO_PREFERS_CHAT and getattr(tokenizer, "chat_template", None) else PLAIN
    raise TriceError(f"unknown prompt format {name!r}: choose plain, chat or auto")
