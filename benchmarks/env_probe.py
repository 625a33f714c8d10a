"""Seconds of one sampling call (64 rows x 64 tokens) and one score + backward (16 rows) of bench.py's LoRA policy,
medians of 3, under this process's environment: an A/B of an environment setting, each side a fresh process.

    .venv/bin/python benchmarks/env_probe.py; OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/env_probe.py
"""
import os, sys, statistics, time, types
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from bench_common import Bench, no_stop_tokens
from trice.prompts import PLAIN, END_OF_RATIONALE
from trice.generation.sampler import sample
from trice.modeling.scoring import score

b = Bench(types.SimpleNamespace(out=os.devnull))
policy = b.lora_policy()
prompts = [PLAIN.prompt(e.question) for e in b.task.test[:64]]
def samp():
    return sample(policy, prompts, max_new_tokens=64, temperature=1.0, stop=(), generator=torch.Generator().manual_seed(0), batch_size=64)
with no_stop_tokens():
    out = samp()
    ts = []
    for _ in range(3):
        t0 = time.perf_counter(); samp(); ts.append(time.perf_counter() - t0)
conts = [s.text + END_OF_RATIONALE for s in out[:16]]
def sc():
    loss = -score(policy, prompts[:16], conts).mean(); loss.backward()
    for p in policy.trainable_parameters(): p.grad = None
sc()
us = []
for _ in range(3):
    t0 = time.perf_counter(); sc(); us.append(time.perf_counter() - t0)
print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}: sampling {statistics.median(ts):.2f} s {ts} scoring {statistics.median(us):.2f} s {us}")
