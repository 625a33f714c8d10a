"""Shared pieces of the benchmark suite (see bench.py): set-up, the matmul probe, FLOP counts, the run context."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
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
    "vllm": ("vllm_vs_engine", None, ">="),
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
    from trice.methods.initialisation import load_exemplars
    from trice.tasks import Example

    path = ROOT / "runs" / "demo" / "exemplars.jsonl"
    if path.exists():
        return load_exemplars(path), str(path)
    return [Example(q, a, rationale=r) for q, r, a in HAND_EXEMPLARS], "hand-made"


def exemplars_file(tmp: Path) -> str:
    exs, source = exemplars()
    if source != "hand-made":
        return source
    from trice.methods.initialisation import save_exemplars

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
    import trice.generation.sampler as sampler

    original = sampler.stop_token_ids
    sampler.stop_token_ids = lambda tokenizer, model=None: set()
    try:
        yield
    finally:
        sampler.stop_token_ids = original


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
        from trice.prompts import PLAIN

        self.prefix = PLAIN.prefix(self.exemplars)
        self.prompts = [PLAIN.prompt(e.question) for e in self.task.test[:16]]
        self.results["setup"] = {"exemplars": self.exemplar_source, "prompts": len(self.prompts),
                                 "task": TASK, "task_options": TASK_OPTIONS}
        self.sampled_texts = None  # the sampling figure's continuations, scored by the scoring figure

    def fresh_model(self):
        from trice.modeling import load_model

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
            from trice.modeling import Policy

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


