"""Gradient variance of trice, trice-full and trice-nocv on the real model, per unit of compute.

The EMA ``grad_variance`` in metrics.jsonl mixes the estimator's noise with the drift of the
parameters, so it cannot rank estimators. This script fixes the state of a TRICE run (LoRA parameters
AND memory) at two points, "early" (step 0: the memory from the hinted guide, LoRA untouched) and
"late" (after ``--steps`` training steps of the demo), and at each point draws each estimator's
gradient ``--draws`` times, i.i.d. given the state:

  * every draw restores the memory (and the parameters) before each estimator's step, so the draws are
    independent given the state, and nothing the draws do leaks into the next one;
  * within a draw the three estimators share the minibatch AND the proposals (one sampling, cached):
    the comparison is paired. The subsample of ``trice`` gets its own seeded generator per draw;
  * each gradient comes from the methods' own code, ``make_method(name).step(ctx, batch)`` followed
    by ``trice.modeling.scoring.weighted_backward``: what is measured is what training uses;
  * the compute of a draw, for an estimator, is token-passes (trice.training.budget): the tokens sampled for the
    proposals (shared, each estimator needs them for its MH step) + 3 x the tokens that estimator scored.

Reported per point and estimator (from the D x D Gram matrix of the draws, so bootstrap resamples of
the draws are exact and cheap): trace(Cov) = sum_i |g_i - mean g|^2 / (D - 1), |mean g|^2, token-passes
per draw, variance x cost = trace(Cov) x token-passes per draw (the variance of an average of draws at
a fixed compute C is that product / C: lower is better), BCa bootstrap 95% CIs over draws, and
the paired ratio of variance x cost of each estimator to trice's. Results are rewritten after every
draw (JSON + a markdown table), the points interleaved, so a run stopped early still leaves a
complete, smaller comparison.

    .venv/bin/python benchmarks/estimator_variance.py --steps 40 --draws 32 --out runs/estimator-variance

``--run-dir`` reuses the training run (and its ``early.pt``) of an earlier invocation.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch

ESTIMATORS = ("trice", "trice-full", "trice-nocv")


# --- the core: one paired draw of every estimator's gradient at a fixed state --------------------------

class _CachedContext:
    """A trice Context whose ``sample`` samples once per prompt list and then replays it: every
    estimator of one draw sees the same proposals (paired comparison)."""

    def __init__(self, ctx):
        self._ctx = ctx
        self._cache: dict = {}
        self.sampled_tokens = 0

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def sample(self, prompts, temperature=None, prefix=None):
        key = (tuple(prompts), temperature, prefix)
        if key not in self._cache:
            before = self._ctx.sampler.tokens
            self._cache[key] = self._ctx.sample(prompts, temperature=temperature, prefix=prefix)
            self.sampled_tokens += self._ctx.sampler.tokens - before
        return self._cache[key]


def flat_grad(params) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).double().cpu()
                      for p in params])


def paired_draw(policy, ctx, methods: dict, memory_state: dict, batch: list[int], sampler_generator,
                sampler_seed: int, resampler_seed: int, score_batch_size: int | None = None) -> dict:
    """One draw at a fixed state: the same minibatch and proposals for every estimator in ``methods``
    (name -> a TRICE method), the memory restored from ``memory_state`` before each estimator's step.

    Returns {"sampled_tokens", "grads": {name: flat gradient}, "scored_tokens": {name: int},
    "metrics": {name: the step's metrics}}. The parameters' .grad are left zeroed.
    """
    params = policy.trainable_parameters()
    sampler_generator.manual_seed(sampler_seed)
    cached = _CachedContext(ctx)
    out = {"grads": {}, "scored_tokens": {}, "metrics": {}}
    from trice.modeling.scoring import weighted_backward

    for name, method in methods.items():
        method.load_state_dict(memory_state)  # the memory as it was at the fixed point
        ctx.resampler_rng.manual_seed(resampler_seed)
        for p in params:
            p.grad = None
        weighted = method.step(cached, batch)
        _, tokens = weighted_backward(policy, weighted.prompts, weighted.continuations, weighted.coefs,
                                      batch_size=score_batch_size)
        out["grads"][name] = flat_grad(params)
        out["scored_tokens"][name] = int(tokens)
        out["metrics"][name] = dict(weighted.metrics)
    for p in params:
        p.grad = None
    out["sampled_tokens"] = int(cached.sampled_tokens)
    return out


# --- statistics from the Gram matrix of the draws ------------------------------------------------------

def trace_cov(gram: np.ndarray, counts: np.ndarray | None = None) -> float:
    """Unbiased trace of the covariance of draws whose Gram matrix is ``gram`` (each draw taken
    ``counts[i]`` times, for bootstrap resamples): (sum c_i G_ii - c'Gc / n) / (n - 1)."""
    d = gram.shape[0]
    c = np.ones(d) if counts is None else counts.astype(float)
    n = c.sum()
    return float((c @ np.diag(gram) - c @ gram @ c / n) / (n - 1))


def mean_sq_norm(gram: np.ndarray) -> float:
    return float(gram.sum() / gram.shape[0] ** 2)


def _bca(theta: float, boots: np.ndarray, jack: np.ndarray, level: float = 0.95) -> list[float]:
    """Bias-corrected and accelerated bootstrap interval (Efron 1987): the percentile interval
    under-covers for a variance at small D (the resampled variances are biased low)."""
    boots = boots[np.isfinite(boots)]
    nd = NormalDist()
    below = np.mean(boots < theta) + 0.5 * np.mean(boots == theta)
    z0 = nd.inv_cdf(min(max(below, 1e-6), 1 - 1e-6))
    dev = jack.mean() - jack
    denom = 6 * (dev ** 2).sum() ** 1.5
    a = float((dev ** 3).sum() / denom) if denom > 0 else 0.0
    out = []
    for alpha in ((1 - level) / 2, (1 + level) / 2):
        z = nd.inv_cdf(alpha)
        q = nd.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
        out.append(float(np.quantile(boots, min(max(q, 0.0), 1.0))))
    return out


def _stats(names, block, cost, counts) -> dict:
    """trace(Cov), token-passes per draw and their product per estimator, for draws taken counts[i] times."""
    n = counts.sum()
    out = {}
    for e in names:
        tr = trace_cov(block[e], counts)
        passes = float(counts @ cost[e] / n)
        signal = float(counts @ block[e] @ counts / n ** 2) - tr / n  # unbiased |E g|^2
        out[e] = (tr, passes, tr * passes, tr / signal * passes if signal > 0 else float("nan"))
    return out


def summarise(point: dict, n_boot: int = 2000, seed: int = 0) -> dict:
    """Per-estimator statistics of one point with BCa bootstrap 95% CIs over draws (paired: the same
    resample of draws for every estimator, so the ratios to trice are paired comparisons)."""
    names = point["estimators"]
    d = len(point["draws"])
    if d < 3:
        return {}
    gram = np.asarray(point["gram"])[: len(names) * d, : len(names) * d]
    block = {n: gram[k * d:(k + 1) * d, k * d:(k + 1) * d] for k, n in enumerate(names)}
    cost = {n: np.array([r["sampled_tokens"] + 3 * r["scored_tokens"][n] for r in point["draws"]], float)
            for n in names}
    full = _stats(names, block, cost, np.ones(d))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, d, d), minlength=d)
        if (counts > 0).sum() >= 2:
            boots.append(_stats(names, block, cost, counts))
    jack = []
    for i in range(d):
        counts = np.ones(d)
        counts[i] = 0
        jack.append(_stats(names, block, cost, counts))

    def interval(f):
        return _bca(f(full), np.array([f(b) for b in boots]), np.array([f(j) for j in jack]))

    def jack_se(f):  # the jackknife standard error, a cross-check of the bootstrap interval's width
        values = np.array([f(j) for j in jack])
        return float(math.sqrt((d - 1) / d * ((values - values.mean()) ** 2).sum()))

    out = {}
    for k, n in enumerate(names):
        tr, passes, vxc, nxc = full[n]
        out[n] = {"trace_cov": tr, "trace_cov_ci": interval(lambda s, n=n: s[n][0]),
                  "trace_cov_jackknife_se": jack_se(lambda s, n=n: s[n][0]),
                  "mean_sq_norm": mean_sq_norm(block[n]),
                  "unbiased_sq_norm_of_mean": mean_sq_norm(block[n]) - tr / d,
                  "token_passes_per_draw": passes,
                  "scored_tokens_per_draw": float(np.mean([r["scored_tokens"][n] for r in point["draws"]])),
                  "var_x_cost": vxc, "var_x_cost_ci": interval(lambda s, n=n: s[n][2])}
        if "trice" in names:
            out[n]["var_x_cost_ratio_to_trice"] = vxc / full["trice"][2]
            out[n]["var_x_cost_ratio_to_trice_ci"] = interval(lambda s, n=n: s[n][2] / s["trice"][2])
            out[n]["var_x_cost_ratio_to_trice_jackknife_se"] = jack_se(lambda s, n=n: s[n][2] / s["trice"][2])
            # Scale-free: trace(Cov) / |E g|^2 x cost. trice-nocv divides by M where the CV estimators
            # divide by Mv, so its gradient is about Mv/M times theirs and its raw trace about (Mv/M)^2.
            out[n]["noise_to_signal_x_cost"] = nxc
            out[n]["noise_to_signal_x_cost_ratio_to_trice"] = nxc / full["trice"][3]
            out[n]["noise_to_signal_x_cost_ratio_to_trice_ci"] = interval(lambda s, n=n: s[n][3] / s["trice"][3])
            out[n]["trace_ratio_to_trice"] = tr / full["trice"][0]
            out[n]["trace_ratio_to_trice_ci"] = interval(lambda s, n=n: s[n][0] / s["trice"][0])
    # The three estimators share an expectation: |mean_a - mean_b|^2 against the scale of its noise,
    # (trace_a + trace_b) / D (paired draws are correlated, so this is only a rough check).
    checks = {}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if j <= i:
                continue
            cross = gram[i * d:(i + 1) * d, j * d:(j + 1) * d]
            diff = mean_sq_norm(block[a]) + mean_sq_norm(block[b]) - 2 * float(cross.sum() / d ** 2)
            checks[f"{a} vs {b}"] = {"sq_norm_of_mean_difference": diff,
                                     "noise_scale": (full[a][0] + full[b][0]) / d}
    out["_unbiasedness_check"] = checks
    first = names[0]
    acc = np.array([r["metrics"][first]["proposal_accuracy"] for r in point["draws"]])
    beta = np.array([r["metrics"][first]["mean_beta"] for r in point["draws"]])
    out["_point"] = {"draws": d, "proposal_accuracy": float(acc.mean()),
                     "proposal_accuracy_se": float(acc.std(ddof=1) / math.sqrt(d)),
                     "mean_beta": float(beta.mean()),
                     "num_valid": float(np.mean([r["metrics"][first]["num_valid"] for r in point["draws"]])),
                     "sampled_tokens_per_draw": float(np.mean([r["sampled_tokens"] for r in point["draws"]]))}
    return out


def markdown(results: dict) -> str:
    rows = ["| point | acceptance (proposal acc. ± se) | mean beta | memory coverage | draws | estimator "
            "| trace(Cov) [95% CI] | trace ratio to trice [95% CI] | token-passes / draw "
            "| variance x cost [95% CI] | variance x cost ratio to trice [95% CI] "
            "| (trace(Cov) / abs(E g)^2) x cost ratio to trice [95% CI] |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, point in results["points"].items():
        s = point.get("summary") or {}
        if not s:
            continue
        p = s["_point"]
        for e in point["estimators"]:
            r = s[e]
            rows.append(
                f"| {name} (step {point['step']}) | {p['proposal_accuracy']:.3f} ± {p['proposal_accuracy_se']:.3f} "
                f"| {p['mean_beta']:.3f} | {point['memory_coverage']:.3f} | {p['draws']} | {e} "
                f"| {r['trace_cov']:.4g} [{r['trace_cov_ci'][0]:.3g}, {r['trace_cov_ci'][1]:.3g}] "
                f"| {r['trace_ratio_to_trice']:.3f} [{r['trace_ratio_to_trice_ci'][0]:.3f}, "
                f"{r['trace_ratio_to_trice_ci'][1]:.3f}] "
                f"| {r['token_passes_per_draw']:.0f} "
                f"| {r['var_x_cost']:.4g} [{r['var_x_cost_ci'][0]:.3g}, {r['var_x_cost_ci'][1]:.3g}] "
                f"| {r['var_x_cost_ratio_to_trice']:.3f} [{r['var_x_cost_ratio_to_trice_ci'][0]:.3f}, "
                f"{r['var_x_cost_ratio_to_trice_ci'][1]:.3f}] "
                f"| {r['noise_to_signal_x_cost_ratio_to_trice']:.3f} "
                f"[{r['noise_to_signal_x_cost_ratio_to_trice_ci'][0]:.3f}, "
                f"{r['noise_to_signal_x_cost_ratio_to_trice_ci'][1]:.3f}] |")
    return "\n".join(rows) + "\n"


# --- the states: a short demo TRICE run, captured at step 0 and at its end ----------------------------

def demo_config(args):
    from trice.cli.train import DEMO
    from trice.config import TrainConfig

    cfg = dict(DEMO)
    cfg.update(steps=args.steps, n_eval=0, eval_every=0, checkpoint_every=args.steps, threads=args.threads,
               seed=args.seed, out=str(Path(args.out) / "train"))
    return TrainConfig(**cfg)


def run_and_capture(args):
    """Train (or resume ``--run-dir``) with the trainer's own code; return the TrainingState, the train
    set and the step-0 state {"params", "method"}."""
    import trice.training.loop as trainer

    captured = {}
    original_build, original_step = trainer._build, trainer._step

    def build(*a, **k):
        t, setup = original_build(*a, **k)
        captured["t"], captured["train_set"], captured["task"] = t, setup.train_set, a[3]
        return t, setup

    def step(t, ctx, step_no, *a, **k):
        if "early" not in captured and t.loop.step == 0:
            captured["early"] = {"params": [p.detach().clone() for p in t.params], "method": t.method.state_dict(),
                                 "step": 0}
            torch.save(captured["early"], Path(t.run.path) / "early.pt")
        return original_step(t, ctx, step_no, *a, **k)

    trainer._build, trainer._step = build, step
    try:
        if args.run_dir:
            trainer.train(resume=args.run_dir)
            captured["early"] = torch.load(Path(args.run_dir) / "early.pt", weights_only=False)
        else:
            trainer.train(demo_config(args))
    finally:
        trainer._build, trainer._step = original_build, original_step
    return captured


# --- main ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps before the late point")
    parser.add_argument("--draws", type=int, default=32, help="draws per point (D)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/estimator-variance")
    parser.add_argument("--run-dir", default=None, help="reuse this training run (made by an earlier invocation)")
    parser.add_argument("--points", default="early,late")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--summarise", default=None, metavar="RESULTS_JSON",
                        help="only recompute the statistics and table of a results.json (no model)")
    args = parser.parse_args(argv)
    if args.summarise:
        path = Path(args.summarise)
        results = json.loads(path.read_text())
        for point in results["points"].values():
            point["summary"] = summarise(point, args.bootstrap, args.seed)
        path.write_text(json.dumps(results, indent=1))
        (path.parent / "table.md").write_text(markdown(results))
        print(markdown(results))
        return 0
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    from trice.methods import Context, make_method

    cap = run_and_capture(args)
    t, train_set = cap["t"], cap["train_set"]
    config = t.config
    late = {"params": [p.detach().clone() for p in t.params], "method": t.method.state_dict(), "step": t.loop.step}
    states = {"early": cap["early"], "late": late}
    names = [p for p in args.points.split(",") if p]
    print(f"states ready after {time.perf_counter() - started:.0f} s (late = step {late['step']})", flush=True)

    ctx = Context(t.policy, cap["task"], train_set, config, t.sampler, t.rngs["resampler"])
    methods = {e: make_method(e, t.exemplars, config.k, config.star_inner_steps, t.method.format) for e in ESTIMATORS}
    num_params = sum(p.numel() for p in t.params)
    grads = {n: torch.zeros(len(ESTIMATORS) * args.draws, num_params, dtype=torch.float64) for n in names}
    grams = {n: np.zeros((len(ESTIMATORS) * args.draws,) * 2) for n in names}
    results = {"command": " ".join([sys.executable.split("/")[-1], *sys.argv]), "config": config.to_dict(),
               "estimators": list(ESTIMATORS), "num_trainable_params": num_params,
               "torch_threads": torch.get_num_threads(), "pairing": "minibatch and proposals shared within a draw",
               "points": {}}
    for n in names:
        mem = states[n]["method"]["memory"]
        results["points"][n] = {"step": states[n]["step"], "estimators": list(ESTIMATORS), "draws": [],
                                "gram": [], "memory_coverage": float(torch.as_tensor(mem["correct"]).float().mean()),
                                "memory_acceptance_rate_so_far":
                                    float(mem["acceptances"].sum() / max(int(mem["proposals"].sum()), 1))}
    D, E = args.draws, len(ESTIMATORS)
    for d in range(D):
        for k, n in enumerate(names):
            t0 = time.perf_counter()
            with torch.no_grad():
                for p, v in zip(t.params, states[n]["params"], strict=True):
                    p.copy_(v)
            t.sampler.on_update()
            batch = random.Random(f"{args.seed}-{n}-{d}").sample(range(len(train_set)), config.batch_size)
            r = paired_draw(t.policy, ctx, methods, states[n]["method"], batch, t.rngs["sampler"],
                            sampler_seed=10_000 * (k + 1) + d, resampler_seed=20_000 * (k + 1) + d,
                            score_batch_size=config.score_batch_size)
            g, gram = grads[n], grams[n]
            new = [e_i * D + d for e_i in range(E)]
            for e_i, e in zip(new, ESTIMATORS):
                g[e_i] = r["grads"][e]
            dots = (g @ g[new].T).numpy()  # float64 inner products with every row (unfilled rows are 0)
            gram[:, new], gram[new, :] = dots, dots.T
            filled = [e_i * D + j for e_i in range(E) for j in range(d + 1)]
            point = results["points"][n]
            point["gram"] = gram[np.ix_(filled, filled)].tolist()  # estimator-major blocks of draws 0..d
            point["draws"].append({"draw": d, "batch": batch, "sampled_tokens": r["sampled_tokens"],
                                   "scored_tokens": r["scored_tokens"], "metrics": r["metrics"],
                                   "grad_sq_norm": {e: float(r["grads"][e].double().pow(2).sum()) for e in ESTIMATORS},
                                   "seconds": time.perf_counter() - t0})
            point["summary"] = summarise(point, args.bootstrap, args.seed) if d >= 2 else {}
            results["seconds_elapsed"] = time.perf_counter() - started
            (out / "results.json").write_text(json.dumps(results, indent=1))
            (out / "table.md").write_text(markdown(results))
            print(f"{n} draw {d + 1}/{D}: acc {r['metrics']['trice']['proposal_accuracy']:.2f} "
                  f"scored {r['scored_tokens']} sampled {r['sampled_tokens']} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    print(markdown(results))
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
