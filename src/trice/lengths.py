"""Prompts that cannot fit in the model's context, found when the data is loaded.

An example's longest input is prefix + prompt + ``max_new_tokens`` sampled tokens (the prefix is
the exemplars, or the soft prompt initialised from them, which has as many positions). Past the
model's maximum length a forward pass is wrong (positions it was not trained on) and, over tens of
thousands of tokens, slow enough to look like a hang. Such examples are dropped with one warning
that counts them (``--on-too-long drop``, the default) or refused (``--on-too-long error``).
"""

from __future__ import annotations

import warnings

from .errors import TriceError


def max_length(model, tokenizer) -> int | None:
    """The model's maximum sequence length (its position embeddings), else the tokenizer's."""
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 10 ** 8 else None


def drop_too_long(tokenizer, model, examples: list, config, what: str, layouts) -> list:
    """``examples`` whose every ``(prefix_text, prompt_fn)`` layout fits, with ``config.max_new_tokens``
    sampled tokens, in the model's context; the others dropped with a warning, or an error under
    ``config.on_too_long == "error"``."""
    limit = max_length(model, tokenizer)
    if limit is None or not examples:
        return examples
    kept, too_long = [], []
    prefixes = [len(tokenizer(p, add_special_tokens=False).input_ids) if p else 0 for p, _ in layouts]
    for i, example in enumerate(examples):
        need = max(n + len(tokenizer(fn(example), add_special_tokens=False).input_ids)
                   for n, (_, fn) in zip(prefixes, layouts)) + config.max_new_tokens
        (kept if need <= limit else too_long).append((i, example, need))
    if not too_long:
        return examples
    first, _, need = too_long[0]
    message = (f"{len(too_long)} of {len(examples)} {what} examples do not fit in the model's context of "
               f"{limit} tokens with the prefix and max_new_tokens = {config.max_new_tokens} (the first, "
               f"#{first}, needs {need})")
    if config.on_too_long == "error":
        raise TriceError(message + "; shorten them, or drop them with --on-too-long drop")
    warnings.warn(message + "; dropped (--on-too-long error refuses them instead)", RuntimeWarning, stacklevel=2)
    return [example for _, example, _ in kept]
