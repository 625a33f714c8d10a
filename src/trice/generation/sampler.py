"""Sampling continuations from a :class:`~trice.modeling.Policy`: the :class:`Sampler` interface the
trainer owns and the methods use, its torch implementation, and the functional :func:`sample`.

Row i's input is ``policy.prefix_embeds()`` then the embeddings of ``tokenizer(prompts[i],
add_special_tokens=False)``. Randomness is per row: one key is drawn from ``generator`` per call, and
the t-th token of the call's row i is drawn by inverting its CDF at a uniform that is a hash of (key,
i, t) (:mod:`trice.generation.draw`). So a row's sample does not depend on the batch it is grouped in, on
``batch_size``, on when the engine refilled its slot, or on which process samples it
(:mod:`trice.runtime.distributed`), and the generator advances by the same amount whatever the prompts.

The work is done by the slot engine (:mod:`trice.generation.slot_engine`: static KV cache, continuous
batching, LoRA merged into the weights) where it covers the model, else by the plain path
(:mod:`trice.generation.plain_engine`); both draw, stop and insert tool results through
:class:`trice.generation.rows.RowWriter`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ..choices import ENGINES
from ..errors import TriceError
from ..modeling.merged_lora import MergedLora
from ..prompts import STOP
from ..runtime.distributed import world
from ..runtime.sharding import gathered
from . import plain_engine, slot_engine
from .rows import row_text
from .stops import cut_at_stop, stop_token_ids

DEFAULT_STOP = STOP
DEFAULT_BATCH_SIZE = 64  # decode rows; chosen by measurement (benchmarks/PROFILE.md)


@dataclass
class Sample:
    """One continuation: ``text`` cut before the first stop string, ``num_tokens`` generated
    (including the EOS or the tokens that completed a stop string), ``finished`` False if it ran
    out of ``max_new_tokens`` without EOS or a stop string."""

    text: str
    num_tokens: int
    finished: bool
    token_ids: list[int] | None = None  # set by samplers that report them (vLLM)
    logprobs: list[float] | None = None  # log-prob of each sampled token, where the sampler reports it


# A tool hook (issue: tool calls inside rationales) is called with a row's text whenever its new token
# may complete a call, and returns the text to append as forced (not sampled) tokens, or None.
ToolHook = Callable[[str], "str | None"]


class Sampler(Protocol):
    """What the trainer owns and passes to the methods: sampling plus its own bookkeeping.

    - ``sample(prompts, temperature=None, prefix=None, hook=None)``: one continuation per prompt at
      the proposal temperature by default; ``prefix`` replaces the policy's prefix with this hard text
      (the hinted guide, the exemplar search); ``hook`` inserts tool results mid-sequence.
    - ``tokens``: tokens sampled so far (all processes' rows; restored on resume).
    - ``on_update()``: called by the trainer after every change of the weights (an optimiser step,
      STaR's reset): vLLM pushes the weights, the torch engine re-merges LoRA.
    - ``metrics()``: diagnostics for this step's metrics line (e.g. vLLM's log-prob gap).

    Each implementation splits rows across processes itself and returns every row on every process.
    """

    tokens: int

    def sample(self, prompts: list[str], temperature: float | None = None, prefix: str | None = None,
               hook: ToolHook | None = None) -> list[Sample]: ...

    def on_update(self) -> None: ...

    def metrics(self) -> dict: ...


class TorchSampler:
    """The torch engine behind the :class:`Sampler` interface.

    >>> from trice.modeling import Policy, load_model  # doctest: +SKIP
    >>> policy = Policy.create(*load_model(), params="lora")  # doctest: +SKIP
    >>> sampler = TorchSampler(policy, torch.Generator().manual_seed(0), max_new_tokens=32)  # doctest: +SKIP
    >>> sampler.sample(["Question: 2 + 3 =\\nAnswer:"])[0].text  # doctest: +SKIP
    >>> sampler.tokens  # doctest: +SKIP
    """

    def __init__(self, policy, generator: torch.Generator, *, max_new_tokens: int = 64, temperature: float = 1.0,
                 stop: tuple[str, ...] = STOP, batch_size: int = DEFAULT_BATCH_SIZE, engine: str = "auto",
                 tool: ToolHook | None = None):
        self.policy, self.generator = policy, generator
        self.max_new_tokens, self.temperature, self.stop = max_new_tokens, temperature, stop
        self.batch_size, self.engine = batch_size, engine
        self.tool = tool  # the run's tool (trice.tools), used when a call passes no hook
        self.merged = MergedLora(policy.model, enabled=not getattr(policy, "sharded", False))
        self.tokens = 0

    def sample(self, prompts, temperature=None, prefix=None, hook=None):
        policy = self.policy if prefix is None else self.policy.with_prefix(prefix)
        out = sample(policy, prompts, max_new_tokens=self.max_new_tokens,
                     temperature=self.temperature if temperature is None else temperature, stop=self.stop,
                     generator=self.generator, batch_size=self.batch_size, engine=self.engine, merged=self.merged,
                     hook=hook if hook is not None else self.tool)
        self.tokens += sum(s.num_tokens for s in out)
        return out

    def on_update(self) -> None:
        self.merged.invalidate()

    def metrics(self) -> dict:
        if self.engine != "compiled":
            return {}
        from .compiled_decode import compile_seconds  # the first call of each shape, compile included

        return {"seconds_first_compiled_steps": round(sum(compile_seconds.values()), 2)}


def sample(policy, prompts: list[str], *, max_new_tokens: int = 64, temperature: float = 1.0,
           stop: tuple[str, ...] = DEFAULT_STOP, generator: torch.Generator | None = None,
           batch_size: int = DEFAULT_BATCH_SIZE, engine: str = "auto",
           merged: MergedLora | None = None, hook: ToolHook | None = None) -> list[Sample]:
    """Sample one continuation per prompt (temperature 0 = greedy).

    ``hook`` (e.g. :class:`trice.tools.Calculator`) inserts tool results mid-sequence: a sample's text then
    holds the inserted spans marked (:func:`trice.tools.mark`), and its ``num_tokens`` counts them.

    ``engine``: "slots" (:mod:`.slot_engine`), "compiled" (the slot engine with its decode step through
    ``torch.compile``, :mod:`.compiled_decode`), "plain" (:mod:`.plain_engine`) or "auto"
    (:func:`auto_engine`: slots on CPUs where the model's attention is covered; on GPUs plain, or compiled where
    ``make gpu-check`` measured it faster). ``merged`` keeps LoRA's merged weights between calls.

    >>> import torch  # doctest: +SKIP
    >>> from trice.modeling import Policy, load_model  # doctest: +SKIP
    >>> policy = Policy.create(*load_model(), params="lora")  # doctest: +SKIP
    >>> out = sample(policy, ["Question: 2+3?\\nAnswer:"], temperature=0, max_new_tokens=16,
    ...              generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
    >>> isinstance(out[0].text, str)  # doctest: +SKIP
    True
    """
    if temperature < 0:
        raise TriceError(f"temperature must be >= 0, got {temperature}")
    if batch_size < 1 or max_new_tokens < 0:
        raise TriceError("batch_size must be >= 1 and max_new_tokens >= 0")
    if engine not in ENGINES:
        raise TriceError(f"unknown sampling engine '{engine}': choose {', '.join(ENGINES)}")
    key = int(torch.randint(0, 2 ** 62, (1,), generator=generator)) if temperature > 0 else 0
    if not prompts:
        return []
    if policy.params != "prompt" and len(policy.prefix_ids) == 0 and any(p == "" for p in prompts):
        raise TriceError("cannot sample from an empty prompt without a prefix")  # (on every rank alike)
    # Several processes: each samples its own rows; all of them get every row back. Sharded weights are gathered
    # for the whole call: each process then decodes its rows for as many steps as they need.
    with gathered(policy.base_model) if getattr(policy, "sharded", False) else contextlib.nullcontext():
        return world().map_rows(len(prompts), lambda mine: _sample_rows(
            policy, [prompts[i] for i in mine], mine, key, max_new_tokens, temperature, stop, batch_size, engine,
            merged, hook))


def auto_engine(policy) -> str:
    """The engine ``engine="auto"`` picks, by measurement (benchmarks/PROFILE.md): the slot engine on CPUs
    (336 against 204 tok/s at 64 rows on SmolLM2-135M), the plain path on CUDA, where the slot engine's
    many small kernels leave the GPU waiting on Python (H100, Qwen2.5-0.5B shape, bf16: plain 3,230
    against 1,992 tok/s at 64 rows, 9,913 against 6,280 at 256); and the plain path for attention the
    slot engine does not cover (sliding windows, soft-capping). On CUDA the compiled slot engine is picked
    where ``make gpu-check`` measured it faster than the plain path on that GPU (:mod:`.engine_choice`); the
    choice is said once per process."""
    if not slot_engine.supports(policy.base_model):
        return "plain"
    if policy.device.type == "cuda":
        from . import engine_choice

        engine, why = engine_choice.cuda_engine(engine_choice.device_name(policy.device))
        engine_choice.say_once(engine, why)
        return engine
    return "slots"


def _sample_rows(policy, prompts, row_ids, key, max_new_tokens, temperature, stop, batch_size, engine, merged,
                 hook=None):
    if not prompts:
        return []
    tok = policy.tokenizer
    ids = [tok(p, add_special_tokens=False).input_ids for p in prompts]
    stop_ids = stop_token_ids(tok, policy.base_model)
    if engine == "auto":
        engine = auto_engine(policy)
    if engine == "compiled" and not slot_engine.supports(policy.base_model):
        engine = "plain"  # (the compiled step is the slot engine's)
    run = slot_engine.run if engine in ("slots", "compiled") else plain_engine.run
    extra = {"compiled": True} if engine == "compiled" else {}
    merged = merged if merged is not None else MergedLora(policy.model, enabled=not getattr(policy, "sharded", False))
    with torch.inference_mode(), merged.active():
        if policy.prefix_embeds().shape[0] == 0 and any(len(x) == 0 for x in ids):
            raise TriceError("cannot sample from an empty prompt without a prefix")
        rows = run(policy, ids, row_ids, key, max_new_tokens=max_new_tokens, temperature=temperature, stop=stop,
                   stop_ids=stop_ids, batch_size=batch_size, hook=hook, **extra)
    samples = []
    for i in range(len(prompts)):
        n = int(rows.count[i])
        text, hit = cut_at_stop(row_text(tok, rows.tokens[i, :n].tolist(), rows.forced[i, :n].tolist(), stop_ids), stop)
        samples.append(Sample(text, n, bool(rows.finished[i]) or hit))
    return samples
