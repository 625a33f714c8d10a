"""The slot engine's decode step, compiled (``engine="compiled"``, ``--engine compiled``).

The eager slot engine (:mod:`trice.generation.slot_engine`) attends, at each step, to the columns written so
far and shrinks its batch as rows finish: shapes that change every step. The compiled step keeps them fixed
for a whole sampling call: every slot's key/value is written at one column held in a tensor
(``index_copy_``), the step attends to all ``L`` columns of the cache (the unwritten ones masked), the batch
never shrinks, and ``L`` is rounded up to a multiple of :data:`LENGTH_STEP` so that calls with prompts of
slightly different lengths reuse one compiled graph. ``torch.compile`` then traces the model's forward once
per (model, batch, ``L``): inductor's fused kernels on a CPU, CUDA graphs on a GPU (``mode="reduce-overhead"``).

Only the model's forward is compiled: the draw (counter-based per-row randomness), the stop check and the
tool inserts run outside it, as in the eager engine (:class:`~trice.generation.rows.RowWriter`), so a row's
tokens are the eager engine's whenever the logits agree (tests/test_compiled_decode.py).

A model or platform that fails to compile falls back to the eager forward of the same static step, with one
warning, for the rest of the process.

Measured (benchmarks/bench.py ``compiled_decode``; PROFILE.md): on a 2-core CPU inductor's graph decodes no
faster than the eager slot engine (attending to all ``L`` columns costs what fusion saves) and compiling
SmolLM2-135M takes over a minute, so ``engine="auto"`` does not pick it. GPUs, where the eager engine waits on
kernel launches, are what it is for; no GPU was available to measure it.
"""

from __future__ import annotations

import time
import warnings

import torch

LENGTH_STEP = 64  # the cache length is rounded up to a multiple of this (one graph for nearby lengths)

_compiled: dict = {}  # (id(model), device type) -> the compiled step (torch.compile caches graphs per shape)
_failed: list[str] = []  # the first compile error: from then on this process decodes eagerly
compile_seconds: dict[tuple, float] = {}  # (batch, length) -> seconds of the first call (compile included)


def static_length(length: int) -> int:
    return -(-length // LENGTH_STEP) * LENGTH_STEP


def _step(policy, cache, last: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """One decode step of every slot: ``[B]`` last tokens in, ``[B, vocab]`` logits out."""
    out = policy.forward(policy.embed(last[:, None]), mask, position_ids=positions[:, None], past_key_values=cache,
                         use_cache=True, logits_to_keep=1)
    return out.logits[:, -1, :]


def _compiled_step(policy):
    key = (id(policy.base_model), policy.device.type)
    if key not in _compiled:
        mode = "reduce-overhead" if policy.device.type == "cuda" else None  # CUDA graphs on a GPU
        _compiled[key] = torch.compile(_step, dynamic=False, mode=mode)
    return _compiled[key]


def decode_logits(policy, cache, last, mask, positions) -> torch.Tensor:
    """The static step's logits through the compiled forward, or the eager one if compiling failed (once
    warned). ``cache``: a :class:`~trice.generation.slot_engine.SlotCache` in static mode (its ``column`` set)."""
    if _failed:
        return _step(policy, cache, last, mask, positions)
    shape = (last.shape[0], cache.length)
    start = time.perf_counter()
    try:
        logits = _compiled_step(policy)(policy, cache, last, mask, positions)
    except Exception as exc:  # a model or backend inductor cannot compile: decode eagerly, never crash
        _failed.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        warnings.warn(f"torch.compile failed for the decode step ({_failed[0]}); decoding eagerly instead",
                      RuntimeWarning, stacklevel=2)
        return _step(policy, cache, last, mask, positions)
    if shape not in compile_seconds:
        compile_seconds[shape] = time.perf_counter() - start
    return logits


def reset() -> None:
    """Forget compiled steps and a past failure (tests; a new model in the same process compiles anew anyway)."""
    _compiled.clear()
    _failed.clear()
    compile_seconds.clear()
