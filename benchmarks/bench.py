"""trice's benchmark suite: five figures, each a ratio measured in this run, on this machine.

    python benchmarks/bench.py [--only sampling,scoring,generate,trl,tta] [--skip trl]
                               [--reps 3] [--from-compare DIR] [--no-profile] [--out bench-results.json]

(`make bench` runs it in .venv-bench, the virtualenv that also has TRL.)

| figure | what | target |
|---|---|---|
| sampling_mfu | model FLOP/s of trice.sampler.sample / the matmul probe's FLOP/s | >= 0.5 |
| scoring_mfu | model FLOP/s of trice.scorer.score + backward (LoRA) / the probe's FLOP/s | >= 0.7 |
| sampler_vs_generate | our sampler's tokens/s / plain batched model.generate's tokens/s | (> 1) |
| step_vs_trl_grpo | wall time of one TRICE step / one TRL GRPOTrainer step | <= 0.5 |
| time_to_accuracy_vs_star | TRICE's time to reach STaR's final accuracy / STaR's time | <= 0.5 |

FLOP counting (stated again in the output, under "formulae"):
  forward  = 2 * N * tokens + 2 * d * V * logit_rows
  backward = 2 * N * tokens + 2 * d * V * logit_rows        (input gradients; the base weights are frozen)
             + 2 * N_adapter * tokens                         (LoRA weight gradients)
  LoRA forward adds 2 * N_adapter * tokens and its input gradients as much again.
  N = non-embedding parameters of the base model (embeddings and the tied LM head excluded), d the hidden
  size, V the vocabulary, tokens = the non-pad tokens the model processes (the shared prefix once),
  logit_rows = the positions whose logits are computed. Attention's score/value products
  (4 * layers * d_attn * context per token) are not in the MFU; they are reported beside it.
  MFU = achieved FLOP/s / probe FLOP/s, the probe being the best of two float32 matmuls
  ([tokens, d] x [d, d_ff] and a large square one) at the same torch thread count, in the same process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # the repo's trice even without an install

FIGURES = {  # flag name -> figure name, target, direction
    "sampling": ("sampling_mfu", 0.5, ">="),
    "scoring": ("scoring_mfu", 0.7, ">="),
    "generate": ("sampler_vs_generate", None, ">="),
    "trl": ("step_vs_trl_grpo", 0.5, "<="),
    "tta": ("time_to_accuracy_vs_star", 0.5, "<="),
}
TASK = "gym/chain_sum"
TASK_OPTIONS = dict(min_terms=2, max_terms=3, min_digits=1, max_digits=1, n_train=200, n_test=400)
HAND_EXEMPLARS = [("State the final answer to the following arithmetic problem: 1 + 5 =", "1 + 5 = 6. So the answer is 6.", "6"),
                  ("State the final answer to the following arithmetic problem: 4 + 0 =", "4 + 0 = 4. So the answer is 4.", "4"),
                  ("State the final answer to the following arithmetic problem: 6 + 2 + 1 =",
                   "6 + 2 + 1 = 9. So the answer is 9.", "9")]
FORMULAE = {
    "forward": "2 * N_nonembedding * tokens + 2 * d_model * vocab * logit_rows",
    "backward_lora": "2 * N_nonembedding * tokens + 2 * d_model * vocab * logit_rows (input gradients) "
                     "+ 2 * N_lora * tokens (adapter weight gradients); LoRA forward/input-grad add 2 * N_lora * tokens each",
    "tokens": "non-pad tokens processed (the shared prefix counted once)",
    "mfu": "achieved FLOP/s / max(probe FLOP/s of fp32 matmuls [tokens,d]x[d,d_ff] and [S,S]x[S,S]), same threads",
    "attention": "4 * layers * heads * head_dim * context per token, reported separately, not in the MFU",
}


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------- setup
def exemplars():
    """runs/demo/exemplars.jsonl if a demo ran, else three hand-made correct ones in the same format."""
    from trice.initialise import load_exemplars
    from trice.tasks import Example

    path = ROOT / "runs" / "demo" / "exemplars.jsonl"
    if path.exists():
        return load_exemplars(path), str(path)
    return [Example(q, a, rationale=r) for q, r, a in HAND_EXEMPLARS], "hand-made"


def exemplars_file(tmp: Path) -> str:
    exs, source = exemplars()
    if source != "hand-made":
        return source
    from trice.initialise import save_exemplars

    path = tmp / "exemplars.jsonl"
    save_exemplars(exs, path)
    return str(path)


def get_demo_task():
    from trice.tasks import get_task

    return get_task(TASK, seed=0, **TASK_OPTIONS)


def model_shape(model) -> dict:
    c = model.config
    n = sum(p.numel() for name, p in model.named_parameters()
            if "embed_tokens" not in name and "lm_head" not in name and "lora_" not in name)
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return {"n_nonembedding": n, "d_model": c.hidden_size, "vocab": c.vocab_size, "layers": c.num_hidden_layers,
            "attn_width": heads * head_dim, "d_ff": c.intermediate_size}


def lora_params(policy) -> int:
    return sum(p.numel() for p in policy.trainable_parameters())


@contextlib.contextmanager
def no_stop_tokens():
    """Force the sampler to run every row to max_new_tokens (EOS/special tokens do not stop it), as
    min_new_tokens does for generate: both sides then produce exactly the same number of tokens."""
    import trice.sampler as sampler

    original = sampler._stop_ids
    sampler._stop_ids = lambda policy: set()
    try:
        yield
    finally:
        sampler._stop_ids = original


def timed(fn, reps: int, warmup: int = 1):
    """Median and all wall times of ``fn()`` after ``warmup`` untimed calls; returns (median, times, last)."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


# ----------------------------------------------------------------------------------------------- probe
def matmul_probe(d: int, d_ff: int, tokens: int, square: int = 2048, reps: int = 10) -> dict:
    """Float32 matmul FLOP/s at the current torch thread count: the machine's peak for this model's shapes."""
    results = {}
    for name, (m, k, n) in {f"[{tokens},{d}]x[{d},{d_ff}]": (tokens, d, d_ff),
                            f"[{square},{square}]x[{square},{square}]": (square, square, square)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        with torch.inference_mode():
            for _ in range(3):
                torch.mm(a, b)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                torch.mm(a, b)
                times.append(time.perf_counter() - t0)
        results[name] = 2 * m * k * n / min(times)
    best = max(results.values())
    return {"flops_per_s": results, "peak_flops_per_s": best, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------------------ FLOP counts
def sampling_flops(shape, prefix_len: int, prompt_lens: list[int], new_tokens: list[int]) -> dict:
    """Model FLOPs of one sampler call (see the module docstring)."""
    n_model, lm_head = 2 * shape["n_nonembedding"], 2 * shape["d_model"] * shape["vocab"]
    prefix_cached = max(prefix_len - 1, 0)
    tokens = prefix_cached + sum(1 + p + max(t - 1, 0) for p, t in zip(prompt_lens, new_tokens))
    logit_rows = (1 if prefix_cached else 0) + sum(new_tokens)
    attn = 4 * shape["layers"] * shape["attn_width"]
    context = sum(range(1, prefix_cached + 1))
    for p, t in zip(prompt_lens, new_tokens):
        first = prefix_cached + 1 + p  # context of the first step's tokens, then one more each step
        context += sum(range(prefix_cached + 1, first + 1)) + sum(first + j for j in range(1, t))
    return {"tokens": tokens, "logit_rows": logit_rows, "model_flops": n_model * tokens + lm_head * logit_rows,
            "attention_flops": attn * context}


def scoring_flops(shape, n_lora: int, prefix_len: int, prompt_lens: list[int], cont_lens: list[int],
                  backward: bool = True) -> dict:
    n_model, lm_head = 2 * shape["n_nonembedding"], 2 * shape["d_model"] * shape["vocab"]
    prefix_cached = max(prefix_len - 1, 0)
    tokens = prefix_cached + sum(1 + p + c for p, c in zip(prompt_lens, cont_lens))
    logit_rows = sum(cont_lens)
    forward = n_model * tokens + lm_head * logit_rows + 2 * n_lora * tokens
    back = (n_model * tokens + lm_head * logit_rows + 4 * n_lora * tokens) if backward else 0
    attn = 4 * shape["layers"] * shape["attn_width"]
    context = sum(range(1, prefix_cached + 1)) + sum(
        sum(range(prefix_cached + 1, prefix_cached + 2 + p + c)) for p, c in zip(prompt_lens, cont_lens))
    return {"tokens": tokens, "logit_rows": logit_rows, "model_flops": forward + back,
            "forward_flops": forward, "backward_flops": back,
            "attention_flops": attn * context * (3 if backward else 1)}


# ----------------------------------------------------------------------------------------------- context
class Bench:
    def __init__(self, args):
        self.args = args
        self.results = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                                    "cpus": os.cpu_count()},
                        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "formulae": FORMULAE, "figures": {}}
        self._model = None
        self._probe = None
        self.task = get_demo_task()
        self.exemplars, self.exemplar_source = exemplars()
        from trice.prompts import exemplar_prefix, rationale_prompt

        self.prefix = exemplar_prefix(self.exemplars)
        self.prompts = [rationale_prompt(e.question) for e in self.task.test[:16]]
        self.results["setup"] = {"exemplars": self.exemplar_source, "prompts": len(self.prompts),
                                 "task": TASK, "task_options": TASK_OPTIONS}
        self.sampled_texts = None  # the sampling figure's continuations, scored by the scoring figure

    def fresh_model(self):
        from trice.model import load_model

        t0 = time.perf_counter()
        model, tok = load_model()
        log(f"  (model loaded in {time.perf_counter() - t0:.1f} s)")
        return model, tok

    def probe(self, shape):
        if self._probe is None:
            self._probe = matmul_probe(shape["d_model"], shape["d_ff"], tokens=2048)
            self.results["probe"] = self._probe
            for k, v in self._probe["flops_per_s"].items():
                log(f"  probe {k}: {v / 1e9:.1f} GFLOP/s")
        return self._probe["peak_flops_per_s"]

    def lora_policy(self):
        """One LoRA r=8 all-linear policy (as training uses), shared by the sampling and scoring figures."""
        if self._model is None:
            from trice.model import Policy

            model, tok = self.fresh_model()
            self.shape = model_shape(model)
            self._model = Policy.create(model, tok, "lora", prefix_text=self.prefix, lora_r=8, lora_alpha=16,
                                        lora_targets="all-linear")
            with torch.no_grad():  # LoRA B starts at zero; a trained adapter is not (same cost either way)
                for name, p in self._model.model.named_parameters():
                    if "lora_B" in name:
                        p.normal_(0, 1e-3)
        return self._model

    def record(self, key, value, details, met=None):
        name, target, direction = FIGURES[key]
        if met is None and value is not None and target is not None:
            met = value >= target if direction == ">=" else value <= target
        self.results["figures"][name] = {"value": value, "target": f"{direction} {target}" if target else None,
                                         "met": met, **details}
        self.write()
        shown = "n/a" if value is None else f"{value:.3f}"
        verdict = "" if met is None else ("  [target met]" if met else f"  [target {direction} {target} NOT met]")
        log(f"==> {name} = {shown}{verdict}")

    def write(self):
        Path(self.args.out).write_text(json.dumps(self.results, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------------ the figures
def fig_sampling(b: Bench):
    """sampling_mfu: trice.sampler.sample, LoRA policy, 16 prompts, 64 forced new tokens at temperature 1."""
    from trice.prompts import rationale_prompt
    from trice.sampler import sample

    policy = b.lora_policy()
    peak = b.probe(b.shape)
    tok = policy.tokenizer
    prefix_len = len(policy._prefix_ids)
    prompt_lens = [len(tok(p, add_special_tokens=False).input_ids) for p in b.prompts]
    gen = torch.Generator().manual_seed(0)

    def run():
        return sample(policy, b.prompts, max_new_tokens=64, temperature=1.0, stop=(), generator=gen, batch_size=16)

    with no_stop_tokens():
        secs, times, out = timed(run, b.args.reps)
    b.sampled_texts = [s.text for s in out]
    flops = sampling_flops(b.shape, prefix_len, prompt_lens, [s.num_tokens for s in out])
    achieved = flops["model_flops"] / secs
    new_tokens = sum(s.num_tokens for s in out)
    b.record("sampling", achieved / peak, {
        "seconds_median": secs, "seconds": times, "new_tokens": new_tokens, "tokens_per_s": new_tokens / secs,
        "achieved_flops_per_s": achieved, "peak_flops_per_s": peak, "prefix_tokens": prefix_len,
        "prompt_tokens_mean": statistics.mean(prompt_lens), "rows": len(b.prompts), **flops,
        "mfu_with_attention": (flops["model_flops"] + flops["attention_flops"]) / secs / peak,
        "model": b.shape, "policy": "lora r=8 all-linear"})
    log(f"  {new_tokens} tokens in {secs:.2f} s = {new_tokens / secs:.1f} tok/s, "
        f"{achieved / 1e9:.1f} GFLOP/s model, peak {peak / 1e9:.1f}")
    if b.args.batch_scaling:  # the same measurement with 4x the rows (one run): how MFU scales with batch
        prompts64 = [rationale_prompt(e.question) for e in b.task.test[:64]]
        lens64 = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts64]
        with no_stop_tokens():
            t0 = time.perf_counter()
            out64 = sample(policy, prompts64, max_new_tokens=64, temperature=1.0, stop=(), generator=gen,
                           batch_size=64)
            secs64 = time.perf_counter() - t0
        f64 = sampling_flops(b.shape, prefix_len, lens64, [s.num_tokens for s in out64])
        b.results["figures"]["sampling_mfu"]["batch_64"] = {
            "seconds": secs64, "tokens_per_s": sum(s.num_tokens for s in out64) / secs64,
            "mfu": f64["model_flops"] / secs64 / peak}
        b.write()
        log(f"  (64 rows: {sum(s.num_tokens for s in out64) / secs64:.1f} tok/s, "
            f"MFU {f64['model_flops'] / secs64 / peak:.3f})")


def fig_scoring(b: Bench):
    """scoring_mfu: trice.scorer.score + backward of -sum(coefs * logp), LoRA, the 16 prompts with 64-token
    continuations (the sampling figure's, or sampled here)."""
    from trice.prompts import END_OF_RATIONALE
    from trice.sampler import sample
    from trice.scorer import score

    policy = b.lora_policy()
    peak = b.probe(b.shape)
    if b.sampled_texts is None:
        with no_stop_tokens():
            out = sample(policy, b.prompts, max_new_tokens=64, temperature=1.0, stop=(),
                         generator=torch.Generator().manual_seed(0), batch_size=16)
        b.sampled_texts = [s.text for s in out]
    conts = [t + END_OF_RATIONALE for t in b.sampled_texts]
    tok = policy.tokenizer
    prompt_lens = [len(tok(p, add_special_tokens=False).input_ids) for p in b.prompts]
    cont_lens = [len(tok(c, add_special_tokens=False).input_ids) for c in conts]
    prefix_len = len(policy._prefix_ids)
    params = policy.trainable_parameters()
    coefs = torch.full((len(conts),), 1.0 / len(conts))

    def fwd_bwd():
        for p in params:
            p.grad = None
        loss = -(coefs * score(policy, b.prompts, conts)).sum()
        loss.backward()
        return loss.item()

    def fwd():
        with torch.no_grad():
            return score(policy, b.prompts, conts)

    secs, times, _ = timed(fwd_bwd, b.args.reps)
    fsecs, ftimes, _ = timed(fwd, b.args.reps)
    n_lora = lora_params(policy)
    flops = scoring_flops(b.shape, n_lora, prefix_len, prompt_lens, cont_lens)
    fflops = scoring_flops(b.shape, n_lora, prefix_len, prompt_lens, cont_lens, backward=False)
    achieved = flops["model_flops"] / secs
    b.record("scoring", achieved / peak, {
        "seconds_median": secs, "seconds": times, "achieved_flops_per_s": achieved, "peak_flops_per_s": peak,
        "rows": len(conts), "prefix_tokens": prefix_len, "prompt_tokens_mean": statistics.mean(prompt_lens),
        "continuation_tokens_mean": statistics.mean(cont_lens), "n_lora_params": n_lora, **flops,
        "mfu_with_attention": (flops["model_flops"] + flops["attention_flops"]) / secs / peak,
        "forward_only_seconds_median": fsecs, "forward_only_mfu": fflops["model_flops"] / fsecs / peak,
        "padded_tokens_computed": max(prefix_len - 1, 0) + len(conts) * (1 + max(prompt_lens) + max(cont_lens))})
    log(f"  fwd+bwd {secs:.2f} s ({achieved / 1e9:.1f} GFLOP/s); forward only {fsecs:.2f} s "
        f"(MFU {fflops['model_flops'] / fsecs / peak:.3f})")


def fig_generate(b: Bench):
    """sampler_vs_generate: the plain model (no adapter) both ways; 16 prompts, 64 forced tokens, temperature 1."""
    from trice.model import Policy
    from trice.sampler import sample

    model, tok = b.fresh_model()
    shape = model_shape(model)
    peak = b.probe(shape)
    ids = torch.tensor(tok(b.prefix, add_special_tokens=False).input_ids, dtype=torch.long)
    policy = Policy(model, model, tok, "full", b.prefix, ids)  # plain model, hard prefix, nothing trainable
    gen = torch.Generator().manual_seed(0)

    def ours():
        with no_stop_tokens():
            out = sample(policy, b.prompts, max_new_tokens=64, temperature=1.0, stop=(), generator=gen,
                         batch_size=len(b.prompts))
        return sum(s.num_tokens for s in out)

    tok.padding_side = "left"
    enc = tok([b.prefix + p for p in b.prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)

    def theirs():
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_new_tokens=64,
                             max_new_tokens=64, pad_token_id=tok.pad_token_id)
        return int((out.shape[1] - enc.input_ids.shape[1]) * out.shape[0])

    ours(), theirs()  # warm-up both
    t_ours, t_theirs, n_ours, n_theirs = [], [], 0, 0
    for _ in range(b.args.reps):  # interleaved, so that machine noise hits both alike
        t0 = time.perf_counter()
        n_ours = ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        n_theirs = theirs()
        t_theirs.append(time.perf_counter() - t0)
    ours_tps, theirs_tps = n_ours / statistics.median(t_ours), n_theirs / statistics.median(t_theirs)
    prompt_lens = [len(tok(p, add_special_tokens=False).input_ids) for p in b.prompts]
    flops = sampling_flops(shape, len(ids), prompt_lens, [64] * len(b.prompts))
    b.record("generate", ours_tps / theirs_tps, {
        "ours_tokens_per_s": ours_tps, "generate_tokens_per_s": theirs_tps, "ours_seconds": t_ours,
        "generate_seconds": t_theirs, "ours_new_tokens": n_ours, "generate_new_tokens": n_theirs,
        "rows": len(b.prompts), "generate_input_width": int(enc.input_ids.shape[1]),
        "ours_mfu_plain": flops["model_flops"] / statistics.median(t_ours) / peak,
        "settings": "plain model; sampler stop=() with EOS disabled, generate min_new_tokens=max_new_tokens=64, "
                    "do_sample, temperature 1, top_k 0, top_p 1, left padding"})
    log(f"  ours {ours_tps:.1f} tok/s, generate {theirs_tps:.1f} tok/s")
    del model


def trice_step_times(b: Bench) -> dict:
    """One TRICE step as the trainer runs it: method.step (M=16 proposals, MH, estimator) + score of the
    L=16 terms + backward + Adam step; LoRA r=8 all-linear; n_train=32 (memory from the guide at set-up)."""
    from trice.config import TrainConfig
    from trice.methods import Context, make_method
    from trice.model import Policy
    from trice.scorer import score

    model, tok = b.fresh_model()
    train_set = b.task.train[:32]
    config = TrainConfig(params="lora", batch_size=16, subsample=16, lr=1e-3, max_new_tokens=64, n_train=32,
                         method="trice")
    policy = Policy.create(model, tok, "lora", prefix_text=b.prefix, lora_r=8, lora_alpha=16,
                           lora_targets="all-linear")
    method = make_method("trice", b.exemplars)
    ctx = Context(policy, b.task, train_set, config, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    method.setup(ctx)
    setup_s = time.perf_counter() - t0
    params = policy.trainable_parameters()
    optimizer = torch.optim.Adam(params, lr=1e-3)
    rows = []
    for i in range(1 + b.args.reps):
        batch = [(16 * i + j) % len(train_set) for j in range(16)]
        tokens0 = ctx.tokens_sampled
        t0 = time.perf_counter()
        weighted = method.step(ctx, batch)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        log_probs = score(policy, weighted.prompts, weighted.continuations)
        loss = -(weighted.coefs.to(log_probs.dtype) * log_probs).sum()
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        rows.append({"seconds": t2 - t0, "seconds_sampling": t1 - t0, "seconds_scoring": t2 - t1,
                     "tokens_sampled": ctx.tokens_sampled - tokens0, "sequences_scored": len(weighted.prompts)})
        log(f"  TRICE step {i}{' (warm-up)' if i == 0 else ''}: {t2 - t0:.2f} s "
            f"(sampling {t1 - t0:.2f}, scoring {t2 - t1:.2f}; {rows[-1]['tokens_sampled']} tokens sampled, "
            f"{len(weighted.prompts)} sequences scored)")
    timed_rows = rows[1:]
    return {"median_seconds": statistics.median(r["seconds"] for r in timed_rows),
            "median_seconds_sampling": statistics.median(r["seconds_sampling"] for r in timed_rows),
            "median_seconds_scoring": statistics.median(r["seconds_scoring"] for r in timed_rows),
            "mean_completion_tokens": statistics.mean(r["tokens_sampled"] for r in timed_rows) / 16,
            "steps": rows, "setup_seconds": setup_s}


def fig_trl(b: Bench):
    """step_vs_trl_grpo: one TRICE step / one TRL GRPOTrainer step, same model, prompts, completion
    length (<= 64 tokens) and 16 backward sequences. TRL runs in a subprocess of this interpreter."""
    try:
        import trl  # noqa: F401
    except ImportError:
        b.record("trl", None, {"skipped": "TRL is not installed in this environment (run `make bench`, "
                                          "which installs it in .venv-bench)"})
        return
    cmd = [sys.executable, str(Path(__file__).with_name("trl_grpo_step.py")), "--steps", str(1 + b.args.reps),
           "--threads", str(torch.get_num_threads())]
    log("  TRL GRPO: " + " ".join(cmd))
    with tempfile.NamedTemporaryFile("r", suffix=".json") as f:
        proc = subprocess.run(cmd + ["--out", f.name], cwd=ROOT, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"trl_grpo_step.py exited with {proc.returncode}")
        theirs = json.loads(Path(f.name).read_text())
    ours = trice_step_times(b)
    b.record("trl", ours["median_seconds"] / theirs["median_seconds"], {
        "trice_step": ours, "trl_grpo_step": theirs,
        "settings": "TRICE M=16 proposals, L=16 backward sequences; GRPO 8 prompts x 2 generations = 16 "
                    "completions; both LoRA r=8 all-linear, fp32, max 64 new tokens, temperature 1, 3-shot prefix"})
    log(f"  TRICE step {ours['median_seconds']:.2f} s vs TRL GRPO step {theirs['median_seconds']:.2f} s")


# ---------------------------------------------------------------------------------- time to accuracy
def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def training_curve(records: list[dict]) -> tuple[list[dict], float]:
    """Evaluation points with the training wall time spent before them: set-up (the init record) plus
    every step's sampling and scoring time; evaluation time itself is excluded (both runs alike).
    Returns the points and the whole run's training time."""
    elapsed = sum(r.get("seconds", 0.0) for r in records if r.get("event") == "init")
    points = []
    for r in records:
        if r.get("event") == "eval":
            points.append({"step": r["step"], "accuracy": r["greedy_accuracy"], "train_seconds": elapsed,
                           "tokens_sampled": r.get("tokens_sampled"), "eval_seconds": r.get("seconds")})
        elif "step" in r and "event" not in r:
            elapsed += r.get("seconds_sampling", 0.0) + r.get("seconds_scoring", 0.0)
    return points, elapsed


def time_to_accuracy(trice_dir: Path, star_dir: Path) -> tuple[float, dict]:
    star_points, star_seconds = training_curve(read_metrics(star_dir))
    trice_points, trice_seconds = training_curve(read_metrics(trice_dir))
    star_final, star_tokens = star_points[-1]["accuracy"], star_points[-1]["tokens_sampled"]
    reached = next((p for p in trice_points if p["accuracy"] >= star_final), None)
    details = {"star_final_accuracy": star_final, "star_accuracy_before": star_points[0]["accuracy"],
               "star_train_seconds": star_seconds, "star_tokens_sampled": star_tokens,
               "trice_train_seconds": trice_seconds, "trice_final_accuracy": trice_points[-1]["accuracy"],
               "trice_curve": trice_points, "star_curve": star_points, "trice_run": str(trice_dir),
               "star_run": str(star_dir),
               "wall_time": "set-up + sampling + scoring seconds from metrics.jsonl; evaluations excluded"}
    if star_tokens is not None:  # the equal-token comparison: TRICE's last evaluation within STaR's tokens
        within = [p for p in trice_points if p["tokens_sampled"] is not None and p["tokens_sampled"] <= star_tokens]
        if within:
            details["trice_accuracy_at_star_tokens"] = within[-1]["accuracy"]
            details["trice_step_at_star_tokens"] = within[-1]["step"]
    if reached is None:
        details["flag"] = ("TRICE never reached STaR's final accuracy: the value is a lower bound, TRICE's "
                           "whole training time / STaR's")
        return trice_seconds / star_seconds, details
    details["trice_reached_at_step"] = reached["step"]
    details["trice_seconds_to_reach"] = reached["train_seconds"]
    details["trice_tokens_to_reach"] = reached["tokens_sampled"]
    if reached["step"] == 0:
        details["flag"] = "STaR ended no better than the untuned model, which TRICE 'reaches' before training"
    return reached["train_seconds"] / star_seconds, details


def fig_tta(b: Bench):
    """time_to_accuracy_vs_star: STaR for one outer iteration (sample all 200 questions, rationalise the
    wrong ones, 20 fine-tuning steps), then TRICE, evaluated every 3 steps, until it has sampled
    --trice-token-factor times STaR's tokens; same LoRA, lr 1e-3, M = L = 16, 64 tokens, n_eval 200,
    exemplars."""
    walls = {}
    if b.args.from_compare:
        base = Path(b.args.from_compare)
        trice_dir, star_dir = base / "trice-seed0", base / "star-seed0"
    else:
        import shutil

        from trice.config import TrainConfig
        from trice.trainer import train

        out = Path(b.args.tta_dir)
        out.mkdir(parents=True, exist_ok=True)
        common = dict(model="smollm2-135m", params="lora", task=TASK, task_options=dict(TASK_OPTIONS),
                      batch_size=16, subsample=16, lr=1e-3, max_new_tokens=64, n_eval=200, seed=0,
                      checkpoint_every=0, exemplars=exemplars_file(out))
        star_dir, trice_dir = out / "star-seed0", out / "trice-seed0"
        if b.args.reuse_star and (star_dir / "summary.json").exists():
            star = json.loads((star_dir / "summary.json").read_text())
            log(f"  reusing the STaR run in {star_dir}")
        else:
            shutil.rmtree(star_dir, ignore_errors=True)
            t0 = time.perf_counter()
            star = train(TrainConfig(method="star", steps=b.args.star_steps, star_inner_steps=b.args.star_steps,
                                     eval_every=0, out=str(star_dir), **common))
            walls["star_train_call_seconds"] = time.perf_counter() - t0
        log(f"  STaR: accuracy {star['greedy_accuracy_before']:.3f} -> {star['greedy_accuracy_after']:.3f}, "
            f"{star['tokens_sampled']} tokens sampled")
        shutil.rmtree(trice_dir, ignore_errors=True)
        t0 = time.perf_counter()
        budget = int(b.args.trice_token_factor * star["tokens_sampled"])
        tr = train(TrainConfig(method="trice", steps=b.args.trice_max_steps, token_budget=budget,
                               eval_every=b.args.eval_every, out=str(trice_dir), **common))
        walls["trice_train_call_seconds"] = time.perf_counter() - t0
        walls["trice_token_budget"] = budget
        log(f"  TRICE: accuracy {tr['greedy_accuracy_before']:.3f} -> {tr['greedy_accuracy_after']:.3f}, "
            f"{tr['tokens_sampled']} tokens sampled, {tr['steps_done']} steps")
    value, details = time_to_accuracy(trice_dir, star_dir)
    b.record("tta", value, {**details, **walls}, met=False if "trice_reached_at_step" not in details else None)
    log(f"  STaR final {details['star_final_accuracy']:.3f} in {details['star_train_seconds']:.0f} s; TRICE "
        + (f"reached it at step {details['trice_reached_at_step']} after {details['trice_seconds_to_reach']:.0f} s"
           if "trice_reached_at_step" in details else "never reached it")
        + (f" ({details['flag']})" if "flag" in details else "")
        + (f"; at STaR's token count TRICE had {details['trice_accuracy_at_star_tokens']:.3f}"
           if "trice_accuracy_at_star_tokens" in details else ""))


# ---------------------------------------------------------------------------------------------- profile
def profile(b: Bench, out_dir: Path):
    """torch.profiler tables of one sampler call and one score + backward (the LoRA policy)."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    from trice.prompts import END_OF_RATIONALE
    from trice.sampler import sample
    from trice.scorer import score

    policy = b.lora_policy()
    out_dir.mkdir(parents=True, exist_ok=True)
    # What the hardware gives at the sampler's shapes: one decode step multiplies [rows, d] activations
    # by every weight matrix, so small-M matmul FLOP/s and memory bandwidth bound the sampling MFU.
    d, d_ff, vocab = b.shape["d_model"], b.shape["d_ff"], b.shape["vocab"]
    shapes = {}
    for m in (16, 64, 256):
        for name, (k, n) in {"mlp": (d, d_ff), "lm_head": (d, vocab)}.items():
            a, w = torch.randn(m, k), torch.randn(k, n)
            with torch.inference_mode():
                for _ in range(3):
                    torch.mm(a, w)
                t0 = time.perf_counter()
                for _ in range(20):
                    torch.mm(a, w)
                t = (time.perf_counter() - t0) / 20
            shapes[f"[{m},{k}]x[{k},{n}]"] = {"gflops": 2 * m * k * n / t / 1e9, "weight_gb_per_s": 4 * k * n / t / 1e9}
    big = torch.randn(64 * 1024 * 1024)  # 256 MB: memory bandwidth of a streaming read
    with torch.inference_mode():
        big.sum()
        t0 = time.perf_counter()
        for _ in range(5):
            big.sum()
        bandwidth = 5 * big.numel() * 4 / (time.perf_counter() - t0) / 1e9
    b.results["profile_probes"] = {"matmul": shapes, "read_bandwidth_gb_per_s": bandwidth,
                                   "peak_flops_per_s": b.probe(b.shape)}
    b.write()
    lines = [f"read bandwidth (256 MB sum): {bandwidth:.1f} GB/s; peak matmul {b.probe(b.shape) / 1e9:.1f} GFLOP/s"]
    lines += [f"  {k}: {v['gflops']:.1f} GFLOP/s, weights streamed at {v['weight_gb_per_s']:.1f} GB/s"
              for k, v in shapes.items()]
    (out_dir / "probes.txt").write_text("\n".join(lines) + "\n")
    log("\n".join(lines))
    with no_stop_tokens():
        sample(policy, b.prompts, max_new_tokens=8, temperature=1.0, stop=(), batch_size=16)  # warm
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            out = sample(policy, b.prompts, max_new_tokens=64, temperature=1.0, stop=(), batch_size=16,
                         generator=torch.Generator().manual_seed(0))
            wall = time.perf_counter() - t0
    write_profile(prof, out_dir / "sampling.txt", "sampler: 16 rows x 64 tokens, LoRA", wall)
    conts = [s.text + END_OF_RATIONALE for s in out]
    params = policy.trainable_parameters()
    loss = -score(policy, b.prompts, conts).mean()
    loss.backward()
    for p in params:
        p.grad = None
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        loss = -score(policy, b.prompts, conts).mean()
        loss.backward()
        wall = time.perf_counter() - t0
    write_profile(prof, out_dir / "scoring.txt", "score + backward: 16 rows, LoRA", wall)
    log(f"  profiles written to {out_dir}")


def write_profile(prof, path: Path, title: str, wall: float):
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    lines = [f"{title}: wall {wall:.2f} s under the profiler; ops' self CPU time {total:.2f} s; outside ops "
             f"(Python, dispatch, profiler) {max(wall - total, 0):.2f} s = {100 * max(wall - total, 0) / wall:.0f}% of wall",
             "", "share of wall time by op (self CPU time):"]
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:20]:
        t = e.self_cpu_time_total / 1e6
        lines.append(f"  {100 * t / wall:5.1f}%  {t:7.3f} s  {e.count:6d} calls  {e.key}")
    lines += ["", events.table(sort_by="self_cpu_time_total", row_limit=30)]
    path.write_text("\n".join(lines) + "\n")
    log("\n".join(lines[:16]))


# ------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated figures of {', '.join(FIGURES)}")
    parser.add_argument("--skip", default="", help="comma-separated figures to skip")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions after one warm-up (median)")
    parser.add_argument("--out", default=str(ROOT / "bench-results.json"))
    parser.add_argument("--from-compare", default=None, metavar="DIR",
                        help="time to accuracy from DIR/trice-seed0 and DIR/star-seed0 instead of training")
    parser.add_argument("--tta-dir", default=str(ROOT / "runs" / "bench-tta"))
    parser.add_argument("--star-steps", type=int, default=20, help="STaR steps (= one outer iteration)")
    parser.add_argument("--trice-max-steps", type=int, default=100,
                        help="TRICE's step limit (the token budget normally stops it first)")
    parser.add_argument("--eval-every", type=int, default=3, help="TRICE evaluation interval (steps)")
    parser.add_argument("--trice-token-factor", type=float, default=1.5,
                        help="TRICE runs until it has sampled this many times STaR's tokens (time to accuracy "
                             "needs it to run until it gets there; the equal-token accuracy is reported too)")
    parser.add_argument("--reuse-star", action="store_true",
                        help="reuse a finished STaR run in --tta-dir instead of training it again")
    parser.add_argument("--no-batch-scaling", dest="batch_scaling", action="store_false",
                        help="skip the extra 64-row sampling measurement")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other figures of an existing --out file (each still measured within one run)")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the torch.profiler tables of sampling and scoring")
    parser.add_argument("--profile-dir", default=str(ROOT / "runs" / "bench-profiles"),
                        help="where the profiler tables go (benchmarks/PROFILE.md discusses them)")
    args = parser.parse_args(argv)
    chosen = [f.strip() for f in args.only.split(",") if f.strip()]
    skip = {f.strip() for f in args.skip.split(",") if f.strip()}
    unknown = [f for f in chosen + list(skip) if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")

    b = Bench(args)
    if args.merge and Path(args.out).exists():  # keep the figures this invocation does not measure
        previous = json.loads(Path(args.out).read_text())
        for name, fig in previous.get("figures", {}).items():
            if fig.get("value") is not None:
                b.results["figures"][name] = {**fig, "from_previous_invocation": previous.get("started")}
    log(f"trice benchmarks: {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"exemplars: {b.exemplar_source}")
    runners = {"generate": fig_generate, "sampling": fig_sampling, "scoring": fig_scoring, "trl": fig_trl,
               "tta": fig_tta}
    started = time.perf_counter()
    for key in ("generate", "sampling", "scoring", "trl", "tta"):
        name = FIGURES[key][0]
        if key not in chosen or key in skip:
            b.results["figures"].setdefault(name, {"value": None, "skipped": "not selected"})
            continue
        b.results["figures"].pop(name, None)
        log(f"\n--- {name}: {runners[key].__doc__.split(':', 1)[1].strip().splitlines()[0]}")
        t0 = time.perf_counter()
        try:
            runners[key](b)
        except Exception as exc:  # keep going: one figure failing leaves the others measured
            traceback.print_exc()
            b.record(key, None, {"error": f"{type(exc).__name__}: {exc}"})
        b.results["figures"][name]["bench_seconds"] = time.perf_counter() - t0
        b.write()
    if args.profile:
        log("\n--- profiles")
        profile(b, Path(args.profile_dir))
    b.results["total_seconds"] = time.perf_counter() - started
    b.write()

    log("\nfigure                      value    target    met")
    for key, (name, target, direction) in FIGURES.items():
        fig = b.results["figures"].get(name, {})
        value = fig.get("value")
        shown = "n/a" if value is None else f"{value:.3f}"
        met = fig.get("met")
        note = fig.get("skipped") or fig.get("error") or ("yes" if met else "no" if met is not None else "-")
        log(f"{name:26s} {shown:>7s}   {(direction + ' ' + str(target)) if target else '-':8s}  {note}")
    log(f"wrote {args.out} ({b.results['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
