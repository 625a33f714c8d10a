"""The compute every method is charged for: token-passes (issue 15).

    token_passes = tokens sampled + tokens forwarded + 3 x tokens scored

A sampled token costs one forward pass of the model through one token (decoding, with a KV cache);
a scored token costs a forward and a backward pass, and the backward pass costs about twice the
forward (the gradients with respect to activations and to weights), so 3 forward-token equivalents.
Counting only sampled tokens (the earlier budget) made methods that sample little and score much
(direct prompt tuning, SFT on gold rationales) free, and charged ``trice-full`` (2M scored terms) the
same as ``trice`` (L terms). With token-passes every method pays for the model passes it makes,
whether they sample or score, so "the same budget" means about the same FLOPs and, on one device,
about the same time. Scored tokens are the prompt and continuation tokens of each scored row (the
shared prefix is run once per scoring pass and not counted, as prompt prefill is not counted when
sampling). A token forwarded without gradient (the answer likelihood p(y | x, z) of ``trice-soft``, ``jepo``
and ``latro``, LaTRO's reference log-probs) costs one pass, as a sampled one. Held-out evaluation is not
charged; its sampled tokens are reported apart.

>>> token_passes(tokens_sampled=1000, tokens_scored=200)
1600
"""

from __future__ import annotations

PASSES_PER_SCORED_TOKEN = 3  # forward + backward (about twice the forward)


def token_passes(tokens_sampled: int, tokens_scored: int, tokens_forward: int = 0) -> int:
    return tokens_sampled + tokens_forward + PASSES_PER_SCORED_TOKEN * tokens_scored
