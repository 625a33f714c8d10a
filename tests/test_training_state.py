"""TrainingState's snapshot/restore pair: a restore brings back every field a snapshot holds."""

import random

import torch

from tiny import coin_task, make_tiny_lm
from trice import TrainConfig
from trice.methods import Context, make_method
from trice.model import Policy
from trice.run import RunDir
from trice.sampler import TorchSampler
from trice.training_state import TrainingState


def build(tmp_path):
    config = TrainConfig(params="lora", batch_size=4, subsample=4, max_new_tokens=6, out=str(tmp_path / "run"),
                         steps=5)
    model, tok = make_tiny_lm(0)
    policy = Policy.create(model, tok, "lora", prefix_text="1 + 1 = 2. So the answer is 2.\n\n")
    rngs = {"sampler": torch.Generator().manual_seed(0), "resampler": torch.Generator().manual_seed(1)}
    optimizer = torch.optim.Adam(policy.trainable_parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    t = TrainingState(policy, make_method("trice", list(coin_task().exemplars)),
                      TorchSampler(policy, rngs["sampler"], max_new_tokens=6, batch_size=4), optimizer, scheduler,
                      rngs, random.Random(0), RunDir.create(config), config)
    task = coin_task()
    t.method.setup(Context(policy, task, task.train, config, t.sampler, rngs["resampler"]))
    return t, task


def perturb(t, task):
    """Change every piece of state a step changes."""
    ctx = Context(t.policy, task, task.train, t.config, t.sampler, t.rngs["resampler"])
    weighted = t.method.step(ctx, [0, 1, 2, 3])  # samples, MH step on the memory, resampler draw
    t.optimizer.zero_grad()
    assert weighted.prompts is not None
    sum(p.sum() for p in t.params).backward()
    t.optimizer.step()
    t.scheduler.step()
    t.loop.step, t.loop.sequences_scored, t.loop.order = 7, 99, [3, 1]
    t.loop.variance.update(t.params)
    t.order_rng.random()
    random.random()
    torch.rand(3)
    t.run.log({"step": 7})


def same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if hasattr(a, "__array__"):
        import numpy as np

        return np.array_equal(a, b)
    return a == b


def test_restore_brings_back_every_field(tmp_path):
    t, task = build(tmp_path)
    saved = t.snapshot()
    perturb(t, task)
    changed = [k for k in saved if k != "seconds_elapsed" and not same(saved[k], t.snapshot()[k])]
    assert set(changed) >= {"params", "optimizer", "scheduler", "method", "loop", "tokens_sampled", "rngs",
                            "metrics_bytes"}  # the perturbation reaches every field, so the test can fail
    t.restore(saved)
    again = t.snapshot()
    for key in saved:
        if key != "seconds_elapsed":
            assert same(saved[key], again[key]), key
    assert abs(again["seconds_elapsed"] - saved["seconds_elapsed"]) < 1.0
