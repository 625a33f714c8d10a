"""A stand-in for the ``vllm`` package at its API boundary (LLM, SamplingParams, outputs), for tests.

It really samples: it loads the model directory it is given with transformers and draws tokens from it
(seeded per request, as vLLM's ``SamplingParams.seed``), from text prompts or ``prompt_embeds``, and
``load_weights`` copies tensors into it by name. So a broken weight push shows as samples drawn from
stale weights, i.e. a non-zero log-prob gap.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

created: list["LLM"] = []


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    max_tokens: int = 16
    stop: list = field(default_factory=list)
    logprobs: int | None = None
    seed: int | None = None
    stop_token_ids: list | None = None


@dataclass
class Logprob:
    logprob: float


class LLM:
    def __init__(self, model: str, **kwargs):
        self.kwargs = kwargs
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.loaded: list[str] = []
        runner = types.SimpleNamespace(model=types.SimpleNamespace(load_weights=self._load_weights))
        self.llm_engine = types.SimpleNamespace(model_executor=types.SimpleNamespace(
            driver_worker=types.SimpleNamespace(model_runner=runner)))
        self.requests: list = []
        created.append(self)

    def _load_weights(self, weights):
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in list(weights):
                params[name].copy_(value)  # KeyError: a name vLLM would not know
                self.loaded.append(name)

    def reset_prefix_cache(self):
        pass

    @torch.no_grad()
    def generate(self, requests, sampling_params, use_tqdm=False):
        self.requests.extend(requests)
        outputs = []
        for request, params in zip(requests, sampling_params, strict=True):
            if "prompt_embeds" in request:
                embeds = request["prompt_embeds"][None]
            else:
                embeds = self.model.get_input_embeddings()(torch.tensor([request["prompt_token_ids"]]))
            g = torch.Generator().manual_seed(params.seed)
            token_ids, logprobs, text, reason = [], [], "", "length"
            for _ in range(params.max_tokens):
                logits = self.model(inputs_embeds=embeds).logits[0, -1].double()
                logp = torch.log_softmax(logits / params.temperature, -1)
                t = int(torch.multinomial(logp.exp(), 1, generator=g))
                token_ids.append(t)
                logprobs.append({t: Logprob(float(logp[t]))})
                text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
                hit = [s for s in params.stop if s in text]
                if hit:
                    text, reason = text[:min(text.index(s) for s in hit)], "stop"
                    break
                embeds = torch.cat([embeds, self.model.get_input_embeddings()(torch.tensor([[t]]))], 1)
            outputs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(
                text=text, token_ids=token_ids, logprobs=logprobs, finish_reason=reason)]))
        return outputs
