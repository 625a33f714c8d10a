"""benchmarks/estimator_variance.py: the paired draw at a fixed state, and the Gram-matrix statistics."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

from tiny import coin_task, make_tiny_lm
from trice.config import TrainConfig
from trice.methods import Context, make_method
from trice.modeling import Policy
from trice.generation.sampler import TorchSampler

_SPEC = importlib.util.spec_from_file_location(
    "estimator_variance", Path(__file__).resolve().parents[1] / "benchmarks" / "estimator_variance.py")
ev = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ev)


def _state():
    torch.manual_seed(0)
    model, tok = make_tiny_lm()
    task = coin_task(n_train=10)
    policy = Policy.create(model, tok, "lora", prefix_text="Q: ")
    with torch.no_grad():  # move LoRA B off zero so every trainable parameter gets a gradient
        for p in policy.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = TrainConfig(method="trice", params="lora", batch_size=4, subsample=3, max_new_tokens=6)
    gen = torch.Generator().manual_seed(0)
    sampler = TorchSampler(policy, gen, max_new_tokens=6, batch_size=4)
    ctx = Context(policy, task, task.train, config, sampler, torch.Generator().manual_seed(1))
    exemplars = list(task.exemplars)
    methods = {e: make_method(e, exemplars) for e in ev.ESTIMATORS}
    methods["trice"].setup(ctx)
    return policy, ctx, methods, gen


def test_paired_draw_is_a_function_of_the_state_and_seeds():
    policy, ctx, methods, gen = _state()
    memory = methods["trice"].state_dict()
    kept = {k: (list(v) if isinstance(v, list) else v.clone()) for k, v in memory["memory"].items()}
    batch = [0, 3, 5, 7]
    tokens_before = ctx.sampler.tokens
    first = ev.paired_draw(policy, ctx, methods, memory, batch, gen, sampler_seed=5, resampler_seed=6)
    # proposals are sampled once per draw and shared by the three estimators
    assert first["sampled_tokens"] > 0
    assert ctx.sampler.tokens - tokens_before == first["sampled_tokens"]
    accs = {m["proposal_accuracy"] for m in first["metrics"].values()}
    assert len(accs) == 1
    # the fixed memory is not changed by the draws' MH steps (each estimator starts from it)
    for k, v in kept.items():
        assert (memory["memory"][k] == v) if isinstance(v, list) else torch.equal(memory["memory"][k], v)
    # same state and seeds: the same gradients (no state leaks from one draw into the next)
    again = ev.paired_draw(policy, ctx, methods, memory, batch, gen, sampler_seed=5, resampler_seed=6)
    for e in ev.ESTIMATORS:
        assert torch.allclose(first["grads"][e], again["grads"][e])
        assert first["scored_tokens"][e] == again["scored_tokens"][e]
    # the subsample draws only terms of non-zero weight, all of which trice-full scores
    assert first["scored_tokens"]["trice-full"] >= first["scored_tokens"]["trice"]
    assert first["scored_tokens"]["trice-nocv"] > 0
    assert all(p.grad is None for p in policy.trainable_parameters())


def test_trace_cov_from_gram_matches_numpy_with_and_without_repeats():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5)) + 3.0
    gram = x @ x.T
    assert np.isclose(ev.trace_cov(gram), np.cov(x.T, ddof=1).trace())
    counts = np.array([2, 0, 1, 3, 0, 0, 1])
    repeated = np.repeat(x, counts, axis=0)
    assert np.isclose(ev.trace_cov(gram, counts), np.cov(repeated.T, ddof=1).trace())
    assert np.isclose(ev.mean_sq_norm(gram), (x.mean(0) ** 2).sum())


def test_summarise_reports_every_estimator_with_intervals():
    rng = np.random.default_rng(1)
    d, names = 6, list(ev.ESTIMATORS)
    g = np.concatenate([rng.normal(scale=s, size=(d, 4)) for s in (1.0, 0.5, 2.0)])
    point = {"estimators": names, "gram": (g @ g.T).tolist(),
             "draws": [{"sampled_tokens": 100, "scored_tokens": {"trice": 10, "trice-full": 20, "trice-nocv": 10},
                        "metrics": {"trice": {"proposal_accuracy": 0.5, "mean_beta": 0.4, "num_valid": 3}}}
                       for _ in range(d)]}
    s = ev.summarise(point, n_boot=200)
    for k, e in enumerate(names):
        assert np.isclose(s[e]["trace_cov"], np.cov(g[k * d:(k + 1) * d].T, ddof=1).trace())
        lo, hi = s[e]["trace_cov_ci"]
        assert lo <= hi
        assert s[e]["token_passes_per_draw"] == 100 + 3 * point["draws"][0]["scored_tokens"][e]
    assert np.isclose(s["trice"]["var_x_cost_ratio_to_trice"], 1.0)
