"""A causal LM wrapped as a trainable :class:`Policy` (soft prompt, LoRA or full weights).

The policy's input for a question is always ``prefix_embeds()`` followed by the token embeddings of
the prompt and then of the continuation; the sampler and the scorer both build it that way
(:mod:`trice.modeling.layout`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import warnings
from pathlib import Path

import torch

from ..choices import PARAMS
from ..errors import TriceError
from .loading import first_line

POLICY_JSON = "trice_policy.json"
FULL_WEIGHTS = "model.safetensors"


def lora_targets(spec: str):
    """``--lora-targets`` as PEFT takes it: "all-linear", or a list of module names from "q_proj,v_proj".

    >>> lora_targets("all-linear"), lora_targets("q_proj, v_proj")
    ('all-linear', ['q_proj', 'v_proj'])
    """
    return spec if spec == "all-linear" else [s.strip() for s in spec.split(",") if s.strip()]


def _quietly(fn, *args, **kwargs):
    """Call a PEFT function without the FutureWarning it triggers in transformers 5
    (``is_gradient_checkpointing`` is deprecated): PEFT's, not the user's, to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return fn(*args, **kwargs)


class Policy:
    """A causal LM plus its trainable parameters and the prefix that starts every input.

    ``params`` is "prompt" (a soft prompt initialised from ``prefix_text``, base weights frozen;
    the paper's setting), "lora" (LoRA adapters, hard-text prefix) or "full" (all weights, hard-text prefix).

    >>> model, tok = load_model()  # doctest: +SKIP
    >>> policy = Policy.create(model, tok, params="prompt", prefix_text="Solve step by step.")  # doctest: +SKIP
    >>> policy.prefix_embeds().shape[0] == len(tok("Solve step by step.", add_special_tokens=False).input_ids)  # doctest: +SKIP
    True
    """

    def __init__(self, model, base_model, tokenizer, params: str, prefix_text: str, prefix_ids: torch.Tensor):
        self.model = model  # the PeftModel, or the plain model in "full" mode
        self.base_model = base_model  # the transformers model (LoRA layers injected in "lora" mode)
        self.tokenizer = tokenizer
        self.params = params
        self.prefix_text = prefix_text
        self._prefix_ids = prefix_ids
        self.sharded = False  # its weights are sharded across processes (--fsdp, trice.runtime.sharding)

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, model, tokenizer, params: str = "prompt", prefix_text: str = "", lora_r: int = 8,
               lora_alpha: int = 16, lora_targets="all-linear", num_virtual_tokens: int | None = None) -> "Policy":
        """Wrap ``model`` (modified in place by PEFT) for training ``params``."""
        from peft import LoraConfig, PromptTuningConfig, get_peft_model

        if params not in PARAMS:
            raise TriceError(f"unknown params '{params}': choose one of {', '.join(PARAMS)}")
        ids = tokenizer(prefix_text, add_special_tokens=False).input_ids if prefix_text else []
        prefix_ids = torch.tensor(ids, dtype=torch.long)
        model.eval()
        if params == "prompt":
            if not ids:
                raise TriceError("params 'prompt' needs a non-empty prefix text to initialise the soft prompt")
            n = num_virtual_tokens or len(ids)
            with torch.no_grad():
                text_embeds = model.get_input_embeddings()(prefix_ids.to(model.device)).float()
            # Repeat-pad (or truncate) the text's embeddings to the requested number of virtual tokens.
            init = text_embeds.repeat((n + len(ids) - 1) // len(ids), 1)[:n]
            config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n, prompt_tuning_init="RANDOM")
            peft_model = _quietly(get_peft_model, model, config)
            weight = peft_model.prompt_encoder[peft_model.active_adapter].embedding.weight
            with torch.no_grad():
                weight.copy_(init.to(weight.dtype))
            prefix_ids = prefix_ids[:0]  # the prefix is the soft prompt, not text
            return cls(peft_model, peft_model.get_base_model(), tokenizer, params, prefix_text, prefix_ids)
        if params == "lora":
            config = LoraConfig(task_type="CAUSAL_LM", r=lora_r, lora_alpha=lora_alpha,
                                target_modules=lora_targets, lora_dropout=0.0)
            peft_model = _quietly(get_peft_model, model, config)
            return cls(peft_model, peft_model.get_base_model(), tokenizer, params, prefix_text, prefix_ids)
        for p in model.parameters():
            p.requires_grad_(True)
        return cls(model, model, tokenizer, params, prefix_text, prefix_ids)

    @classmethod
    def untuned(cls, model, tokenizer) -> "Policy":
        """The model as it is, no prefix and nothing trained (the exemplar search samples from it)."""
        return cls(model, model, tokenizer, "full", "", torch.zeros(0, dtype=torch.long))

    def save(self, directory, state: dict | None = None) -> None:
        """Save the trainable part: a PEFT adapter (prompt/lora) or all weights (full), plus a small json.
        ``state``: the weights to save instead of the model's own (a sharded model's, gathered whole)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.params == "full" and state is not None:
            from safetensors.torch import save_file

            if getattr(self.base_model.config, "tie_word_embeddings", False):  # one copy of a tied matrix, as save_model
                state = {k: v for k, v in state.items() if k != "lm_head.weight"}
            save_file({k: v.contiguous() for k, v in state.items()}, str(directory / FULL_WEIGHTS))
        elif self.params == "full":
            from safetensors.torch import save_model

            save_model(self.model, str(directory / FULL_WEIGHTS))  # handles tied weights
        else:
            # The embeddings are never trained here; skipping them also skips PEFT's hub look-up. A gathered
            # state's keys are the transformers model's; PEFT's name them under its wrapper.
            extra = {"state_dict": {f"base_model.model.{k}": v for k, v in state.items()}} if state is not None else {}
            self.model.save_pretrained(str(directory), save_embedding_layers=False, **extra)
        meta = {"params": self.params, "prefix_text": self.prefix_text}
        (directory / POLICY_JSON).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, model, tokenizer, directory) -> "Policy":
        """Restore a policy saved with :meth:`save` onto a freshly loaded base ``model`` (trainable again)."""
        from peft import PeftModel

        directory = Path(directory)
        try:
            meta = json.loads((directory / POLICY_JSON).read_text())
            params, prefix_text = meta["params"], meta.get("prefix_text", "")
        except (OSError, ValueError, KeyError) as exc:
            raise TriceError(f"{directory} is not a saved trice policy: {first_line(exc)}") from None
        if params not in PARAMS:
            raise TriceError(f"{directory / POLICY_JSON}: unknown params '{params}'")
        model.eval()
        if params == "full":
            from safetensors.torch import load_model as load_weights

            load_weights(model, str(directory / FULL_WEIGHTS))
            return cls.create(model, tokenizer, "full", prefix_text)
        # PEFT refuses is_trainable=True for prompt learning adapters, so unfreeze the soft prompt by hand.
        peft_model = _quietly(PeftModel.from_pretrained, model, str(directory), is_trainable=params == "lora")
        peft_model.eval()
        if params == "prompt":
            peft_model.prompt_encoder[peft_model.active_adapter].embedding.weight.requires_grad_(True)
        ids = tokenizer(prefix_text, add_special_tokens=False).input_ids if params == "lora" and prefix_text else []
        return cls(peft_model, peft_model.get_base_model(), tokenizer, params, prefix_text,
                   torch.tensor(ids, dtype=torch.long))

    # ----------------------------------------------------------------------------------- computation
    @property
    def prefix_ids(self) -> torch.Tensor:
        """Token ids of the hard-text prefix (empty in "prompt" mode, where the prefix is the soft prompt)."""
        return self._prefix_ids

    def with_prefix(self, text: str) -> "PrefixView":
        """This policy with ``text`` (through the model's token embeddings) as its prefix instead:
        the hinted guide and the exemplar search sample this way; everything else is the policy's."""
        return PrefixView(self, text)

    @property
    def device(self) -> torch.device:
        return self.base_model.get_input_embeddings().weight.device

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings of ``input_ids`` through the model's input embedding layer."""
        return self.base_model.get_input_embeddings()(input_ids.to(self.device))

    def prefix_embeds(self) -> torch.Tensor:
        """The ``[P, d]`` prefix put before every prompt (differentiable soft prompt in "prompt" mode)."""
        if self.params == "prompt":
            weight = self.model.prompt_encoder[self.model.active_adapter].embedding.weight
            return weight.to(self.base_model.get_input_embeddings().weight.dtype)
        return self.embed(self._prefix_ids)

    def forward(self, inputs, attention_mask, position_ids=None, past_key_values=None, use_cache=False,
                **kwargs):
        """Run the transformer (LoRA active, no PEFT virtual tokens prepended); returns the HF output."""
        # Calling the base model directly bypasses PEFT's prompt-tuning forward, which would prepend the
        # soft prompt itself; we put it in inputs_embeds ourselves so it can be KV-cached and shared.
        if "logits_to_keep" in kwargs and not self._accepts_logits_to_keep():
            del kwargs["logits_to_keep"]  # older/remote-code models: full logits, callers slice them
        given = {"input_ids" if inputs.dtype == torch.long else "inputs_embeds": inputs}  # (ids: the model embeds them)
        return self.base_model(**given, attention_mask=attention_mask,
                               position_ids=position_ids, use_cache=use_cache,
                               **self._cache_kwargs(past_key_values), **kwargs)

    __call__ = forward

    def hidden_states(self, inputs_embeds, attention_mask, position_ids=None, past_key_values=None, use_cache=False):
        """The transformer's last hidden states ``[B, T, d]`` (before the LM head), as :meth:`forward` runs it."""
        decoder = self.base_model.get_decoder()
        return decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=use_cache, **self._cache_kwargs(past_key_values)).last_hidden_state

    def _cache_kwargs(self, past_key_values) -> dict:
        # transformers >= 5.24 names the KV cache argument `cache` (the old name warns)
        if past_key_values is None:
            return {}
        return {"cache" if self._forward_takes("cache") else "past_key_values": past_key_values}

    def _forward_takes(self, name: str) -> bool:
        if not hasattr(self, "_forward_params"):
            self._forward_params = set(inspect.signature(self.base_model.forward).parameters)
        return name in self._forward_params

    def _accepts_logits_to_keep(self) -> bool:
        if not hasattr(self, "_logits_to_keep"):
            self._logits_to_keep = "logits_to_keep" in inspect.signature(self.base_model.forward).parameters
        return self._logits_to_keep

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters an optimiser should update (everything else has requires_grad False)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def trainable_values(self) -> list[torch.Tensor]:
        """A copy of the trainable parameters' values (STaR's and LaTRO's initial parameters, checkpoints)."""
        return [p.detach().clone() for p in self.trainable_parameters()]

    def load_trainable(self, values: list[torch.Tensor]) -> None:
        """Copy ``values`` (as :meth:`trainable_values` returns them) into the trainable parameters."""
        with torch.no_grad():
            for p, value in zip(self.trainable_parameters(), values, strict=True):
                p.copy_(value)

    @contextlib.contextmanager
    def swapped(self, values: list[torch.Tensor]):
        """The trainable parameters set to ``values`` inside the block, restored after it."""
        saved = self.trainable_values()
        self.load_trainable(values)
        try:
            yield self
        finally:
            self.load_trainable(saved)


class PrefixView:
    """A view of a :class:`Policy` whose prefix is the given hard text (see :meth:`Policy.with_prefix`)."""

    def __init__(self, policy, text: str):
        self._policy, self.text = policy, text
        ids = policy.tokenizer(text, add_special_tokens=False).input_ids if text else []
        self.prefix_ids = torch.tensor(ids, dtype=torch.long)

    def prefix_embeds(self) -> torch.Tensor:
        return self._policy.embed(self.prefix_ids)

    def with_prefix(self, text: str) -> "PrefixView":
        return PrefixView(self._policy, text)

    def __getattr__(self, name):
        return getattr(self._policy, name)
