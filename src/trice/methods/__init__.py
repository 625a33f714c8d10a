r"""Training methods: each turns a minibatch into weighted sequences for the one loop.

| method | sequences it emits | weight |
|---|---|---|
| trice-auto | trice-nocv's terms while the running acceptance rate is below 0.7, then trice's | as those |
| trice | L terms drawn from memory + proposals | sign * W / (Mv L) |
| trice-full | all 2M memory and proposal terms | sign * w / Mv |
| trice-nocv | correct memory rationales | 1 / M |
| star, star-norat | kept correct (or rationalised) rationales | 1 / M |
| rs | correct samples among k | 1 / (k M) |
| rloo | all k samples | (reward - leave-one-out mean) / (k M) |
| pt-direct | the answer alone | 1 / M |
| sft-gold | the gold rationale | 1 / M |
| fewshot-cot | nothing (evaluation only) | |
| trice-soft | L terms of memory + proposals, and log p(y \| x, z') of the memory | soft weights (ALGORITHM.md 6) |
| jepo | all k samples, and log p(y \| x, z) of each | Jensen bound with a leave-one-out baseline |
| latro | all k samples, and log p(y \| x, z) of each | RLOO on log p(y \| x, z) - KL to the initial policy |
"""

from __future__ import annotations

from ..errors import TriceError
from ..prompts import PLAIN, PromptFormat
from .base import Context, Method, Weighted
from .latent import LikelihoodKSample, SoftTrice
from .sampling import KSampleMethod
from .star import STaR
from .supervised import DirectPromptTuning, FewShotCoT, GoldRationales
from .trice import TriceMethod

# The one list of methods, in the order help texts show them: name -> factory(exemplars, k, star_inner_steps).
_FACTORIES = {
    "trice-auto": lambda exemplars, k, inner: TriceMethod("trice-auto", exemplars),
    "trice": lambda exemplars, k, inner: TriceMethod("trice", exemplars),
    "trice-full": lambda exemplars, k, inner: TriceMethod("trice-full", exemplars),
    "trice-nocv": lambda exemplars, k, inner: TriceMethod("trice-nocv", exemplars),
    "star": lambda exemplars, k, inner: STaR(True, exemplars, inner),
    "star-norat": lambda exemplars, k, inner: STaR(False, exemplars, inner),
    "rs": lambda exemplars, k, inner: KSampleMethod("rs", k),
    "rloo": lambda exemplars, k, inner: KSampleMethod("rloo", k),
    "pt-direct": lambda exemplars, k, inner: DirectPromptTuning(),
    "sft-gold": lambda exemplars, k, inner: GoldRationales(),
    "fewshot-cot": lambda exemplars, k, inner: FewShotCoT(),
    "trice-soft": lambda exemplars, k, inner: SoftTrice(exemplars),
    "jepo": lambda exemplars, k, inner: LikelihoodKSample("jepo", k),
    "latro": lambda exemplars, k, inner: LikelihoodKSample("latro", k),
}
METHODS = tuple(_FACTORIES)


def make_method(name: str, exemplars, k: int = 4, star_inner_steps: int = 20, fmt: PromptFormat = PLAIN) -> Method:
    """The method called ``name`` (as ``--method`` spells it), writing its text in prompt format ``fmt``."""
    if name not in _FACTORIES:
        raise TriceError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    method = _FACTORIES[name](exemplars, k, star_inner_steps)
    method.format = fmt
    return method


__all__ = ["Context", "Method", "Weighted", "make_method", "METHODS"]
