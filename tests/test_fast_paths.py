"""The fast paths change no result: the KV-cached, shared-prefix, batched sampler and scorer against
the plain transformers path on tiny in-memory models.

- ``trice.generation.sampler.sample`` at temperature 0 gives, token for token, what ``model.generate(do_sample=False)``
  gives on the same (prefix + prompt) text, one prompt at a time (no padding, no shared prefix cache);
- ``trice.modeling.scoring.score`` equals the log-prob sum of one plain full-sequence forward per example (no
  cache, no ``logits_to_keep``, no padding) within 16 float32 ulps of the values, and so do its gradients (relative error <= 1e-5),
  in the prompt, lora and full modes.

The tiny model's tokenizer has one token per character, so equal texts mean equal token ids.
"""

import pytest
import torch

from tiny import make_tiny_policy
from trice.generation.sampler import sample
from trice.generation.stops import stop_token_ids
from trice.modeling.scoring import score

PREFIX = "Question: 1 + 1 =\nAnswer: Let's think step by step.\n1 + 1 = 2. So the answer is 2.\n\n"
PROMPTS = ["Question: 2 + 3 =\nAnswer: Let's think step by step.\n", "Question: 7 =\nAnswer:", "x",
           "Question: 4 + 4 + 1 =\nAnswer: Let's think step by step.\n4 + 4"]
CONTS = [" 2 + 3 = 5. So the answer is 5.\n\n", "!", " ok\nQuestion:", "yz  w"]


def make_policy(params, prefix=PREFIX, seed=0):
    return make_tiny_policy(params, prefix, seed)


def generate_reference(policy, text, max_new_tokens):
    """Greedy ``generate`` on the whole text: the new token ids, cut after the first stop id (inclusive),
    as the sampler stops at EOS and special tokens."""
    tok = policy.tokenizer
    ids = torch.tensor([tok(text, add_special_tokens=False).input_ids])
    with torch.no_grad():
        out = policy.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                    eos_token_id=tok.eos_token_id)
    new = out[0, ids.shape[1]:].tolist()
    stops = stop_token_ids(policy.tokenizer, policy.base_model)
    for i, t in enumerate(new):
        if t in stops:
            return new[:i + 1]
    return new


@pytest.mark.parametrize("params", ["full", "lora"])
def test_greedy_sampler_equals_generate(params):
    policy = make_policy(params)
    n = 40
    got = sample(policy, PROMPTS, temperature=0, max_new_tokens=n, stop=(), batch_size=3)
    stops = stop_token_ids(policy.tokenizer, policy.base_model)
    for prompt, s in zip(PROMPTS, got):
        want = generate_reference(policy, policy.prefix_text + prompt, n)
        assert s.num_tokens == len(want)
        text_ids = want[:-1] if want and want[-1] in stops else want
        # one token per character: the text is the token sequence
        assert s.text == policy.tokenizer.decode(text_ids, skip_special_tokens=True)
        assert len(s.text) == len(text_ids)
    assert len({s.text for s in got}) > 1  # not vacuous


def test_greedy_sampler_equals_generate_without_prefix():
    policy = make_policy("full", prefix="")
    got = sample(policy, PROMPTS, temperature=0, max_new_tokens=30, stop=())
    for prompt, s in zip(PROMPTS, got):
        want = generate_reference(policy, prompt, 30)
        assert s.num_tokens == len(want)


def plain_logprob(policy, prompt, cont):
    """log p(cont | prefix + prompt): one full-sequence forward, no cache, no logits_to_keep, no padding."""
    tok = policy.tokenizer
    p_ids = tok(prompt, add_special_tokens=False).input_ids
    c_ids = tok(cont, add_special_tokens=False).input_ids
    prefix = policy.prefix_embeds()
    embeds = torch.cat([prefix[None], policy.embed(torch.tensor([p_ids + c_ids]))], dim=1)
    logits = policy.base_model(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                               use_cache=False).logits[0].float()
    start = prefix.shape[0] + len(p_ids)  # column of the first continuation token
    logprobs = logits[start - 1:start - 1 + len(c_ids)].log_softmax(-1)
    return logprobs.gather(-1, torch.tensor(c_ids)[:, None]).sum()


@pytest.mark.parametrize("params", ["prompt", "lora", "full"])
def test_scorer_equals_plain_forward(params):
    policy = make_policy(params)
    params_list = policy.trainable_parameters()
    coefs = torch.tensor([0.5, -1.0, 2.0, 0.25])

    got = score(policy, PROMPTS, CONTS)
    (coefs * got).sum().backward()
    fast_grads = [p.grad.clone() for p in params_list]
    for p in params_list:
        p.grad = None

    want = torch.stack([plain_logprob(policy, p, c) for p, c in zip(PROMPTS, CONTS)])
    (coefs * want).sum().backward()
    plain_grads = [p.grad.clone() for p in params_list]

    # Sums of ~40 float32 log-probs of magnitude ~200: float32 resolves ~1.5e-5 there, and the two paths
    # add in different orders, so the tolerance is relative to the values (16 ulps), not absolute.
    torch.testing.assert_close(got.detach(), want.detach(), atol=1e-5, rtol=16 * torch.finfo(torch.float32).eps)
    # gradients: equal up to float32 summation order (relative to each tensor's norm)
    for g_fast, g_plain in zip(fast_grads, plain_grads):
        assert float((g_fast - g_plain).norm()) <= 1e-5 * float(g_plain.norm()) + 1e-7
    assert sum(float(g.abs().sum()) for g in fast_grads) > 0  # not vacuous


def test_chunked_logprobs_equal_the_whole_softmax_with_gradients():
    """The LM head run over chunks (recomputed in the backward pass) gives the log-probs and the
    gradients (w.r.t. the hidden states and the head's weight) of one whole log-softmax."""
    from trice.modeling.scoring import chunked_logprobs

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(23, 16, requires_grad=True)
    targets = torch.randint(0, 50, (23,))
    coefs = torch.randn(23)
    whole = head(hidden).log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    g_hidden, g_head = torch.autograd.grad((coefs * whole).sum(), [hidden, head.weight])
    chunked = chunked_logprobs(head, hidden, targets, chunk=5)  # 5 chunks, the last one short
    c_hidden, c_head = torch.autograd.grad((coefs * chunked).sum(), [hidden, head.weight])
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_hidden, g_hidden, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c_head, g_head, rtol=1e-5, atol=1e-6)
