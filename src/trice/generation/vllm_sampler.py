"""Sampling with vLLM on GPUs (``--sampler vllm``; ``pip install 'trice-cot[vllm]'``).

vLLM runs in the training process ("colocate", as TRL's GRPO does) and replaces the torch sampler for
the rationales a method samples during training (proposals, k samples, STaR's collection). The
trainer's weights are pushed to it before sampling whenever they changed: LoRA is merged into the
base weights for the push (vLLM then needs no adapter support), full weights are pushed as they are,
and a soft prompt is passed with each request as ``prompt_embeds`` (the soft prompt followed by the
prompt's token embeddings). Each row gets its own vLLM seed, a hash of the call's key and the row's
position, so a row's sample does not depend on its batch or on the process that draws it.

Every step, a few sampled rows are re-scored by the trainer and the mean per-token difference of
log-probabilities is logged (``sampler_logprob_gap``): it is ~0 when vLLM samples from the model
being trained, and grows if the weight push is broken or numerics differ (bf16 kernels).

The rationales a method samples (proposals, k samples, STaR's collection) and the memory's
initialisation under the hinted guide (a hard-text ``prefix``) go through vLLM; the held-out
evaluation uses the torch engine (so the greedy evaluation matches ``trice eval`` exactly).
"""

from __future__ import annotations

import os

import torch

from ..errors import TriceError
from ..prompts import STOP
from ..runtime.distributed import world
from .draw import row_seed
from .sampler import Sample

INSTALL = "pip install 'trice-cot[vllm]'"


def import_vllm():
    try:
        import vllm
    except ImportError:
        raise TriceError(f"--sampler vllm needs vLLM, which is not installed: {INSTALL} "
                         "(on a machine with an NVIDIA GPU)") from None
    return vllm


class VLLMSampler:
    """vLLM behind the :class:`trice.generation.sampler.Sampler` interface (``sample``, ``tokens``, ``on_update``,
    ``metrics``); :meth:`generate` is the raw call for given rows and key.

    >>> from trice.modeling import Policy, load_model  # doctest: +SKIP
    >>> policy = Policy.create(*load_model("Qwen/Qwen2.5-0.5B-Instruct", "bfloat16", "cuda"), params="lora")  # doctest: +SKIP
    >>> vs = VLLMSampler(policy, "Qwen/Qwen2.5-0.5B-Instruct", dtype="bfloat16")  # doctest: +SKIP
    >>> vs.sample(["Question: 2 + 3?\\nAnswer:"])[0].text  # doctest: +SKIP
    """

    def __init__(self, policy, model_name: str, dtype: str = "auto", gpu_memory_utilization: float = 0.3,
                 seed: int = 0, llm=None, *, generator: torch.Generator | None = None, max_new_tokens: int = 64,
                 temperature: float = 1.0, stop: tuple[str, ...] = STOP, check_rows: int = 4):
        vllm = import_vllm()
        if llm is None:
            if not torch.cuda.is_available():
                raise TriceError("--sampler vllm needs a CUDA GPU and none is visible; use --sampler torch")
            if str(model_name).endswith(".gguf") or model_name in (None, "smollm2-135m"):
                raise TriceError("--sampler vllm needs a hub id or a model directory (safetensors), "
                                 f"not {model_name!r}")
            # The engine must run in this process for the weight push (V1 otherwise runs it in a
            # subprocess and has no model_executor here); under torchrun, as TRL's colocate mode,
            # each rank's engine joins the launcher's process group.
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            launched = {"distributed_executor_backend": "external_launcher"} if world().size > 1 else {}
            llm = vllm.LLM(model=str(model_name), dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                           seed=seed, enable_prompt_embeds=policy.params == "prompt", tokenizer=str(model_name),
                           max_num_batched_tokens=4096, **launched)
        self.vllm, self.llm, self.policy = vllm, llm, policy
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.max_new_tokens, self.temperature, self.stop, self.check_rows = max_new_tokens, temperature, stop, check_rows
        self.tokens = 0
        self._stale = True  # the engine's weights differ from the trainer's
        self._gap: float | None = None

    # ------------------------------------------------------------------------------ Sampler interface
    def sample(self, prompts: list[str], temperature: float | None = None, prefix: str | None = None,
               hook=None) -> list[Sample]:
        if hook is not None:
            raise TriceError("tool hooks are not supported with --sampler vllm; use --sampler torch")
        temperature = self.temperature if temperature is None else temperature
        key = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator))  # as the torch sampler
        if self._stale:
            self.push()

        def work(mine):
            rows = [prompts[i] for i in mine]
            out = self.generate(rows, max_new_tokens=self.max_new_tokens, temperature=temperature, key=key,
                                row_ids=mine, stop=self.stop, prefix=prefix)
            if self.check_rows and out and prefix is None:
                self._gap = logprob_gap(self.policy, rows[:self.check_rows], out[:self.check_rows])
            return out

        out = world().map_rows(len(prompts), work)
        self.tokens += sum(s.num_tokens for s in out)
        return out

    def on_update(self) -> None:
        self._stale = True

    def metrics(self) -> dict:
        """The log-prob gap of the latest call's first rows (then forgotten)."""
        gap, self._gap = self._gap, None
        return {"sampler_logprob_gap": gap} if gap is not None else {}

    # ------------------------------------------------------------------------------------- weights
    def push(self) -> None:
        """Load the trainer's current weights into vLLM (called before sampling after an update).

        Base-model names; LoRA is added to each adapted weight out of place, one tensor at a time
        (merging and unmerging in place would drift the frozen weights in bf16); nothing for a soft prompt (vLLM keeps the original weights and gets it with each request)."""
        policy = self.policy
        if policy.params == "prompt":
            self._stale = False
            return
        try:
            target = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        except AttributeError:
            raise TriceError("cannot push weights to vLLM: its engine runs in another process; build it with "
                             "VLLM_ENABLE_V1_MULTIPROCESSING=0") from None
        if policy.params == "full":
            target.load_weights((name, p.detach()) for name, p in policy.model.named_parameters())
        else:
            target.load_weights(_merged_lora_weights(policy.model))
        self.llm.reset_prefix_cache()
        self._stale = False

    # ------------------------------------------------------------------------------------- sampling
    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float, key: int,
                 row_ids: list[int] | None = None, stop: tuple[str, ...] = (), prefix: str | None = None) -> list[Sample]:
        """One sample per prompt; row ``row_ids[i]``'s seed comes from (key, row id); ``prefix``
        replaces the policy's prefix with this hard text."""
        if not prompts:
            return []
        row_ids = list(range(len(prompts))) if row_ids is None else row_ids
        # A stop string that is one special token (a chat template's end of turn) never appears in
        # vLLM's detokenized text, which skips special tokens: stop at its id instead.
        tok = self.policy.tokenizer
        special = {t: i for t, i in zip(tok.all_special_tokens, tok.all_special_ids)}
        stop_ids = [special[s] for s in stop if s in special]
        params = [self.vllm.SamplingParams(n=1, temperature=temperature, max_tokens=max_new_tokens,
                                           stop=[s for s in stop if s not in special], logprobs=0,
                                           seed=row_seed(key, row), **({"stop_token_ids": stop_ids} if stop_ids else {}))
                  for row in row_ids]
        outputs = self.llm.generate(self._requests(prompts, prefix), sampling_params=params, use_tqdm=False)
        samples = []
        for out in outputs:
            o = out.outputs[0]
            logprobs = ([step[t].logprob for t, step in zip(o.token_ids, o.logprobs)]
                        if o.logprobs is not None else None)
            samples.append(Sample(o.text, len(o.token_ids), o.finish_reason == "stop", list(o.token_ids), logprobs))
        return samples

    def _requests(self, prompts: list[str], prefix: str | None = None):
        policy = self.policy if prefix is None else self.policy.with_prefix(prefix)
        if policy.params == "prompt" and prefix is None:  # the soft prompt, then the prompt's token embeddings
            with torch.no_grad():
                prefix = policy.prefix_embeds().detach()
                out = []
                for p in prompts:
                    ids = torch.tensor(policy.tokenizer(p, add_special_tokens=False).input_ids, dtype=torch.long)
                    out.append({"prompt_embeds": torch.cat([prefix, policy.embed(ids)]).cpu()})
            return out
        # Token ids exactly as the trainer builds its inputs: the prefix's ids, then the prompt's.
        prefix_ids = policy.prefix_ids.tolist()
        return [{"prompt_token_ids": prefix_ids + policy.tokenizer(p, add_special_tokens=False).input_ids}
                for p in prompts]


def _merged_lora_weights(model):
    """(name, W + delta) for every weight of a PeftModel, under the base model's parameter names."""
    modules = dict(model.named_modules())
    for name, p in model.named_parameters():
        if "lora_" in name:
            continue
        clean = name.removeprefix("base_model.model.").replace(".base_layer", "")
        if name.endswith(".base_layer.weight"):
            layer = modules[name[: -len(".base_layer.weight")]]
            with torch.no_grad():
                delta = sum(layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A)
                yield clean, p.detach() + delta
        else:
            yield clean, p.detach()


def logprob_gap(policy, prompts: list[str], samples: list[Sample]) -> float | None:
    """Mean over rows of (vLLM's log-prob - the trainer's log-prob) per token, on the tokens of each
    sampled text (rows whose text re-tokenises to other ids than vLLM sampled are skipped)."""
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
