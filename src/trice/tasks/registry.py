"""The task registry: each family registers a factory under a prefix (``gym``, ``gsm8k``, ``bbh``,
``jsonl``); ``trice.tasks`` imports the families, so importing the package fills the registry. The
families import this module, never the package, so there is no import cycle (as reasoning-gym does)."""

from __future__ import annotations

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
    for sep in ("/", ":"):
        prefix, _, rest = name.partition(sep)
        if rest and prefix in _REGISTRY:
            return _REGISTRY[prefix](rest, data_dir=data_dir, seed=seed, **options)
    if name in _REGISTRY:
        return _REGISTRY[name]("", data_dir=data_dir, seed=seed, **options)
    raise TriceError(f"unknown task {name!r}; known families: {', '.join(sorted(_REGISTRY))} "
                     "(e.g. gsm8k, bbh/<task>, gym/<dataset>, jsonl:<path>)")


def task_from_config(config) -> Task:
    """The task a :class:`~trice.config.TrainConfig` names, with its task options and data flags."""
    return get_task(config.task, data_dir=config.data_dir, seed=config.seed, **config.task_options)
