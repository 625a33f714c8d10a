"""vllm_vs_engine: vLLM against trice's slot engine and ``generate``, on the same work (issue 25).

The packaged SmolLM2-135M-Instruct (float32, no adapter), the bench's 3-shot prefix and chain_sum prompts, 16
and 64 rows, exactly 64 new tokens per row (EOS and stop strings off on every side), temperature 1; vLLM in this
process (as ``--sampler vllm`` runs it) from the dequantised copy of the same weights. Runs where vLLM is
importable (``make bench`` runs it in .venv-vllm, with OpenMP's spin-waiting off, as the CLI sets it for
vLLM); the figure is vLLM's tokens/s / the slot engine's at 64 rows, the table every side at 16 and 64 rows,
and the seconds one weight push takes (``push_seconds``, LoRA and full weights), which a training step adds.
"""

from __future__ import annotations

import statistics
import time

import torch

from bench_common import Bench, log, no_stop_tokens

NEW_TOKENS = 64


def fig_vllm(b: Bench):
    """vllm_vs_engine: vLLM's tokens/s over the slot engine's (and generate's), 16 and 64 rows, 64 tokens each."""
    try:
        import vllm
        from vllm import LLM, SamplingParams
    except ImportError as exc:
        b.record("vllm", None, {"skipped": f"vLLM is not importable here ({exc}): make bench runs it in .venv-vllm"})
        return
    from trice.generation.sampler import sample
    from trice.generation.vllm_sampler import engine_args, on_cpu
    from trice.modeling import Policy
    from trice.modeling.loading import hf_directory
    from trice.prompts import PLAIN

    model, tok = b.fresh_model()
    ids = torch.tensor(tok(b.prefix, add_special_tokens=False).input_ids, dtype=torch.long)
    policy = Policy(model, model, tok, "full", b.prefix, ids)  # plain model, hard prefix, nothing trainable
    prompts = [PLAIN.prompt(e.question) for e in b.task.test[:64]]
    prefix_ids = ids.tolist()
    requests = [{"prompt_token_ids": prefix_ids + tok(p, add_special_tokens=False).input_ids} for p in prompts]
    longest = max(len(r["prompt_token_ids"]) for r in requests) + NEW_TOKENS
    t0 = time.perf_counter()
    llm = LLM(**engine_args(hf_directory("smollm2-135m", "float32"), dtype="float32", seed=0, soft_prompt=False,
                            max_model_len=longest + 16, rows=64, cpu=on_cpu(vllm), gpu_memory_utilization=0.3))
    build = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    tok.padding_side = "left"

    def runner(kind, rows):
        if kind == "vllm":
            params = [SamplingParams(temperature=1.0, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS, ignore_eos=True,
                                     seed=i) for i in range(rows)]
            return lambda: sum(len(o.outputs[0].token_ids) for o in llm.generate(requests[:rows], params, use_tqdm=False))
        if kind == "slots":
            def slots():
                with no_stop_tokens():
                    out = sample(policy, prompts[:rows], max_new_tokens=NEW_TOKENS, temperature=1.0, stop=(),
                                 generator=gen, batch_size=rows, engine="slots")
                return sum(s.num_tokens for s in out)
            return slots
        enc = tok([b.prefix + p for p in prompts[:rows]], return_tensors="pt", padding=True, add_special_tokens=False)

        def generate():
            out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_new_tokens=NEW_TOKENS,
                                 max_new_tokens=NEW_TOKENS, pad_token_id=tok.pad_token_id)
            return int((out.shape[1] - enc.input_ids.shape[1]) * out.shape[0])
        return generate

    table = {}
    for rows in (16, 64):
        runs = {kind: runner(kind, rows) for kind in ("vllm", "slots", "generate")}
        for run in runs.values():
            run()  # warm-up
        times = {kind: [] for kind in runs}
        counts = {}
        for _ in range(b.args.reps):  # interleaved, so that machine noise hits every side alike
            for kind, run in runs.items():
                t0 = time.perf_counter()
                counts[kind] = run()
                times[kind].append(time.perf_counter() - t0)
        table[rows] = {kind: counts[kind] / statistics.median(times[kind]) for kind in runs}
        log(f"  {rows} rows: " + ", ".join(f"{kind} {tps:.0f} tok/s" for kind, tps in table[rows].items()))
    push = {}
    for params in ("lora", "full"):  # a training step's weight push (LoRA merged out of place; full as is)
        from trice.generation.vllm_sampler import VLLMSampler

        m, t = b.fresh_model()
        sampler = VLLMSampler(Policy.create(m, t, params=params, prefix_text=b.prefix), "smollm2-135m", llm=llm)
        times = []
        for _ in range(b.args.reps + 1):
            t0 = time.perf_counter()
            sampler.push()
            times.append(time.perf_counter() - t0)
        push[params] = statistics.median(times[1:])
        log(f"  push {params}: {push[params]:.2f} s")
    value = table[64]["vllm"] / table[64]["slots"]
    b.record("vllm", value, {"tokens_per_second": table, "vllm_version": vllm.__version__,
                             "vllm_platform": "cpu" if on_cpu(vllm) else "cuda", "engine_build_seconds": build,
                             "push_seconds": push,
                             "dtype": "float32", "new_tokens_per_row": NEW_TOKENS,
                             "vllm_vs_generate_64_rows": table[64]["vllm"] / table[64]["generate"]})
