"""A short end-to-end check of the torch path on a GPU (``make gpu-check``), runnable on the CPU too.

No weights can be downloaded on a GPU machine, so the model is built from Qwen2.5-0.5B's config
(24 layers, d 896, 14 query / 2 key-value heads, vocabulary 151,936), randomly initialised, in
bfloat16 on CUDA (float32 on the CPU); its tokenizer is a character-level one padded to the model's
vocabulary. The check:

1. runs a few TRICE training steps end to end, LoRA and soft prompt, on chain_sum questions with a coin-flip
   check (a random model never answers right; see coin_task) (memory initialisation, proposals,
   the MH step, scoring, backward, the optimiser, a held-out evaluation);
2. reports sampled tokens/s of trice's sampler against ``model.generate`` with the same prompts and
   lengths (64 rows, every row forced to max_new_tokens);
3. reports the scoring MFU (score + backward, LoRA) against the device's measured matmul peak;
4. reports peak memory.

    python benchmarks/gpu_check.py [--tiny] [--out gpu-check.json]

``--tiny`` shrinks the model to seconds on a CPU (the test suite runs it so).
"""

from __future__ import annotations

import argparse
import json
import resource
import string
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import HAND_EXEMPLARS, no_stop_tokens, scoring_flops  # noqa: E402

QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=True)


def build(tiny: bool, device: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    shape = TINY if tiny else QWEN25_05B
    chars = sorted(set(string.printable) - set("\t\r\x0b\x0c"))
    names = ["<pad>", "</s>", "<unk>"] + chars
    names += [f"<t{i}>" for i in range(shape["vocab_size"] - len(names))]  # fill the model's vocabulary
    tok = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(names)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    config = Qwen2Config(**shape, pad_token_id=0, eos_token_id=1, bos_token_id=None, use_sliding_window=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    model.eval()
    return model, tokenizer


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype) -> float:
    n = 8192 if device.startswith("cuda") else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def profile_to(path: Path, fn, device: str) -> None:
    """torch.profiler tables of one call of ``fn``: by time, and by memory allocated."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.startswith("cuda")
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []),
                 profile_memory=True) as prof:
        fn()
    table = prof.key_averages()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table.table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=30) + "\n\n"
                    + table.table(sort_by="self_cuda_memory_usage" if cuda else "self_cpu_memory_usage",
                                  row_limit=15))


def coin_task():
    """Sums of two or three one-digit numbers (chain_sum's easiest questions, generated here so that the GPU
    image needs no reasoning-gym), with a check a random model passes half the time (the rationale's
    character codes sum to an even number): a model with random weights never answers right, and TRICE
    would then score nothing; with this check proposals are accepted and rejected, and every step scores
    and backpropagates."""
    import random

    from trice.tasks import Example, Task

    class Coin(Task):
        def check(self, rationale, example):
            return sum(map(ord, rationale)) % 2 == 0

    rng = random.Random(0)

    def question():
        terms = [rng.randint(0, 9) for _ in range(rng.randint(2, 3))]
        return Example(" + ".join(map(str, terms)) + " =", str(sum(terms)))

    return Coin("coin-sums", [question() for _ in range(64)], [question() for _ in range(16)])


def train_steps(model_fn, params: str, steps: int, out: Path, device: str) -> dict:
    from trice import TrainConfig, train
    from trice.methods.initialisation import save_exemplars
    from trice.tasks import Example

    model, tok = model_fn()
    task = coin_task()
    exemplars = out / "exemplars.jsonl"
    save_exemplars([Example(q, a, rationale=r) for q, r, a in HAND_EXEMPLARS], exemplars)
    config = TrainConfig(params=params, method="trice", steps=steps, batch_size=8, subsample=8, max_new_tokens=32,
                         n_train=64, n_eval=16, exemplars=str(exemplars), out=str(out / params), device=device,
                         checkpoint_every=0, lr=1e-3 if params == "lora" else 0.03)
    t0 = time.perf_counter()
    summary = train(config, model=model, tokenizer=tok, task=task)
    return {"steps_done": summary["steps_done"], "tokens_sampled": summary["tokens_sampled"],
            "sequences_scored": summary["sequences_scored"], "seconds": time.perf_counter() - t0,
            "accuracy_after": summary["greedy_accuracy_after"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model (CPU test)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="gpu-check.json")
    parser.add_argument("--score-batch-size", type=int, default=16, help="rows per scoring forward + backward")
    parser.add_argument("--profile-dir", default=None,
                        help="write torch.profiler tables of one sampling call and one scoring pass here")
    args = parser.parse_args(argv)
    from trice.modeling import Policy
    from trice.prompts import END_OF_RATIONALE, PLAIN
    from trice.generation.sampler import sample
    from trice.modeling.scoring import weighted_backward
    from trice.tasks import Example

    device = args.device
    from trice.modeling import resolve_dtype

    report = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
              "auto_dtype": str(resolve_dtype("auto", device)),
              "model": "tiny Qwen2" if args.tiny else "Qwen2.5-0.5B shape, random weights",
              "torch": torch.__version__}
    print(f"gpu-check on {report['device']} ({report['model']})", flush=True)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    # 1. TRICE end to end, LoRA and soft prompt
    with tempfile.TemporaryDirectory() as tmp:
        for params in ("lora", "prompt"):
            report[f"train_{params}"] = r = train_steps(lambda: build(args.tiny, device), params, args.steps,
                                                        Path(tmp), device)
            print(f"  TRICE {params}: {r['steps_done']} steps, {r['tokens_sampled']} tokens sampled, "
                  f"{r['seconds']:.1f} s", flush=True)

    # 2. sampler vs generate, same prompts and lengths
    model, tok = build(args.tiny, device)
    exemplars = [Example(q, a, rationale=r) for q, r, a in HAND_EXEMPLARS]
    prefix = PLAIN.prefix(exemplars)
    prompts = [PLAIN.prompt(f"State the final answer to the following arithmetic problem: {i % 9} + {i % 7} =")
               for i in range(args.rows)]
    policy = Policy.create(model, tok, "lora", prefix_text=prefix)
    n = args.new_tokens

    def ours(engine="slots", copies=1):
        with no_stop_tokens():
            out = sample(policy, prompts * copies, max_new_tokens=n, temperature=1.0, stop=(),
                         batch_size=args.rows * copies, generator=torch.Generator().manual_seed(0), engine=engine)
        sync(device)
        return sum(s.num_tokens for s in out)

    tok.padding_side = "left"
    enc = tok([prefix + p for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False).to(device)

    def theirs():
        with torch.no_grad():
            out = policy.model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_new_tokens=n,
                                        max_new_tokens=n, pad_token_id=tok.pad_token_id)
        sync(device)
        return int((out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0])

    timings = {}
    runs = (("ours", ours), ("generate", theirs), ("plain", lambda: ours("plain")),
            ("ours_4x_rows", lambda: ours(copies=4)), ("plain_4x_rows", lambda: ours("plain", copies=4)),
            ("compiled", lambda: ours("compiled")), ("compiled_4x_rows", lambda: ours("compiled", copies=4)))
    first_call = {}
    for name, fn in runs:
        t0 = time.perf_counter()
        fn()  # warm-up (the compiled engine compiles its step here: timed)
        first_call[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        count = fn()
        timings[name] = count / (time.perf_counter() - t0)
    report["sampled_tokens_per_s"] = timings["ours"]
    report["generate_tokens_per_s"] = timings["generate"]
    report["sampler_vs_generate"] = timings["ours"] / timings["generate"]
    report["plain_sampler_tokens_per_s"] = timings["plain"]
    report[f"sampled_tokens_per_s_{4 * args.rows}_rows"] = timings["ours_4x_rows"]
    report[f"plain_sampler_tokens_per_s_{4 * args.rows}_rows"] = timings["plain_4x_rows"]
    report["compiled_sampler_tokens_per_s"] = timings["compiled"]
    report[f"compiled_sampler_tokens_per_s_{4 * args.rows}_rows"] = timings["compiled_4x_rows"]
    report["compiled_first_call_seconds"] = {k: first_call[k] for k in ("compiled", "compiled_4x_rows")}
    if device.startswith("cuda"):  # what engine="auto" will run on this GPU (trice.generation.engine_choice)
        from trice.generation import engine_choice

        report["engine_choice"] = engine_choice.record(report["device"], {
            "plain": {args.rows: timings["plain"], 4 * args.rows: timings["plain_4x_rows"]},
            "compiled": {args.rows: timings["compiled"], 4 * args.rows: timings["compiled_4x_rows"]},
            "slots": {args.rows: timings["ours"], 4 * args.rows: timings["ours_4x_rows"]}})
        print(f"  engine auto on this GPU: {report['engine_choice']['engine']} (kept in "
              f"{engine_choice.choices_path()})", flush=True)
    print(f"  sampling: {timings['ours']:.0f} tok/s, generate {timings['generate']:.0f} tok/s "
          f"({report['sampler_vs_generate']:.2f}x), plain path {timings['plain']:.0f} tok/s; "
          f"{4 * args.rows} rows: {timings['ours_4x_rows']:.0f} tok/s, plain {timings['plain_4x_rows']:.0f}; compiled "
          f"{timings['compiled']:.0f} and {timings['compiled_4x_rows']:.0f} tok/s (first calls, compile included: "
          f"{first_call['compiled']:.1f} s, {first_call['compiled_4x_rows']:.1f} s)",
          flush=True)
    if args.profile_dir:  # where one sampling call's time goes (CPU-side overhead: CPU total >> CUDA total)
        profile_to(Path(args.profile_dir) / "sampling-profile.txt", ours, device)

    # 3. scoring MFU: score + backward of the sampled rows (LoRA)
    with no_stop_tokens():
        texts = [s.text + END_OF_RATIONALE for s in sample(policy, prompts, max_new_tokens=n, temperature=1.0,
                                                           stop=(), batch_size=args.rows)]
    params = policy.trainable_parameters()

    coefs = torch.full((len(texts),), -1.0 / len(texts))

    def fwd_bwd():  # as a training step scores: score_batch_size rows per forward + backward
        for p in params:
            p.grad = None
        weighted_backward(policy, prompts, texts, coefs, batch_size=args.score_batch_size)  # (loss, tokens)
        sync(device)

    fwd_bwd()
    if args.profile_dir:
        profile_to(Path(args.profile_dir) / "scoring-profile.txt", fwd_bwd, device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fwd_bwd()
    secs = time.perf_counter() - t0
    if device.startswith("cuda"):
        report["scoring_peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    c = model.config
    shape = {"n_nonembedding": sum(p.numel() for name, p in model.named_parameters()
                                   if "embed_tokens" not in name and "lm_head" not in name and "lora_" not in name),
             "d_model": c.hidden_size, "vocab": c.vocab_size, "layers": c.num_hidden_layers,
             "attn_width": c.num_attention_heads * (c.hidden_size // c.num_attention_heads)}
    lens = lambda xs: [len(tok(x, add_special_tokens=False).input_ids) for x in xs]  # noqa: E731
    flops = scoring_flops(shape, sum(p.numel() for p in params), len(policy.prefix_ids), lens(prompts), lens(texts))
    peak = matmul_peak(device, next(model.parameters()).dtype)
    report["scoring_seconds"] = secs
    report["matmul_peak_flops_per_s"] = peak
    report["scoring_mfu"] = flops["model_flops"] / secs / peak
    print(f"  scoring: {secs:.3f} s for {len(texts)} rows, MFU {report['scoring_mfu']:.3f} "
          f"(peak {peak / 1e12:.1f} TFLOP/s)", flush=True)

    # 4. peak memory (GPU: of the scoring pass, the stats were reset before it)
    if device.startswith("cuda"):
        report["peak_gpu_memory_gib"] = report["scoring_peak_gpu_memory_gib"]
    report["peak_host_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f"  peak memory: {report.get('peak_gpu_memory_gib', float('nan')):.2f} GiB GPU, "
          f"{report['peak_host_rss_gib']:.2f} GiB host RSS", flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
