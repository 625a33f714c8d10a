"""Training methods: each turns a minibatch into weighted sequences for the one loop
(:mod:`trice.methods.base`); the registry (:mod:`trice.methods.registry`) lists them and builds them.

One file per family: ``trice`` (TRICE and its estimators, with its ``memory`` and ``initialisation``),
``star``, ``k_samples`` (rejection sampling, RLOO), ``supervised`` (direct prompt tuning, gold
rationales, few-shot CoT); the likelihood-based peers, still unproven at scale, in ``experimental/``.

Importing this package imports no method (and no torch): ``Context``, ``Method`` and ``Weighted`` load
on first use.
"""

from .registry import METHODS, make_method, method_from_config

_BASE = ("Context", "Method", "Weighted")


def __getattr__(name):
    if name in _BASE:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Context", "Method", "Weighted", "make_method", "method_from_config", "METHODS"]
