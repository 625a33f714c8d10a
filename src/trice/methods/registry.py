r"""The method registry: every method's name (as ``--method`` spells it), where it lives, what it is
built from, and what it emits (the one list: the config, ``compare`` and the CLI help read it here).

Entries name their class as a module path, imported only when a method is made (as vLLM's model
registry names its model classes), so that the config and ``trice --help`` list the methods without
importing torch. tests/test_import_graph.py counts these paths as imports.

| method | sequences it emits | weight |
|---|---|---|
| trice-auto | trice-nocv's terms while the running acceptance rate is below 0.7, then trice's | as those |
| trice | L terms drawn from memory + proposals | sign * W / (Mv L) |
| trice-full | all 2M memory and proposal terms | sign * w / Mv |
| trice-nocv | correct memory rationales | 1 / M |
| star, star-norat | kept correct (or rationalised) rationales | 1 / M |
| rs | correct samples among k | 1 / (k M) |
| rloo | all k samples | (reward - leave-one-out mean) / (k M) |
| grpo | all k samples | TRL's GRPO: (reward - group mean) / (std + 1e-4), normalised by tokens (dapo, grpo, dr_grpo) |
| pt-direct | the answer alone | 1 / M |
| sft-gold | the gold rationale | 1 / M |
| fewshot-cot | nothing (evaluation only) | |
| trice-soft | L terms of memory + proposals, and log p(y \| x, z') of the memory | soft weights (ALGORITHM.md 6) |
| jepo | all k samples, and log p(y \| x, z) of each | Jensen bound with a leave-one-out baseline |
| latro | all k samples, and log p(y \| x, z) of each | RLOO on log p(y \| x, z) - KL to the initial policy |

>>> METHODS[:4]
('trice-auto', 'trice', 'trice-full', 'trice-nocv')
>>> make_method("rloo", k=8).k
8
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import TriceError

if TYPE_CHECKING:
    from ..prompts import PromptFormat
    from .base import Method


@dataclass(frozen=True)
class MethodSpec:
    """``module:cls`` built with ``fixed`` keyword arguments, the run's exemplars when ``exemplars``,
    and the config fields ``options`` maps to keyword arguments."""

    module: str
    cls: str
    fixed: dict[str, Any] = field(default_factory=dict)
    exemplars: bool = False
    options: dict[str, str] = field(default_factory=dict)  # config field -> keyword argument


_K = {"k": "k"}
_SPECS: dict[str, MethodSpec] = {
    "trice-auto": MethodSpec("trice.methods.trice", "TriceMethod", {"estimator": "trice-auto"}, exemplars=True),
    "trice": MethodSpec("trice.methods.trice", "TriceMethod", {"estimator": "trice"}, exemplars=True),
    "trice-full": MethodSpec("trice.methods.trice", "TriceMethod", {"estimator": "trice-full"}, exemplars=True),
    "trice-nocv": MethodSpec("trice.methods.trice", "TriceMethod", {"estimator": "trice-nocv"}, exemplars=True),
    "star": MethodSpec("trice.methods.star", "STaR", {"rationalize": True}, exemplars=True,
                       options={"star_inner_steps": "inner_steps"}),
    "star-norat": MethodSpec("trice.methods.star", "STaR", {"rationalize": False}, exemplars=True,
                             options={"star_inner_steps": "inner_steps"}),
    "rs": MethodSpec("trice.methods.k_samples", "KSampleMethod", {"name": "rs"}, options=_K),
    "rloo": MethodSpec("trice.methods.k_samples", "KSampleMethod", {"name": "rloo"}, options=_K),
    "grpo": MethodSpec("trice.methods.k_samples", "KSampleMethod", {"name": "grpo"},
                       options={"k": "k", "grpo_loss_type": "loss_type", "grpo_scale_rewards": "scale_rewards"}),
    "pt-direct": MethodSpec("trice.methods.supervised", "DirectPromptTuning"),
    "sft-gold": MethodSpec("trice.methods.supervised", "GoldRationales"),
    "fewshot-cot": MethodSpec("trice.methods.supervised", "FewShotCoT"),
    "trice-soft": MethodSpec("trice.methods.experimental.likelihood", "SoftTrice", exemplars=True),
    "jepo": MethodSpec("trice.methods.experimental.likelihood", "LikelihoodKSample", {"name": "jepo"}, options=_K),
    "latro": MethodSpec("trice.methods.experimental.likelihood", "LikelihoodKSample", {"name": "latro"},
                        options=_K),
}
METHODS = tuple(_SPECS)  # in the order help texts show them
MODULES = tuple(dict.fromkeys(spec.module for spec in _SPECS.values()))  # what make_method may import


def make_method(name: str, exemplars=None, k: int = 4, star_inner_steps: int = 20,
                fmt: "PromptFormat | None" = None, **options) -> "Method":
    """The method called ``name`` (as ``--method`` spells it), writing its text in prompt format ``fmt``
    (plain text by default); ``k``, ``star_inner_steps`` and ``options`` are the config fields methods take."""
    spec = _SPECS.get(name)
    if spec is None:
        raise TriceError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    given = {"k": k, "star_inner_steps": star_inner_steps, **options}
    kwargs = dict(spec.fixed, **{arg: given[key] for key, arg in spec.options.items() if key in given})
    if spec.exemplars:
        kwargs["exemplars"] = exemplars
    method = getattr(importlib.import_module(spec.module), spec.cls)(**kwargs)
    if fmt is not None:
        method.format = fmt
    return method


def method_from_config(config, exemplars=None, fmt: "PromptFormat | None" = None) -> "Method":
    """:func:`make_method` with every option the method takes read from ``config`` (a TrainConfig)."""
    spec = _SPECS.get(config.method)
    options = {key: getattr(config, key) for key in (spec.options if spec else {}) if hasattr(config, key)}
    return make_method(config.method, exemplars, fmt=fmt, **options)
