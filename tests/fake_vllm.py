"""A stand-in for the ``vllm`` package at the API boundary trice uses (vLLM 0.32: ``LLM``, ``SamplingParams``,
``collective_rpc("reload_weights")``, ``apply_model``, ``vllm.platforms``), for tests without vLLM; real vLLM
is tested by ``make vllm-check`` (tests/vllm).

It really samples: it loads the model directory it is given with transformers and draws tokens from it
(seeded per request, as ``SamplingParams.seed``), from token ids or ``prompt_embeds``, stops at stop strings
(text cut before them unless ``include_stop_str_in_output``) and stop-token ids, and returns raw log-probs
(``logprobs_mode="raw_logprobs"``: the model's, not the temperature-scaled ones). It raises where vLLM 0.32
raises: an engine argument it does not know, ``prompt_embeds`` without ``enable_prompt_embeds`` or of the
wrong width, a weight name the model does not have. So a broken weight push shows as samples drawn from
stale weights, i.e. a non-zero log-prob gap.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

created: list["LLM"] = []
ENGINE_ARGS = {"model", "tokenizer", "dtype", "seed", "max_model_len", "enable_prompt_embeds", "logprobs_mode",
               "enable_prefix_caching", "enable_chunked_prefill", "max_num_batched_tokens", "max_num_seqs",
               "disable_log_stats", "kv_cache_memory_bytes", "enforce_eager", "block_size", "gpu_memory_utilization",
               "distributed_executor_backend"}


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    max_tokens: int = 16
    stop: list = field(default_factory=list)
    stop_token_ids: list | None = None
    include_stop_str_in_output: bool = False
    logprobs: int | None = None
    seed: int | None = None


@dataclass
class Logprob:
    logprob: float


class LLM:
    def __init__(self, model: str, **kwargs):
        unknown = set(kwargs) - ENGINE_ARGS
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        self.kwargs = kwargs
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.loaded: list[str] = []
        self.requests: list = []
        self.refreshed = 0
        created.append(self)

    def collective_rpc(self, method: str, kwargs: dict | None = None):
        assert method == "reload_weights", method
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in list(kwargs["weights_iterator"]):
                params[name].copy_(value)  # KeyError: a name the model does not have
                self.loaded.append(name)
        return [None]

    def apply_model(self, fn):
        self.refreshed += 1
        return [fn(self.model)]

    def reset_prefix_cache(self):
        return True

    @torch.no_grad()
    def generate(self, requests, sampling_params, use_tqdm=False):
        self.requests.extend(requests)
        outputs = []
        embed = self.model.get_input_embeddings()
        for request, params in zip(requests, sampling_params, strict=True):
            if "prompt_embeds" in request:
                if not self.kwargs.get("enable_prompt_embeds"):
                    raise ValueError("You must set `--enable-prompt-embeds` to input `prompt_embeds`.")
                embeds = request["prompt_embeds"]
                if embeds.dim() != 2 or embeds.shape[1] != embed.weight.shape[1]:
                    raise RuntimeError(f"The size of tensor a ({embed.weight.shape[1]}) must match the size of "
                                       f"tensor b ({embeds.shape[-1]}) at non-singleton dimension 1")
                embeds = embeds[None].to(embed.weight.dtype)
            else:
                embeds = embed(torch.tensor([request["prompt_token_ids"]]))
            g = torch.Generator().manual_seed(params.seed)
            token_ids, logprobs, reason, stop_reason = [], [], "length", None
            text = ""
            for _ in range(params.max_tokens):
                logits = self.model(inputs_embeds=embeds).logits[0, -1].double()
                raw = torch.log_softmax(logits, -1)
                t = int(torch.multinomial(torch.softmax(logits / params.temperature, -1), 1, generator=g))
                token_ids.append(t)
                logprobs.append({t: Logprob(float(raw[t]))})
                if t in (params.stop_token_ids or []):
                    reason, stop_reason = "stop", t
                    break
                text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
                hit = [s for s in params.stop if s in text]
                if hit:
                    first = min(hit, key=text.index)
                    end = text.index(first) + (len(first) if params.include_stop_str_in_output else 0)
                    text, reason, stop_reason = text[:end], "stop", first
                    break
                embeds = torch.cat([embeds, embed(torch.tensor([[t]]))], 1)
            outputs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(
                text=text, token_ids=token_ids, logprobs=logprobs, finish_reason=reason, stop_reason=stop_reason)]))
        return outputs


def install(monkeypatch, cpu: bool = True):
    """Put this stand-in where ``import vllm`` finds it, with the submodules trice reads (the platform, and
    the CPU packing function the weight push calls), on a CPU platform unless ``cpu`` is False."""
    this = sys.modules[__name__]
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: cpu)
    utils = types.ModuleType("vllm.model_executor.layers.utils")
    utils.dispatch_cpu_unquantized_gemm = lambda layer, remove_weight=True: None
    monkeypatch.setitem(sys.modules, "vllm", this)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    monkeypatch.setitem(sys.modules, "vllm.model_executor", types.ModuleType("vllm.model_executor"))
    monkeypatch.setitem(sys.modules, "vllm.model_executor.layers", types.ModuleType("vllm.model_executor.layers"))
    monkeypatch.setitem(sys.modules, "vllm.model_executor.layers.utils", utils)
    created.clear()
    return this
