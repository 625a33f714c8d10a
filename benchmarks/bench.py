"""trice's benchmark suite: five figures, each a ratio measured in this run, on this machine.

    python benchmarks/bench.py [--only sampling,scoring,generate,trl,tta] [--skip trl]
                               [--reps 3] [--from-compare DIR] [--no-profile] [--out bench-results.json]

(`make bench` runs it in .venv-bench, the virtualenv that also has TRL.)

| figure | what | target |
|---|---|---|
| sampling_mfu | model FLOP/s of trice.generation.sampler.sample / the matmul probe's FLOP/s | >= 0.5 |
| scoring_mfu | model FLOP/s of trice.modeling.scoring.score + backward (LoRA) / the probe's FLOP/s | >= 0.7 |
| sampler_vs_generate | our sampler's tokens/s / plain batched model.generate's tokens/s | (> 1) |
| step_vs_trl_grpo | wall time of one TRICE step / one TRL GRPOTrainer step | <= 0.5 |
| time_to_accuracy_vs_star | TRICE's time to reach STaR's final accuracy / STaR's time | <= 0.5 |
| vllm_vs_engine | vLLM's tokens/s / the slot engine's, same work (16 and 64 rows in the details) | (record) |

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
import json
import sys
import time
import traceback
from pathlib import Path

import torch


from bench_common import (ROOT, FIGURES, log, no_stop_tokens, Bench)  # noqa: E402
from bench_figures import (fig_sampling, fig_scoring, fig_generate, fig_trl)  # noqa: E402
from bench_tta import fig_tta  # noqa: E402
from bench_vllm import fig_vllm  # noqa: E402


# ---------------------------------------------------------------------------------------------- profile
def profile(b: Bench, out_dir: Path):
    """torch.profiler tables of one sampler call and one score + backward (the LoRA policy)."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    from trice.prompts import END_OF_RATIONALE
    from trice.generation.sampler import sample
    from trice.modeling.scoring import score

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
    from trice.prompts import PLAIN
    from trice.generation.sampler import DEFAULT_BATCH_SIZE

    prompts = [PLAIN.prompt(e.question) for e in b.task.test[:DEFAULT_BATCH_SIZE]]
    with no_stop_tokens():
        sample(policy, prompts[:8], max_new_tokens=8, temperature=1.0, stop=(), batch_size=8)  # warm
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            out = sample(policy, prompts, max_new_tokens=64, temperature=1.0, stop=(), batch_size=DEFAULT_BATCH_SIZE,
                         generator=torch.Generator().manual_seed(0))
            wall = time.perf_counter() - t0
    write_profile(prof, out_dir / "sampling.txt", f"sampler: {DEFAULT_BATCH_SIZE} rows x 64 tokens, LoRA merged", wall)
    profile_static_step(policy, prompts, out_dir)
    conts = [s.text + END_OF_RATIONALE for s in out[:len(b.prompts)]]
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


def profile_static_step(policy, prompts, out_dir: Path):
    """The compiled engine's shortfall taken apart (issue 26): the same call through the static decode step,
    compiled (sampling-compiled.txt) and eager (sampling-static-eager.txt: the fixed shapes without inductor),
    so that what the static shapes cost and what inductor's fusion saves can be read apart."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    from trice.generation import compiled_decode
    from trice.generation.sampler import sample

    def call():
        return sample(policy, prompts, max_new_tokens=64, temperature=1.0, stop=(), batch_size=len(prompts),
                      generator=torch.Generator().manual_seed(0), engine="compiled")

    for name, eager in (("sampling-compiled.txt", False), ("sampling-static-eager.txt", True)):
        compiled_decode.reset()
        if eager:  # what a refused compile does: the same static step, run eagerly
            compiled_decode._failed.append("profiling the eager static step")
        with no_stop_tokens():
            t0 = time.perf_counter()
            call()  # compiles (the first call of this shape)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            call()
            plain_wall = time.perf_counter() - t0
            with tprofile(activities=[ProfilerActivity.CPU]) as prof:
                t0 = time.perf_counter()
                call()
                wall = time.perf_counter() - t0
        write_profile(prof, out_dir / name, f"static decode step ({'eager' if eager else 'compiled'}), "
                      f"{len(prompts)} rows x 64 tokens; first call {first:.1f} s, an unprofiled call {plain_wall:.2f} s "
                      f"({64 * len(prompts) / plain_wall:.0f} tok/s)", wall)
    compiled_decode.reset()


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
               "tta": fig_tta, "vllm": fig_vllm}
    started = time.perf_counter()
    for key in ("generate", "sampling", "scoring", "trl", "tta", "vllm"):
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
