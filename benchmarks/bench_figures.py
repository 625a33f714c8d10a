"""The sampling, scoring, generate and TRL-step figures of the benchmark suite (see bench.py; time to accuracy:
bench_tta.py)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


from bench_common import (ROOT, log, model_shape, lora_params, no_stop_tokens, timed, sampling_flops, scoring_flops, Bench)  # noqa: E402


def peak_rss_during(fn, interval: float = 0.002) -> int:
    """Peak resident memory above the level before ``fn()`` (bytes), sampled from /proc by a thread."""
    import os
    import threading

    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    import gc

    gc.collect()
    base, peak, done = rss(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(interval)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(peak[0], rss()) - base


# ------------------------------------------------------------------------------------------ the figures
def fig_sampling(b: Bench):
    """sampling_mfu: trice.generation.sampler.sample, LoRA policy, 64 prompts in the engine's default 64 decode rows, 64
    forced new tokens at temperature 1 (also measured at 16 rows, the figure's setting before the slot engine)."""
    from trice.prompts import PLAIN
    from trice.generation.sampler import DEFAULT_BATCH_SIZE, sample

    policy = b.lora_policy()
    peak = b.probe(b.shape)
    tok = policy.tokenizer
    prefix_len = len(policy.prefix_ids)
    gen = torch.Generator().manual_seed(0)
    results = {}
    for rows in (DEFAULT_BATCH_SIZE, 16):
        prompts = [PLAIN.prompt(e.question) for e in b.task.test[:rows]]
        prompt_lens = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]

        def run():
            return sample(policy, prompts, max_new_tokens=64, temperature=1.0, stop=(), generator=gen, batch_size=rows)

        with no_stop_tokens():
            secs, times, out = timed(run, b.args.reps if rows == DEFAULT_BATCH_SIZE else 1)
        flops = sampling_flops(b.shape, prefix_len, prompt_lens, [s.num_tokens for s in out])
        new_tokens = sum(s.num_tokens for s in out)
        results[rows] = {"seconds_median": secs, "seconds": times, "new_tokens": new_tokens,
                         "tokens_per_s": new_tokens / secs, "mfu": flops["model_flops"] / secs / peak,
                         "mfu_with_attention": (flops["model_flops"] + flops["attention_flops"]) / secs / peak,
                         "prompt_tokens_mean": statistics.mean(prompt_lens), **flops}
        log(f"  {rows} rows: {new_tokens} tokens in {secs:.2f} s = {new_tokens / secs:.1f} tok/s, "
            f"MFU {results[rows]['mfu']:.3f}")
        if rows == 16:
            b.sampled_texts = [s.text for s in out]
    main = results[DEFAULT_BATCH_SIZE]
    main["compiled"] = compiled_sampling(b, policy, peak, gen)
    b.record("sampling", main["mfu"], {**main, "rows": DEFAULT_BATCH_SIZE, "rows_16": results[16],
                                       "peak_flops_per_s": peak, "prefix_tokens": prefix_len, "model": b.shape,
                                       "policy": "lora r=8 all-linear (merged while sampling)"})


def compiled_sampling(b: Bench, policy, peak: float, gen) -> dict:
    """The same 64 rows through ``engine="compiled"`` (trice.generation.compiled_decode): the first call (the
    compile included, in a process that has not compiled this shape before) timed apart, then the median."""
    from trice.generation import compiled_decode
    from trice.generation.sampler import sample
    from trice.prompts import PLAIN

    tok = policy.tokenizer
    prompts = [PLAIN.prompt(e.question) for e in b.task.test[:64]]
    prompt_lens = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]

    def run():
        return sample(policy, prompts, max_new_tokens=64, temperature=1.0, stop=(), generator=gen, batch_size=64,
                      engine="compiled")

    compiled_decode.reset()
    with no_stop_tokens():
        t0 = time.perf_counter()
        run()
        first = time.perf_counter() - t0
        secs, times, out = timed(run, b.args.reps, warmup=0)
    new_tokens = sum(s.num_tokens for s in out)
    flops = sampling_flops(b.shape, len(policy.prefix_ids), prompt_lens, [s.num_tokens for s in out])
    result = {"seconds_median": secs, "seconds": times, "tokens_per_s": new_tokens / secs,
              "mfu": flops["model_flops"] / secs / peak, "first_call_seconds": first,
              "compile_seconds": first - secs,  # the first call minus a compiled call
              "fell_back_to_eager": bool(compiled_decode._failed)}
    log(f"  compiled, 64 rows: {new_tokens / secs:.1f} tok/s, MFU {result['mfu']:.3f}; first call {first:.1f} s "
        f"(compile included){' FELL BACK TO EAGER' if compiled_decode._failed else ''}")
    return result


def scoring_memory(b: Bench, prompts, conts) -> dict:
    """{"chunked": bytes, "whole": bytes}: peak memory of one score + backward, one fresh process each."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "rows.json"
        rows.write_text(json.dumps({"prefix": b.prefix, "prompts": prompts, "continuations": conts}))
        out = {}
        for mode in ("chunked", "whole"):
            proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scoring_memory.py"), str(rows),
                                   "--mode", mode], capture_output=True, text=True)
            if proc.returncode:  # the whole logits of 64 rows can exceed the machine: say so, keep the figure
                out[mode] = None
                out[f"{mode}_failed"] = f"exit {proc.returncode}" + (" (killed: out of memory?)"
                                                                      if proc.returncode == -9 else "")
                continue
            out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"]
        return out


def fig_scoring(b: Bench):
    """scoring_mfu: trice.modeling.scoring.score + backward of -sum(coefs * logp), LoRA, the 16 prompts with 64-token
    continuations (the sampling figure's, or sampled here)."""
    from trice.prompts import END_OF_RATIONALE, PLAIN
    from trice.generation.sampler import sample
    from trice.modeling.scoring import score

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
    prefix_len = len(policy.prefix_ids)
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
    from trice.modeling import scoring  # the frozen head's gradient in the forward (default) vs checkpointed chunks
    scoring.FROZEN_HEAD = False
    try:
        csecs, ctimes, _ = timed(fwd_bwd, b.args.reps)
    finally:
        scoring.FROZEN_HEAD = True
    # Peak memory of one score + backward, chunked LM head vs whole logits, each in a fresh process
    # (benchmarks/scoring_memory.py), for these 16 rows and for 64 (the logits grow with the rows).
    memory = scoring_memory(b, b.prompts, conts)
    wide = [PLAIN.prompt(e.question) for e in b.task.test[:64]]
    memory_64 = scoring_memory(b, wide, (conts * 4)[:64])
    mib = lambda v: "failed" if v is None else f"{v / 2 ** 20:.0f} MiB"  # noqa: E731
    log(f"  peak memory above rest, 16 rows: chunked {mib(memory['chunked'])}, whole logits {mib(memory['whole'])}; "
        f"64 rows: {mib(memory_64['chunked'])} vs {mib(memory_64['whole'])}")
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
        "checkpointed_head": {"seconds_median": csecs, "seconds": ctimes, "mfu": flops["model_flops"] / csecs / peak},
        "peak_memory_bytes_16_rows": memory, "peak_memory_bytes_64_rows": memory_64,
        "padded_tokens_computed": max(prefix_len - 1, 0) + len(conts) * (1 + max(prompt_lens) + max(cont_lens))})
    log(f"  fwd+bwd {secs:.2f} s ({achieved / 1e9:.1f} GFLOP/s; checkpointed head {csecs:.2f} s); forward only {fsecs:.2f} s "
        f"(MFU {fflops['model_flops'] / fsecs / peak:.3f})")


def fig_generate(b: Bench):
    """sampler_vs_generate: the plain model (no adapter) both ways; 64 prompts (the sampler's default decode
    batch, and one batch for generate), 64 forced tokens, temperature 1."""
    from trice.modeling import Policy
    from trice.prompts import PLAIN
    from trice.generation.sampler import DEFAULT_BATCH_SIZE, sample

    model, tok = b.fresh_model()
    shape = model_shape(model)
    peak = b.probe(shape)
    ids = torch.tensor(tok(b.prefix, add_special_tokens=False).input_ids, dtype=torch.long)
    policy = Policy(model, model, tok, "full", b.prefix, ids)  # plain model, hard prefix, nothing trainable
    gen = torch.Generator().manual_seed(0)
    prompts = [PLAIN.prompt(e.question) for e in b.task.test[:DEFAULT_BATCH_SIZE]]

    def ours():
        with no_stop_tokens():
            out = sample(policy, prompts, max_new_tokens=64, temperature=1.0, stop=(), generator=gen,
                         batch_size=len(prompts))
        return sum(s.num_tokens for s in out)

    tok.padding_side = "left"
    enc = tok([b.prefix + p for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
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
    prompt_lens = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]
    flops = sampling_flops(shape, len(ids), prompt_lens, [64] * len(prompts))
    b.record("generate", ours_tps / theirs_tps, {
        "ours_tokens_per_s": ours_tps, "generate_tokens_per_s": theirs_tps, "ours_seconds": t_ours,
        "generate_seconds": t_theirs, "ours_new_tokens": n_ours, "generate_new_tokens": n_theirs,
        "rows": len(prompts), "generate_input_width": int(enc.input_ids.shape[1]),
        "ours_mfu_plain": flops["model_flops"] / statistics.median(t_ours) / peak,
        "settings": "plain model; sampler stop=() with EOS disabled, generate min_new_tokens=max_new_tokens=64, "
                    "do_sample, temperature 1, top_k 0, top_p 1, left padding"})
    log(f"  ours {ours_tps:.1f} tok/s, generate {theirs_tps:.1f} tok/s")


def trice_step_times(b: Bench) -> dict:
    """One TRICE step as the trainer runs it: method.step (M=16 proposals, MH, estimator) + score of the
    L=16 terms + backward + Adam step; LoRA r=8 all-linear; n_train=32 (memory from the guide at set-up)."""
    from trice.config import TrainConfig
    from trice.methods import Context, make_method
    from trice.modeling import Policy
    from trice.generation.sampler import TorchSampler
    from trice.modeling.scoring import score

    model, tok = b.fresh_model()
    train_set = b.task.train[:32]
    config = TrainConfig(params="lora", batch_size=16, subsample=16, lr=1e-3, max_new_tokens=64, n_train=32,
                         method="trice")
    policy = Policy.create(model, tok, "lora", prefix_text=b.prefix, lora_r=8, lora_alpha=16,
                           lora_targets="all-linear")
    method = make_method("trice", b.exemplars)
    sampler = TorchSampler(policy, torch.Generator().manual_seed(0), max_new_tokens=64, batch_size=config.sample_batch_size)
    ctx = Context(policy, b.task, train_set, config, sampler, torch.Generator().manual_seed(1))
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
        sampler.on_update()  # as the trainer: LoRA re-merged for the next sampling
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
