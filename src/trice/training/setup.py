"""One set-up path for every command that runs the model on a task: ``trice train``/``demo`` (with the
exemplar search), ``trice eval`` and the learning curve. It resolves the prompt format, finds or loads
the exemplars, builds the method, and drops the questions whose prompt cannot fit in the model's context
*before any forward pass* (the exemplar search included), so a 60,000-character question is a warning,
not a forward pass over tens of thousands of tokens.

An example's longest input is prefix + prompt + ``max_new_tokens`` sampled tokens (the prefix is the
exemplars, or the soft prompt initialised from them, which has as many positions). Past the model's
maximum length a forward pass is wrong (positions it was not trained on) and, over tens of thousands
of tokens, slow enough to look like a hang or large enough to exhaust memory. Such examples are
dropped with one warning that counts them (``--on-too-long drop``, the default) or refused
(``--on-too-long error``).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import torch

from ..errors import TriceError
from ..evaluation.accuracy import HeldOut
from ..generation.sampler import TorchSampler
from ..methods import method_from_config
from ..methods.base import Method
from ..methods.initialisation import find_exemplars, load_exemplars
from ..modeling.loading import context_length
from ..modeling.policy import Policy
from ..prompts import PromptFormat, resolve_format
from ..tasks.base import Example, Task
from ..tools import make_tool


class ContextCheck:
    """Whether a prefix and a prompt, with ``max_new_tokens`` sampled tokens, fit in the model's context
    (always, when the model states no maximum length)."""

    def __init__(self, tokenizer, model, max_new_tokens: int):
        self.tokenizer, self.max_new_tokens = tokenizer, max_new_tokens
        self.limit = context_length(model, tokenizer) if model is not None else None
        self._prefix_lengths: dict[str, int] = {}

    def length(self, prefix: str, prompt: str) -> int:
        """Tokens of prefix + prompt + max_new_tokens."""
        if prefix not in self._prefix_lengths:
            self._prefix_lengths[prefix] = len(self.tokenizer(prefix, add_special_tokens=False).input_ids) if prefix else 0
        return self._prefix_lengths[prefix] + len(self.tokenizer(prompt, add_special_tokens=False).input_ids) \
            + self.max_new_tokens

    def fits(self, prefix: str, prompt: str) -> bool:
        return self.limit is None or self.length(prefix, prompt) <= self.limit


def drop_too_long(check: ContextCheck, examples: list[Example], layouts, what: str, on_too_long: str = "drop") -> list:
    """``examples`` whose every ``(prefix_text, prompt_fn)`` layout fits (:class:`ContextCheck`); the others
    dropped with one warning, or a TriceError under ``on_too_long == "error"``."""
    if check.limit is None or not examples:
        return examples
    kept, too_long = [], []
    for i, example in enumerate(examples):
        need = max(check.length(prefix, fn(example)) for prefix, fn in layouts)
        (kept if need <= check.limit else too_long).append((i, example, need))
    if not too_long:
        return examples
    first, _, need = too_long[0]
    message = (f"{len(too_long)} of {len(examples)} {what} examples do not fit in the model's context of "
               f"{check.limit} tokens with the prefix and max_new_tokens = {check.max_new_tokens} (the first, "
               f"#{first}, needs {need})")
    if on_too_long == "error":
        raise TriceError(message + "; shorten them, or drop them with --on-too-long drop")
    warnings.warn(message + "; dropped (--on-too-long error refuses them instead)", RuntimeWarning, stacklevel=2)
    return [example for _, example, _ in kept]


@dataclass
class Setup:
    """What a run is made of once its text is settled: the prompt format, the exemplars and the prefix
    made of them, the method, the training questions and the held-out evaluation (all of which fit)."""

    fmt: PromptFormat
    exemplars: list[Example]
    method: Method
    train_set: list[Example]
    held_out: HeldOut

    @property
    def prefix(self) -> str:
        return self.fmt.prefix(self.exemplars)

    def longest_input(self, tokenizer, max_new_tokens: int) -> int:
        """The most tokens one sampled row needs: prefix + the longest training prompt (the rationale prompt
        or the hinted guide's) + ``max_new_tokens`` (an engine's ``max_model_len``)."""
        check = ContextCheck(tokenizer, None, max_new_tokens)
        guide = self.fmt.guide_prefix(self.exemplars)
        return max([check.length(self.prefix, self.method.prompt(e.question)) for e in self.train_set]
                   + [check.length(guide, self.fmt.guide_prompt(e.question, e.answer)) for e in self.train_set])


def prepare(config, model, tokenizer, task: Task, *, exemplars: list[Example] | None = None,
            generator: torch.Generator | None = None, training: bool = True) -> Setup:
    """The run's :class:`Setup`. ``exemplars``: given (a resumed or evaluated run's own), else the user's
    ``--exemplars`` file, the task's, or the untuned model's own correct rationales on training questions
    that fit (found by sampling with ``generator``). ``training=False`` (``trice eval``): only the
    held-out questions are checked."""
    fmt = resolve_format(config.prompt_format, tokenizer)  # plain text or the chat template (trice.prompts)
    check = ContextCheck(tokenizer, model, config.max_new_tokens)
    train_set = (task.train[:config.n_train] if config.n_train else task.train) if training else []
    if exemplars is None:
        exemplars = _exemplars(config, model, tokenizer, task, train_set, fmt, check, generator)
    exemplars = list(exemplars)[:config.num_exemplars]
    method = method_from_config(config, exemplars, fmt)
    prefix = fmt.prefix(exemplars)
    test_set = drop_too_long(check, task.test[:config.n_eval] if config.n_eval else [],
                             [(prefix, lambda e: method.prompt(e.question))], "held-out", config.on_too_long)
    if training:
        train_set = drop_too_long(check, train_set, [(prefix, lambda e: fmt.prompt(e.question)),
                                                     (fmt.guide_prefix(exemplars),
                                                      lambda e: fmt.guide_prompt(e.question, e.answer))],
                                  "training", config.on_too_long)
        if len(train_set) < config.batch_size:
            raise TriceError(f"task {task.name} has {len(train_set)} training examples that fit, fewer than "
                             f"batch_size (M) = {config.batch_size}")
        if config.n_eval and not test_set:
            raise TriceError(f"task {task.name} has no test examples to evaluate on (set --n-eval 0)")
    held_out = HeldOut(task, test_set, method.prompt, method.format.stop, make_tool(config.tools),
                       config.max_new_tokens, config.sample_batch_size)
    return Setup(fmt, exemplars, method, train_set, held_out)


def _exemplars(config, model, tokenizer, task, train_set, fmt, check, generator) -> list[Example]:
    if config.exemplars:
        return load_exemplars(config.exemplars)
    if task.exemplars:
        return list(task.exemplars)
    # The search samples training questions from the untuned model: only those that fit its longest
    # prompt (the format's bootstrap exemplars) are tried.
    tools = config.tools != "none"
    longest = max(fmt.prefix([]), fmt.bootstrap_prefix(tools), key=len)
    fitting = (e for e in train_set if check.fits(longest, fmt.prompt(e.question)))
    candidates = list(itertools.islice(fitting, config.exemplar_search))
    search = TorchSampler(Policy.untuned(model, tokenizer), generator or torch.Generator().manual_seed(config.seed),
                          max_new_tokens=config.max_new_tokens, batch_size=config.sample_batch_size, stop=fmt.stop,
                          tool=make_tool(config.tools))
    return find_exemplars(search, task, candidates, config.num_exemplars, len(candidates), fmt, tools=tools)
