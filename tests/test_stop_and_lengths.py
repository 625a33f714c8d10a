"""A run stops promptly on one SIGINT/SIGTERM in any phase, and prompts that cannot fit the model's
context are dropped (or refused) at load instead of hanging a forward pass."""

import json
import os
import signal
import time

import pytest

import trice.generation.slot_engine as engine
from tiny import coin_task, make_tiny_lm
from trice import TrainConfig, train
from trice.errors import TriceError
from trice.tasks import Example


def config(tmp_path, **kw):
    base = dict(params="lora", lr=1e-2, steps=6, batch_size=4, subsample=4, max_new_tokens=8, n_eval=6,
                out=str(tmp_path / "run"), threads=1, seed=0, checkpoint_every=0, sample_batch_size=2)
    return TrainConfig(**{**base, **kw})


def signal_on_decode(monkeypatch, when):
    """Send this process SIGTERM from inside the engine's decode step when ``when()`` is true; count
    the decode steps run after it."""
    after = []
    original = engine._Engine.decode

    def decode(self):
        if after or when():
            after.append(1)
            if len(after) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
        return original(self)

    monkeypatch.setattr(engine._Engine, "decode", decode)
    return after


def test_a_signal_during_memory_initialisation_ends_the_run_within_a_decode_step(tmp_path, monkeypatch):
    calls = []
    after = signal_on_decode(monkeypatch, lambda: calls.append(1) or len(calls) == 3)
    model, tok = make_tiny_lm(0)
    t0 = time.perf_counter()
    with pytest.raises(TriceError, match="stopped by SIGTERM during initialisation .*no checkpoint"):
        train(config(tmp_path), model=model, tokenizer=tok, task=coin_task(n_train=200))
    assert len(after) == 1  # the step the signal arrived in finished; no further decode step ran
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_signal_during_evaluation_checkpoints_and_the_run_resumes(tmp_path, monkeypatch):
    from trice.evaluation import accuracy as training_utils

    evaluating = []
    original = training_utils.greedy_accuracy

    def greedy_accuracy(*args, **kwargs):
        evaluating.append(1)
        try:
            return original(*args, **kwargs)
        finally:
            evaluating.pop()

    monkeypatch.setattr(training_utils, "greedy_accuracy", greedy_accuracy)
    step_lines = lambda: [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
                          if '"step"' in line and '"event"' not in line]  # noqa: E731
    # the evaluation at step 3 (eval_every 3) gets the signal
    after = signal_on_decode(monkeypatch, lambda: bool(evaluating) and len(step_lines()) == 3)
    model, tok = make_tiny_lm(0)
    with pytest.raises(TriceError, match=r"stopped by SIGTERM after step 3; continue with `trice train --resume"):
        train(config(tmp_path, eval_every=3), model=model, tokenizer=tok, task=coin_task())
    assert len(after) == 1
    assert (tmp_path / "run" / "checkpoints" / "step-00000003").is_dir()
    monkeypatch.undo()
    model, tok = make_tiny_lm(0)
    summary = train(resume=str(tmp_path / "run"), model=model, tokenizer=tok, task=coin_task())
    assert summary["steps_done"] == 6 and [s["step"] for s in step_lines()] == [1, 2, 3, 4, 5, 6]


def test_questions_longer_than_the_context_are_dropped_with_one_warning_or_refused(tmp_path):
    task = coin_task(n_train=12)
    long_question = "x " * 2100  # the tiny model has 4096 positions (one token per character)
    task.train[5] = Example(long_question, "1")
    task.test[2] = Example(long_question, "1")
    model, tok = make_tiny_lm(0)
    with pytest.warns(RuntimeWarning, match=r"1 of 12 training examples do not fit in the model's context of 4096 "
                                            r"tokens .* \(the first, #5, needs \d+\); dropped"):
        summary = train(config(tmp_path, steps=2, n_eval=0), model=model, tokenizer=tok, task=task)
    assert summary["steps_done"] == 2
    memory = (tmp_path / "run" / "memory.jsonl").read_text().splitlines()
    assert len(memory) == 11
    model, tok = make_tiny_lm(0)
    with pytest.raises(TriceError, match="do not fit in the model's context.*--on-too-long drop"):
        train(config(tmp_path, out=str(tmp_path / "r2"), on_too_long="error"), model=model, tokenizer=tok,
              task=task)


def test_the_exemplar_search_never_runs_a_question_that_cannot_fit(tmp_path, monkeypatch):
    """24 questions, 12 of them 60,000 characters long (60,000 tokens here, past the tiny model's 4,096), and no
    exemplars: the exemplar search, the memory and the evaluations see only questions that fit (before this,
    the search ran the long ones, and a 135M model was killed by the kernel at 24 GB). The run ends with one
    warning per set and a trained step."""
    from trice.generation import sampler as sampler_module
    from trice.methods import initialisation

    rows = [{"question": ("x " * 30_000 if i % 2 else f"{i} + 1 ="), "answer": str(i + 1)} for i in range(24)]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    searched, widest = [], []
    real_find = initialisation.find_exemplars
    real_sample = sampler_module.sample

    def find_exemplars(sampler, task, candidates, num, *args, **kwargs):
        searched.extend(candidates)
        # a tiny random model writes no correct rationale: search (so its forward passes run), then supply some
        try:
            return real_find(sampler, task, candidates, num, *args, **kwargs)
        except TriceError:
            return [Example(e.question, e.answer, rationale=f"So the answer is {e.answer}.") for e in candidates[:num]]

    def sample(policy, prompts, **kwargs):
        widest.append(max(len(policy.tokenizer(p).input_ids) for p in prompts) + len(policy.prefix_embeds()))
        return real_sample(policy, prompts, **kwargs)

    monkeypatch.setattr("trice.training.setup.find_exemplars", find_exemplars)
    monkeypatch.setattr(sampler_module, "sample", sample)
    model, tok = make_tiny_lm(0)
    with pytest.warns(RuntimeWarning, match=r"do not fit in the model's context of 4096 tokens"):
        summary = train(TrainConfig(task=f"jsonl:{data}", params="lora", steps=1, batch_size=4, subsample=4,
                                    max_new_tokens=8, n_eval=4, threads=1, out=str(tmp_path / "run")),
                        model=model, tokenizer=tok)
    assert searched and all(len(e.question) < 100 for e in searched)
    assert widest and max(widest) < 4096  # no sampling call (search, memory, evaluation) saw a long question
    assert summary["steps_done"] == 1 and summary["n_eval"] >= 1
