"""TrainingState's snapshot/restore pair: a restore brings back every field a snapshot holds."""

import random

import numpy as np
import torch

from tiny import coin_task, make_tiny_lm
from trice import TrainConfig
from trice.methods import Context, make_method
from trice.modeling import Policy
from trice.artifacts.run_dir import RunDir
from trice.generation.sampler import TorchSampler
from trice.training.state import FIELDS, TrainingState


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
    """Change every piece of state a step changes, and every loop counter, generator and clock besides."""
    ctx = Context(t.policy, task, task.train, t.config, t.sampler, t.rngs["resampler"])
    weighted = t.method.step(ctx, [0, 1, 2, 3])  # samples, MH step on the memory, resampler draw
    t.optimizer.zero_grad()
    assert weighted.prompts is not None
    sum(p.sum() for p in t.params).backward()
    t.optimizer.step()
    t.scheduler.step()
    t.loop.step, t.loop.sequences_scored, t.loop.order = 7, 99, [3, 1]
    t.loop.tokens_scored, t.loop.tokens_forward, t.loop.next_curve_point, t.loop.bad_steps = 1234, 56, 4, 2
    t.loop.step_costs = [11.0, 12.0]
    t.loop.accuracy_before, t.loop.verdicts_before, t.loop.last_eval = 0.25, [True, False], (7, 0.5, [True])
    t.loop.variance.update(t.params)
    t.sampler.tokens += 1000
    t.rngs["sampler"].manual_seed(1234)  # whatever the step drew, the generators are elsewhere now
    t.rngs["resampler"].manual_seed(5678)
    t.order_rng.random()
    random.random()
    np.random.rand()
    torch.rand(3)
    t.run.log({"step": 7})
    t.started -= 100.0  # 100 s more elapsed


def draws(t):
    """One draw from every generator a snapshot holds (this advances them)."""
    return (random.random(), float(np.random.rand()), torch.rand(2).tolist(), t.order_rng.random(),
            torch.rand(2, generator=t.rngs["sampler"]).tolist(), torch.rand(2, generator=t.rngs["resampler"]).tolist())


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


def test_the_fields_table():
    """snapshot() and restore() walk one table (its names are the snapshot's keys: checked below); only the
    config (read back from config.yaml) is saved without being put back."""
    names = [name for name, _, _ in FIELDS]
    assert len(set(names)) == len(names)
    assert [name for name, _, put_back in FIELDS if put_back is None] == ["config"]
    assert all(callable(capture) for _, capture, _ in FIELDS)


def test_restore_brings_back_every_field(tmp_path):
    t, task = build(tmp_path)
    saved = t.snapshot()
    assert list(saved) == [name for name, _, _ in FIELDS]  # the snapshot's keys are the table's names
    metrics_before = t.run.metrics()
    expected_draws = draws(t)  # what the generators give from the snapshot on
    t.restore(saved)  # (the draws above moved them)
    perturb(t, task)
    perturbed = t.snapshot()
    changed = [k for k in saved if not same(saved[k], perturbed[k])]
    # the perturbation reaches every field but the config, so the test can fail on any of them
    assert set(changed) == set(saved) - {"config"}, set(saved) - set(changed)
    assert perturbed["seconds_elapsed"] - saved["seconds_elapsed"] >= 100.0
    for part in ("loop", "rngs"):  # and every loop counter and every generator on its own
        assert [k for k in saved[part] if same(saved[part][k], perturbed[part][k])] == [], part
    assert set(saved["rngs"]) == {"python", "numpy", "torch", "order", "sampler", "resampler"}
    assert not same(saved["method"]["memory"], perturbed["method"]["memory"])
    assert not same(saved["method"]["recent_acceptance"], perturbed["method"]["recent_acceptance"])

    t.restore(saved)
    again = t.snapshot()
    for key in saved:
        if key != "seconds_elapsed":
            assert same(saved[key], again[key]), key
    assert abs(again["seconds_elapsed"] - saved["seconds_elapsed"]) < 1.0
    # restored in the live objects, not only in what a snapshot reads back
    assert draws(t) == expected_draws
    assert t.run.metrics() == metrics_before
    assert t.sampler.tokens == saved["tokens_sampled"]
    assert t.method.memory.rationales == saved["method"]["memory"]["rationales"]
    assert all(torch.equal(p, v) for p, v in zip(t.params, saved["params"]))
    assert t.scheduler.last_epoch == saved["scheduler"]["last_epoch"]
    assert t.optimizer.param_groups[0]["lr"] == saved["optimizer"]["param_groups"][0]["lr"]
