"""The training loop, read top to bottom (ALGORITHM.md sections 2-4); the same for every method.

>>> from trice import TrainConfig, train  # doctest: +SKIP
>>> summary = train(TrainConfig(params="lora", steps=100, out="runs/demo"))  # doctest: +SKIP
>>> summary["greedy_accuracy_before"], summary["greedy_accuracy_after"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import threading
import time
import warnings

import numpy as np
import torch

from .checkpoint import load_latest, save_checkpoint
from .config import TrainConfig
from .distributed import default_device, init as init_distributed
from .errors import TriceError
from .evaluate import self_consistency_accuracy, standard_error
from .initialise import find_exemplars, load_exemplars, save_exemplars
from .loop_state import LoopState, restore_rngs, rng_states
from .methods import Context, make_method
from .model import Policy, load_model
from .prompts import exemplar_prefix
from .run import RunDir
from .sampler import TorchSampler
from .scorer import score
from .tasks import Task, get_task
from .training_utils import (console, cosine_schedule, evaluate_and_log, grad_norm, lora_targets, paired_z,
                             progress_bar)


def train(config: TrainConfig | None = None, *, model=None, tokenizer=None, task: Task | None = None,
          resume: str | None = None) -> dict:
    """Train as ``config`` says, or continue the run in directory ``resume`` exactly where its last
    good checkpoint left it; returns the summary (also written to the run directory).

    ``model``/``tokenizer``/``task`` may be passed in to skip loading them (tests, notebooks).
    """
    started = time.perf_counter()
    if resume is not None:
        config = RunDir(resume).config()
        config.out = str(resume)
    config.validate()
    here = init_distributed(config.device)  # rank and world size under torchrun / accelerate launch; 0 of 1 otherwise
    console.quiet = not here.is_main
    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    rngs = {"sampler": torch.Generator().manual_seed(config.seed),  # proposals, memory init, evaluation
            "resampler": torch.Generator().manual_seed(config.seed + 1)}  # the subsample
    order_rng = random.Random(config.seed)  # epoch-wise minibatch order

    # --- task and model ---------------------------------------------------------------------
    task = task or get_task(config.task, data_dir=config.data_dir, seed=config.seed, **config.task_options)
    train_set = task.train[:config.n_train] if config.n_train else task.train
    test_set = task.test[:config.n_eval] if config.n_eval else []
    if len(train_set) < config.batch_size:
        raise TriceError(f"task {task.name} has {len(train_set)} training examples, fewer than "
                         f"batch_size (M) = {config.batch_size}")
    if config.n_eval and not test_set:
        raise TriceError(f"task {task.name} has no test examples to evaluate on (set --n-eval 0)")
    checkpoint = load_latest(RunDir(resume).checkpoints_path) if resume is not None else None
    if model is None:
        model, tokenizer = load_model(config.model, config.dtype, config.device or default_device())
    if not checkpoint and not config.out:  # one timestamped directory for every rank
        config = dataclasses.replace(config, out=here.broadcast(RunDir.default_path(config)))
    run = RunDir.open(resume, here.is_main) if checkpoint else RunDir.create(config, here.is_main)
    here.barrier()  # the run directory exists before any rank uses it
    console.print(f"[bold]trice[/] {config.method} on {task.name}: {len(train_set)} train, "
                  f"{len(test_set)} held-out; run directory {run.path}"
                  + (f"; resuming after step {checkpoint[1]['loop']['step']}" if checkpoint else ""))

    with progress_bar() as progress, _StopOnSignal() as stop:
        # --- initialisation: exemplars, the policy, then the method's own (TRICE: the memory) ---
        t0 = time.perf_counter()
        untuned = Policy(model, model, tokenizer, "full", "", torch.zeros(0, dtype=torch.long))
        if checkpoint:
            exemplars = load_exemplars(run.exemplars_path)
        elif config.exemplars:
            exemplars = load_exemplars(config.exemplars)
        elif task.exemplars:
            exemplars = list(task.exemplars)
        else:
            search = TorchSampler(untuned, rngs["sampler"], max_new_tokens=config.max_new_tokens,
                                  batch_size=config.sample_batch_size)
            exemplars = find_exemplars(search, task, train_set, config.num_exemplars, config.exemplar_search)
        exemplars = exemplars[:config.num_exemplars]
        policy = Policy.create(model, tokenizer, config.params, prefix_text=exemplar_prefix(exemplars),
                               lora_r=config.lora_r, lora_alpha=config.lora_alpha,
                               lora_targets=lora_targets(config.lora_targets))
        method = make_method(config.method, exemplars, config.k, config.star_inner_steps)
        sampler = _make_sampler(config, policy, rngs["sampler"])
        ctx = Context(policy, task, train_set, config, sampler, rngs["resampler"], progress=progress)
        params = policy.trainable_parameters()
        optimizer = torch.optim.Adam(params, lr=config.resolved_lr())  # Adam + cosine decay, as the reference
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_schedule(s, config.steps, config.lr_final_ratio))
        state = LoopState()

        if checkpoint:  # resume: every piece of state exactly as it was after that step
            saved = checkpoint[1]
            with torch.no_grad():
                for p, value in zip(params, saved["params"], strict=True):
                    p.copy_(value)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            method.load_state_dict(saved["method"])
            state.load_state_dict(saved["loop"])
            sampler.tokens = saved["tokens_sampled"]
            sampler.on_update()
            restore_rngs(saved["rngs"], rngs, order_rng)
            started -= saved.get("seconds_elapsed", 0.0)
            run.truncate_metrics(saved["metrics_bytes"])
        else:
            if here.is_main:
                save_exemplars(exemplars, run.exemplars_path)
            method.setup(ctx)
            run.log({"event": "init", "memory_coverage": method.coverage(), "tokens_sampled": ctx.tokens_sampled,
                     "num_exemplars": len(exemplars), "seconds": time.perf_counter() - t0})
            state.accuracy_before, state.verdicts_before = evaluate_and_log(run, policy, method, task, test_set, config, 0,
                                                     progress, ctx.tokens_sampled, started)

        def save(step: int) -> None:
            if not here.is_main:  # every rank holds the same state; rank 0 writes it
                return
            snapshot = {"params": [p.detach().clone() for p in params], "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "method": method.state_dict(),
                        "loop": state.state_dict(), "tokens_sampled": sampler.tokens,
                        "rngs": rng_states(rngs, order_rng), "metrics_bytes": run.metrics_bytes(),
                        "seconds_elapsed": time.perf_counter() - started,
                        "config": config.to_dict()}
            try:
                save_checkpoint(run.checkpoints_path, step, snapshot, keep=config.keep_checkpoints)
            except OSError as exc:  # e.g. a full disk: the previous checkpoint is intact
                warnings.warn(f"checkpoint at step {step} not saved ({exc}); the previous one is kept",
                              RuntimeWarning, stacklevel=2)

        steps = config.steps if method.trains else 0
        bar = progress.add_task("training", total=steps, completed=state.step)
        for step in range(state.step + 1, steps + 1):
            if config.token_budget and ctx.tokens_sampled >= config.token_budget:
                break
            # 1. Minibatch of M examples from an epoch-wise random permutation.
            if len(state.order) < config.batch_size:
                state.order = list(range(len(train_set)))
                order_rng.shuffle(state.order)
            batch, state.order = state.order[:config.batch_size], state.order[config.batch_size:]

            # 2. The method samples, checks and weighs: TRICE proposes, does the MH step on its
            #    memory and returns the estimator's terms (ALGORITHM.md 3.1-3.7).
            t_method = time.perf_counter()
            weighted = method.step(ctx, batch)
            t_method = time.perf_counter() - t_method
            if weighted.stop:  # e.g. STaR: its next iteration would not fit in the token budget
                break
            if weighted.restart:  # STaR restarts from the initial parameters: Adam restarts too
                optimizer.state.clear()

            # 3. One update: loss = -sum(coefs * log p(continuation | prompt)) (ALGORITHM.md 3.8).
            #    With several processes each scores its share of the sequences; gradients are summed.
            t_score = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = torch.zeros(())
            mine = here.rows(len(weighted.prompts))
            if mine:
                log_probs = score(policy, [weighted.prompts[i] for i in mine],
                                  [weighted.continuations[i] for i in mine])
                loss = -(weighted.coefs[mine].to(log_probs) * log_probs).sum()
                loss.backward()
                loss = loss.detach().cpu()
            state.sequences_scored += len(weighted.prompts)
            if here.size > 1 and weighted.prompts:  # (no sequences anywhere: no gradient, as with one process)
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                loss = loss.reshape(1).to(params[0].device)
                here.all_reduce_([p.grad for p in params] + [loss])
                loss = loss.cpu().reshape(())
            norm = grad_norm(params)
            finite = math.isfinite(loss.item()) and math.isfinite(norm)
            if finite:
                state.bad_steps = 0
                grad_variance = state.variance.update(params)
                if config.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                sampler.on_update()  # vLLM pushes the new weights, the torch engine re-merges LoRA
            else:  # skip the update, keep going; too many in a row is an error
                state.bad_steps += 1
                grad_variance = None
                optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            t_score = time.perf_counter() - t_score

            # 4. Metrics, evaluation, checkpoint.
            run.log({"step": step, **weighted.metrics, "loss": loss.item(), "grad_norm": norm,
                     "grad_variance": grad_variance, "sequences_scored": state.sequences_scored,
                     "lr": scheduler.get_last_lr()[0], "tokens_sampled": ctx.tokens_sampled,
                     "seconds_sampling": t_method, "seconds_scoring": t_score,
                     "seconds_elapsed": time.perf_counter() - started,
                     **sampler.metrics(),
                     **({} if finite else {"skipped": "non-finite loss or gradient"})})
            shown = " ".join(f"{k.split('_')[-1][:3]} {weighted.metrics[k]:.2f}"
                             for k in ("proposal_accuracy", "memory_coverage") if k in weighted.metrics)
            progress.update(bar, advance=1, description=f"training {shown}")
            if config.eval_every and step % config.eval_every == 0 and step < steps:
                state.last_eval = (step, *evaluate_and_log(run, policy, method, task, test_set, config, step,
                                                           progress, ctx.tokens_sampled, started))
            state.step = step
            if state.bad_steps >= config.max_bad_steps:
                save(step)
                here.barrier()  # the checkpoint is written before any process exits
                raise TriceError(f"{state.bad_steps} steps in a row had a non-finite loss or gradient "
                                 f"(last at step {step}); lower --lr or check the data")
            if here.any(stop.requested is not None):  # a signal on any process stops them all here
                save(step)
                here.barrier()
                raise TriceError(f"stopped by {stop.requested or 'a signal to another process'} after step "
                                 f"{step}; continue with `trice train --resume {run.path}`")
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save(step)

        if state.last_eval and state.last_eval[0] == state.step:  # the budget stopped right after an evaluation
            _, accuracy_after, verdicts_after = state.last_eval
        elif state.step == 0 and not checkpoint:  # nothing trained (few-shot CoT, or no budget): unchanged
            accuracy_after, verdicts_after = state.accuracy_before, state.verdicts_before
        else:
            accuracy_after, verdicts_after = evaluate_and_log(run, policy, method, task, test_set, config, state.step,
                                                              progress, ctx.tokens_sampled, started)
        sc_accuracy = (self_consistency_accuracy(policy, task, test_set, config.sc_samples, config.max_new_tokens,
                                                 rngs["sampler"], config.sample_batch_size, prompt=method.prompt)
                       if config.sc_samples and test_set else None)

    if method.memory is not None and here.is_main:
        method.memory.save(run.memory_path)
    if here.is_main:
        policy.save(run.policy_path)
    n, before = len(test_set), state.accuracy_before
    summary = {"task": task.name, "method": config.method, "params": config.params, "steps": config.steps,
               "steps_done": state.step, "sequences_scored": state.sequences_scored,
               "n_eval": n, "greedy_accuracy_before": before, "greedy_accuracy_after": accuracy_after,
               "standard_error_before": standard_error(before, n) if n else None,
               "standard_error_after": standard_error(accuracy_after, n) if n else None,
               **(paired_z(state.verdicts_before, verdicts_after) if n else {}),
               "sc_accuracy_after": sc_accuracy, "sc_samples": config.sc_samples,
               "memory_coverage": method.coverage(),
               "acceptance_rate": method.memory.acceptance_rate() if method.memory is not None else None,
               "tokens_sampled": ctx.tokens_sampled, "wall_seconds": round(time.perf_counter() - started, 1)}
    run.write_summary(summary)
    here.barrier()  # every rank returns once the run directory is complete
    return summary


def _make_sampler(config: TrainConfig, policy, generator: torch.Generator):
    """The sampler the run's methods draw rationales from (config.sampler: torch or vllm)."""
    if config.sampler == "vllm":
        from .vllm_sampler import VLLMSampler

        return VLLMSampler(policy, config.model, config.dtype, config.vllm_gpu_memory_utilization, config.seed,
                           generator=generator, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                           check_rows=config.sampler_check_rows)
    return TorchSampler(policy, generator, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                        batch_size=config.sample_batch_size)


class _StopOnSignal:
    """Turn SIGINT/SIGTERM into a request to checkpoint and stop after the current step."""

    def __init__(self):
        self.requested: str | None = None
        self._first = 0.0
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            if time.monotonic() - self._first < 1.0:  # the same Ctrl-C, forwarded again by the launcher
                return
            raise KeyboardInterrupt  # a second signal: stop now
        self.requested, self._first = signal.Signals(signum).name, time.monotonic()

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
