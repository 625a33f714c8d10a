"""The model side: loading a causal LM (:mod:`.loading`), the trainable :class:`Policy` around it
(:mod:`.policy`), the input layout every forward shares (:mod:`.layout`), differentiable scoring
(:mod:`.scoring`), the answer likelihood p(y | x, z) (:mod:`.answer_likelihood`) and LoRA merged for
sampling (:mod:`.merged_lora`)."""

from .loading import (
           DEFAULT_MODEL,
           context_length,
           find_packaged_gguf,
           load_model,
           resolve_dtype,
)
from .policy import FULL_WEIGHTS, POLICY_JSON, Policy, PrefixView, lora_targets
from .scoring import count_tokens, score, token_logprobs, weighted_backward

__all__ = ["DEFAULT_MODEL", "FULL_WEIGHTS", "POLICY_JSON", "Policy", "PrefixView", "context_length", "count_tokens",
           "find_packaged_gguf", "load_model", "lora_targets", "resolve_dtype", "score", "token_logprobs",
           "weighted_backward"]
