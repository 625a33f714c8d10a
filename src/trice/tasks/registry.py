"""The task registry: each family registers a factory under a prefix (``gym``, ``gsm8k``, ``bbh``,
``jsonl``, ``hf``); ``trice.tasks`` imports the families, so importing the package fills the registry. The
families import this module, never the package, so there is no import cycle (as reasoning-gym does)."""

from __future__ import annotations

import dataclasses
from typing import Callable

from ..errors import TriceError
from .base import Task

_REGISTRY: dict[str, Callable[..., Task]] = {}


def register(prefix: str):
    """Register ``factory(name_rest, data_dir=None, seed=0, **options) -> Task`` under ``prefix``."""

    def wrap(factory):
        _REGISTRY[prefix] = factory
        return factory

    return wrap


def get_task(name: str, data_dir: str | None = None, seed: int = 0, **options) -> Task:
    """Build a task by the name users type: ``<family>``, ``<family>/<name>`` or ``<family>:<name>``.

    >>> import trice.tasks
    >>> task = trice.tasks.get_task("gym/chain_sum", n_train=4, n_test=2, min_terms=2, max_terms=2)
    >>> len(task.train), len(task.test)
    (4, 2)
    """
    family, rest = _family(name)
    return _REGISTRY[family](rest, data_dir=data_dir, seed=seed, **options)


def _family(name: str) -> tuple[str, str]:
    """``(family, rest of the name)``: the family is the text before the first "/" or, failing
    that, the first ":" (so ``hf:org/data:config`` is family ``hf``, rest ``org/data:config``)."""
    for sep in ("/", ":"):
        prefix, _, rest = name.partition(sep)
        if rest and prefix in _REGISTRY:
            return prefix, rest
    if name in _REGISTRY:
        return name, ""
    raise TriceError(f"unknown task {name!r}; known families: {', '.join(sorted(_REGISTRY))} "
                     "(e.g. gsm8k, bbh/<task>, gym/<dataset>, jsonl:<path>, hf:<path-or-hub-id>)")


# TrainConfig fields that are task options: the families that take each (others reject a value set).
_DATA_FLAGS = {"split": ("hf",), "test_split": ("hf",), "question_field": ("hf", "jsonl"),
               "answer_field": ("hf", "jsonl"), "answer_type": ("hf",)}


def task_from_config(config) -> Task:
    """The task a :class:`~trice.config.TrainConfig` names, with its task options and data flags.

    ``--split``, ``--test-split``, ``--question-field``, ``--answer-field`` and ``--answer-type``
    become task options of the families that take them (``hf:``; ``jsonl:`` takes the two field
    names) when set to other than their defaults; a flag that the task's family does not take, or
    that disagrees with the same ``--task-option``, is an error. With ``--reward`` the TRL-style
    reward functions become the task's checker, whatever the family
    (:func:`trice.tasks.rewards.use_rewards`).
    """
    family, _ = _family(config.task)
    options = dict(config.task_options)
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for flag, families in _DATA_FLAGS.items():
        value = getattr(config, flag)
        if value == defaults[flag]:
            continue
        cli = "--" + flag.replace("_", "-")
        if family not in families:
            raise TriceError(f"{cli} applies to {' and '.join(f + ':' for f in families)} tasks only, "
                             f"not {config.task!r}")
        if flag in options and options[flag] != value:
            raise TriceError(f"{cli} {value!r} and --task-option {flag}={options[flag]!r} disagree")
        options[flag] = value
    if config.reward_threshold != defaults["reward_threshold"] and not config.reward:
        raise TriceError("--reward-threshold needs --reward (a reward function to threshold)")
    task = get_task(config.task, data_dir=config.data_dir, seed=config.data_seed, **options)
    if config.reward:
        from .rewards import use_rewards

        use_rewards(task, config.reward, config.reward_threshold)
    return task
