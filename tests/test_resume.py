"""Never lose a run: SIGKILL at random steps and resume exactly; corrupt checkpoints; failed saves."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tiny import save_tiny_lm, write_exemplars
from trice.training.checkpoint import list_checkpoints, load_latest, save_checkpoint

HERE = Path(__file__).parent
STEPS = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    save_tiny_lm(root / "model")
    (root / "qa.jsonl").write_text("".join(json.dumps({"question": f"{i} + 3 =", "answer": str(i + 3)}) + "\n"
                                           for i in range(30)))
    write_exemplars(root / "ex.jsonl")
    return root


def train_args(root, out):
    return ["train", "--model", str(root / "model"), "--task", f"jsonl:{root / 'qa.jsonl'}",
            "--task-option", f"checker={HERE / 'lenient_checker.py'}:coin", "--exemplars", str(root / "ex.jsonl"),
            "--params", "lora", "--lr", "0.01", "--steps", str(STEPS), "--batch-size", "4", "--subsample", "3",
            "--max-new-tokens", "8", "--n-eval", "3", "--eval-every", "5", "--checkpoint-every", "1",
            "--threads", "1", "--seed", "3", "--out", str(out)]


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "trice.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def steps_logged(out: Path) -> int:
    path = out / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum('"loss"' in line for line in path.read_text().splitlines())


def comparable_metrics(out: Path):
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in rows]


def test_sigkill_at_random_steps_then_resume_matches_an_uninterrupted_run(setup, tmp_path):
    reference = tmp_path / "reference"
    proc = cli(*train_args(setup, reference))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    rng = random.Random(0)
    resumed_from = []
    for trial, target in enumerate(sorted(rng.sample(range(1, STEPS - 1), 3))):
        out = tmp_path / f"killed{trial}"
        proc = cli(*train_args(setup, out))
        deadline = time.time() + 300
        while steps_logged(out) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = steps_logged(out)
        assert killed_at < STEPS, "the run finished before it could be killed"
        saved = list_checkpoints(out / "checkpoints")
        resumed = cli("train", "--resume", str(out))
        assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
        if saved:  # it continued from the newest checkpoint rather than starting over
            assert f"resuming after step {int(saved[-1].name.split('-')[1])}" in " ".join(resumed.stderr.read().split())
            resumed_from.append(int(saved[-1].name.split('-')[1]))
        assert (out / "memory.jsonl").read_text() == (reference / "memory.jsonl").read_text()
        assert comparable_metrics(out) == comparable_metrics(reference)
        ours, theirs = load_file(out / "policy" / "adapter_model.safetensors"), \
            load_file(reference / "policy" / "adapter_model.safetensors")
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
        timeless = [{k: v for k, v in json.loads((d / "summary.json").read_text()).items() if k not in ("wall_seconds", "peak_rss_gb")}
                    for d in (out, reference)]
        assert timeless[0] == timeless[1]
    assert len(resumed_from) >= 2, resumed_from  # most kills land after a checkpoint


def test_sigterm_checkpoints_and_stops_with_a_one_line_message(setup, tmp_path):
    out = tmp_path / "term"
    args = train_args(setup, out)
    args[args.index("--checkpoint-every") + 1] = "0"  # only the signal writes a checkpoint
    proc = cli(*args)
    while steps_logged(out) < 2 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 2
    err = proc.stderr.read().strip().splitlines()[-1]
    assert err.startswith("error: stopped by SIGTERM") and "--resume" in err
    assert len(list_checkpoints(out / "checkpoints")) == 1


def test_corrupt_or_truncated_checkpoint_is_rejected_and_the_previous_one_used(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        save_checkpoint(root, step, {"step": step, "x": torch.arange(step)}, keep=3)
    newest = list_checkpoints(root)[-1]
    data = (newest / "state.pt").read_bytes()
    (newest / "state.pt").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.warns(RuntimeWarning, match="step-00000003.*truncated or corrupted"):
        path, state = load_latest(root)
    assert state["step"] == 2
    middle = list_checkpoints(root)[1]
    flipped = bytearray((middle / "state.pt").read_bytes())
    flipped[-10] ^= 0xFF  # same size, one corrupted byte
    (middle / "state.pt").write_bytes(bytes(flipped))
    (list_checkpoints(root)[0] / "manifest.json").write_text("{not json")
    with pytest.warns(RuntimeWarning):
        assert load_latest(root) is None


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    save_checkpoint(root, 1, {"step": 1})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        save_checkpoint(root, 2, {"step": 2})
    monkeypatch.undo()
    assert [p.name for p in root.iterdir()] == ["step-00000001"]  # no partial directory left
    assert load_latest(root)[1]["step"] == 1


def test_keeps_only_the_newest_checkpoints(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004", "step-00000005"]


class Crash(Exception):
    pass


@pytest.mark.parametrize("method", ["trice-full", "star", "rloo", "pt-direct", "trice-soft", "latro"])
def test_every_method_resumes_exactly_after_a_crash(tmp_path, monkeypatch, method):
    """A crash mid-run (here an exception in the scorer at step 5), then --resume: the same end
    state as an uninterrupted run, for each kind of method state (memory, STaR data, none)."""
    from tiny import coin_task, make_tiny_lm
    from trice import TrainConfig, train
    from trice.modeling import scoring as scorer

    def run(out, crash_at=None):
        model, tok = make_tiny_lm(0)
        calls = {"n": 0}
        real_score = scorer.score

        def score(*args, **kwargs):
            calls["n"] += 1
            if crash_at is not None and calls["n"] == crash_at:
                raise Crash
            return real_score(*args, **kwargs)

        monkeypatch.setattr(scorer, "score", score)
        config = TrainConfig(method=method, params="lora", lr=0.01, steps=8, batch_size=4, subsample=3, k=2,
                             star_inner_steps=3, max_new_tokens=6, n_eval=3, eval_every=4, checkpoint_every=1,
                             threads=1, out=str(out))
        try:
            return train(config, model=model, tokenizer=tok, task=coin_task(gold=True))
        finally:
            monkeypatch.setattr(scorer, "score", real_score)

    reference = run(tmp_path / "ref")
    with pytest.raises(Crash):
        run(tmp_path / "crashed", crash_at=5)
    model, tok = make_tiny_lm(0)
    resumed = train(model=model, tokenizer=tok, task=coin_task(gold=True), resume=str(tmp_path / "crashed"))
    for measured in ("wall_seconds", "peak_rss_gb"):  # the only fields that depend on the clock and the process
        resumed.pop(measured), reference.pop(measured)
    assert resumed == reference
    assert comparable_metrics(tmp_path / "crashed") == comparable_metrics(tmp_path / "ref")
    ours = load_file(tmp_path / "crashed" / "policy" / "adapter_model.safetensors")
    theirs = load_file(tmp_path / "ref" / "policy" / "adapter_model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
