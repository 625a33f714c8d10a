"""The training loop, read top to bottom (ALGORITHM.md sections 2-4); the same for every method.

>>> from trice import TrainConfig, train  # doctest: +SKIP
>>> summary = train(TrainConfig(params="lora", steps=100, out="runs/demo"))  # doctest: +SKIP
>>> summary["greedy_accuracy_before"], summary["greedy_accuracy_after"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import random
import resource
import sys
import time
import warnings

import numpy as np
import torch

from ..artifacts.run_dir import RunDir
from ..config import TrainConfig
from ..errors import TriceError
from ..evaluation.statistics import paired_counts, standard_error
from ..generation.sampler import TorchSampler
from ..methods import Context
from ..methods.initialisation import load_exemplars, save_exemplars
from ..modeling.loading import load_model, resolve_dtype
from ..modeling.policy import Policy, lora_targets
from ..modeling.scoring import weighted_backward
from ..prompts import resolve_format
from ..runtime import sharding
from ..runtime.distributed import default_device
from ..runtime.distributed import init as init_distributed
from ..runtime.interrupts import StopOnSignal, StopRequested
from ..tasks import Task, task_from_config
from ..tools import make_tool
from .checkpoint import load_latest, load_sharded, save_checkpoint
from .evaluations import curve_point, evaluate_and_log
from .optim import grad_norm, make_optimizer
from .progress import console, progress_bar
from .setup import Setup, prepare
from .state import TrainingState


def train(config: TrainConfig | None = None, *, model=None, tokenizer=None, task: Task | None = None,
          resume: str | None = None) -> dict:
    """Train as ``config`` says, or continue the run in directory ``resume`` exactly where its last
    good checkpoint left it; returns the summary (also written to the run directory).

    ``model``/``tokenizer``/``task`` may be passed in to skip loading them (tests, notebooks).
    """
    # --- set-up: config, processes, seeds, data, model, run directory --------------------------
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
    task = task or task_from_config(config)
    checkpoint = load_latest(RunDir(resume).checkpoints_path) if resume is not None else None
    if config.fsdp and here.size < 2:
        raise TriceError("--fsdp shards the model across processes: launch with torchrun --nproc-per-node N (N >= 2)")
    if model is None:
        # FSDP's mixed precision keeps float32 shards and computes in the --dtype asked for (trice.runtime.sharding)
        stored = "float32" if config.fsdp and config.dtype in ("bfloat16", "float16") else config.dtype
        model, tokenizer = load_model(config.model, stored, config.device or default_device())
    if config.prompt_format == "auto":  # saved resolved, so resume and `trice eval` use the same format
        config = dataclasses.replace(config, prompt_format=resolve_format("auto", tokenizer).name)
    if not checkpoint and not config.out:  # one timestamped directory for every rank
        config = dataclasses.replace(config, out=here.broadcast(RunDir.default_path(config)))
    run = RunDir.open(resume, here.is_main) if checkpoint else RunDir.create(config, here.is_main)
    here.barrier()  # the run directory exists before any rank uses it

    with run, progress_bar() as progress, StopOnSignal() as stop:  # leaving it closes run's --report-to tracker
        t, setup = _build(config, model, tokenizer, task, run, checkpoint)
        t.started = started
        held_out = setup.held_out
        console.print(f"[bold]trice[/] {config.method} on {task.name}: {len(setup.train_set)} train, "
                      f"{len(held_out.examples)} held-out; run directory {run.path}"
                      + (f"; resuming after step {checkpoint[1]['loop']['step']}" if checkpoint else ""))
        ctx = Context(t.policy, task, setup.train_set, config, t.sampler, t.rngs["resampler"], progress, t.budget)
        try:
            # --- resume, or initialise: the method's own state (TRICE: the memory), then evaluate ---
            if checkpoint:
                t.restore(checkpoint[1], load_sharded(checkpoint[0], t.sharded_state()) if t.policy.sharded else None)
            else:
                t0 = time.perf_counter()
                t.method.setup(ctx)
                run.log({"event": "init", "memory_coverage": t.method.coverage(), "tokens_sampled": t.sampler.tokens,
                         "token_passes": t.budget.passes(), "num_exemplars": len(t.exemplars),
                         "prompt_format": t.method.format.name, "seconds": time.perf_counter() - t0})
                t.loop.accuracy_before, t.loop.verdicts_before = evaluate_and_log(t, held_out, 0, progress)
            # --- the loop ---------------------------------------------------------------------
            steps = config.steps if t.method.trains else 0
            bar = progress.add_task("training", total=steps, completed=t.loop.step)
            for step in range(t.loop.step + 1, steps + 1):
                if not t.budget.allows_step():  # its predicted cost would pass the budget
                    break
                if not _step(t, ctx, step, here, progress, bar):
                    break
                if config.save_policy_every and step % config.save_policy_every == 0:
                    _save_policy(t, here, t.run.path / "policies" / f"step-{step:08d}", step)
                if config.eval_every and step % config.eval_every == 0 and step < steps:
                    t.loop.last_eval = (step, *evaluate_and_log(t, held_out, step, progress))
                curve_point(t, held_out, progress)
                if here.any(stop.requested is not None):  # a signal on any process stops them all here
                    raise StopRequested(stop.requested or "a signal to another process")
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    _save(t, here)
            if note := t.budget.overshoot():
                warnings.warn(note, RuntimeWarning, stacklevel=2)
            # --- finish: final evaluation (unless one just ran), self-consistency -----------------
            if t.loop.last_eval and t.loop.last_eval[0] == t.loop.step:
                _, accuracy_after, verdicts_after = t.loop.last_eval
            elif t.loop.step == 0 and not checkpoint:  # nothing trained (few-shot CoT, or no budget): unchanged
                accuracy_after, verdicts_after = t.loop.accuracy_before, t.loop.verdicts_before
            else:
                accuracy_after, verdicts_after = evaluate_and_log(t, held_out, t.loop.step, progress)
            sc_accuracy = (held_out.self_consistency(t.policy, config.sc_samples, t.rngs["sampler"])
                           if config.sc_samples and held_out.examples else None)
        except StopRequested as exc:
            _stopped(t, here, str(exc), started_training=bool(checkpoint) or t.loop.step > 0)
    return _summarise(t, task, len(held_out.examples), accuracy_after, verdicts_after, sc_accuracy, here)


def _build(config, model, tokenizer, task, run, checkpoint) -> tuple[TrainingState, Setup]:
    """The run's text (:func:`trice.training.setup.prepare`: exemplars, method, the questions that fit),
    then the policy, the sampler and the optimiser: a TrainingState."""
    rngs = {"sampler": torch.Generator().manual_seed(config.seed),  # proposals, memory init, evaluation
            "resampler": torch.Generator().manual_seed(config.seed + 1)}  # the subsample
    setup = prepare(config, model, tokenizer, task, generator=rngs["sampler"],
                    exemplars=load_exemplars(run.exemplars_path) if checkpoint else None)
    if not checkpoint and run.writes:
        save_exemplars(setup.exemplars, run.exemplars_path)
    policy = Policy.create(model, tokenizer, config.params, prefix_text=setup.prefix, lora_r=config.lora_r,
                           lora_alpha=config.lora_alpha, lora_targets=lora_targets(config.lora_targets))
    if config.fsdp:  # shard the weights (the optimiser is then built over the shards)
        compute = resolve_dtype(config.dtype, str(policy.device)) if config.dtype != "float32" else None
        sharding.shard(policy.base_model, policy.device, compute)
        policy.sharded = True
    optimizer, scheduler = make_optimizer(policy.trainable_parameters(), config)
    longest = setup.longest_input(tokenizer, config.max_new_tokens) if config.sampler == "vllm" else None
    t = TrainingState(policy, setup.method, make_sampler(config, policy, rngs["sampler"], setup.fmt, longest), optimizer,
                      scheduler, rngs, random.Random(config.seed), run, config, exemplars=setup.exemplars)
    return t, setup


def _step(t: TrainingState, ctx: Context, step: int, here, progress, bar) -> bool:
    """One training step (False: the method stopped the run, e.g. STaR out of budget)."""
    config, loop = t.config, t.loop
    mark = t.mark()  # a stop during this step's sampling rolls back to here
    used_before = t.budget.used()
    try:
        # 1. Minibatch of M examples from an epoch-wise random permutation.
        if len(loop.order) < config.batch_size:
            loop.order = list(range(len(ctx.train_set)))
            t.order_rng.shuffle(loop.order)
        batch, loop.order = loop.order[:config.batch_size], loop.order[config.batch_size:]
        # 2. The method samples, checks and weighs: TRICE proposes, does the MH step on its
        #    memory and returns the estimator's terms (ALGORITHM.md 3.1-3.7).
        t_method = time.perf_counter()
        weighted = t.method.step(ctx, batch)
        t_method = time.perf_counter() - t_method
    except StopRequested:
        t.roll_back(mark)
        raise
    if weighted.stop:  # e.g. STaR: its next iteration would not fit in the token budget
        return False
    if weighted.restart:  # STaR restarts from the initial parameters: Adam restarts too
        t.optimizer.state.clear()

    # 3. One update: loss = -sum(coefs * log p(continuation | prompt)) (ALGORITHM.md 3.8).
    #    With several processes each scores its share of the sequences; gradients are summed.
    t_score = time.perf_counter()
    params, sharded = t.params, t.policy.sharded
    t.optimizer.zero_grad(set_to_none=True)
    loss = torch.zeros(())
    mine = here.rows(len(weighted.prompts))
    tokens = 0
    # with sharded weights every rank runs as many forwards as the busiest (trice.runtime.sharding)
    chunks = sharding.chunks_everywhere(-(-len(mine) // config.score_batch_size), here) if sharded else None
    if mine or chunks:
        loss, tokens = weighted_backward(t.policy, [weighted.prompts[i] for i in mine],
                                         [weighted.continuations[i] for i in mine], weighted.coefs[mine],
                                         batch_size=config.score_batch_size, chunks=chunks)
        loss = loss.cpu()
    loop.sequences_scored += len(weighted.prompts)
    if here.size > 1 and weighted.prompts:  # (no sequences anywhere: no gradient, as with one process)
        device = t.policy.device
        totals = torch.stack([loss.reshape(()), torch.tensor(float(tokens))]).to(device)
        if sharded:  # FSDP summed the gradients' shards in its backward
            here.all_reduce_([totals])
        else:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            here.all_reduce_([p.grad for p in params] + [totals])
        loss, tokens = totals[0].cpu(), int(totals[1].item())
    loop.tokens_scored += tokens
    loop.tokens_forward += weighted.tokens_forward
    norm = math.sqrt(sharding.squared_norm([p.grad for p in params if p.grad is not None], here)) if sharded \
        else grad_norm(params)
    finite = math.isfinite(loss.item()) and math.isfinite(norm)
    if finite:
        loop.bad_steps = 0
        # (not with sharded weights: the running mean gradient would be one shard per rank, which a checkpoint of
        # rank 0's loop state cannot hold)
        grad_variance = None if sharded else loop.variance.update(params)
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        t.optimizer.step()
        t.sampler.on_update()  # vLLM pushes the new weights, the torch engine re-merges LoRA
    else:  # skip the update, keep going; too many in a row is an error
        loop.bad_steps += 1
        grad_variance = None
        t.optimizer.zero_grad(set_to_none=True)
    t.scheduler.step()
    t_score = time.perf_counter() - t_score
    if not weighted.restart:  # (a step that starts STaR's outer iteration costs the iteration, which STaR budgets)
        t.budget.record_step(used_before)

    # 4. Metrics; the step is complete.
    t.run.log({"step": step, **weighted.metrics, "loss": loss.item(), "grad_norm": norm,
               "grad_variance": grad_variance, "sequences_scored": loop.sequences_scored,
               "lr": t.scheduler.get_last_lr()[0], "tokens_sampled": t.sampler.tokens,
               "tokens_scored": loop.tokens_scored, "token_passes": t.budget.passes(),
               **({"tokens_forward": loop.tokens_forward} if loop.tokens_forward else {}),
               "seconds_sampling": t_method, "seconds_scoring": t_score,
               "seconds_elapsed": time.perf_counter() - t.started, **t.sampler.metrics(),
               **({} if finite else {"skipped": "non-finite loss or gradient"})})
    shown = " ".join(f"{k.split('_')[-1][:3]} {weighted.metrics[k]:.2f}"
                     for k in ("proposal_accuracy", "memory_coverage") if k in weighted.metrics)
    progress.update(bar, advance=1, description=f"training {shown}")
    if step == 1:  # what this rank holds, gradients alive (with --fsdp: 1/N of one process's; docs/scale-out.md)
        t.held_bytes = held = sharding.local_bytes(t.policy.base_model, t.optimizer)
        if sharded:
            print(f"rank {here.rank}: {held['parameters']:,} bytes of parameters, {held['gradients']:,} of "
                  f"gradients, {held['optimizer']:,} of optimiser state", file=sys.stderr, flush=True)
    loop.step = step
    if loop.bad_steps >= config.max_bad_steps:
        _save(t, here)
        raise TriceError(f"{loop.bad_steps} steps in a row had a non-finite loss or gradient "
                         f"(last at step {step}); lower --lr or check the data")
    return True


def _save(t: TrainingState, here) -> None:
    """A checkpoint of the state after step ``t.loop.step`` (rank 0 writes; every rank waits). With sharded
    weights every rank writes its shard of the parameters and Adam's state too."""
    if t.policy.sharded:
        save_checkpoint(t.run.checkpoints_path, t.loop.step, t.snapshot(), keep=t.config.keep_checkpoints,
                        sharded=t.sharded_state(), world=here)
    elif here.is_main:  # every rank holds the same state
        try:
            save_checkpoint(t.run.checkpoints_path, t.loop.step, t.snapshot(), keep=t.config.keep_checkpoints)
        except OSError as exc:  # e.g. a full disk: the previous checkpoint is intact
            warnings.warn(f"checkpoint at step {t.loop.step} not saved ({exc}); the previous one is kept",
                          RuntimeWarning, stacklevel=2)
    here.barrier()


def _save_policy(t: TrainingState, here, path, step: int | None = None) -> None:
    """The policy as it is now, in ``path`` (rank 0 writes; a sharded one is gathered whole, every rank taking
    part); ``step``: a snapshot along the run, logged with the time it was taken."""
    state = sharding.full_state_dict(t.policy.base_model, trainable_only=t.policy.params == "lora") \
        if t.policy.sharded else None
    if here.is_main:
        t.policy.save(path, state=state)
        if step is not None:
            t.run.log({"event": "policy_saved", "step": step, "path": str(path.relative_to(t.run.path)),
                       "token_passes": t.budget.passes(), "seconds_elapsed": time.perf_counter() - t.started})


def _stopped(t: TrainingState, here, signal_name: str, started_training: bool):
    if not started_training:
        raise TriceError(f"stopped by {signal_name} during initialisation (nothing trained yet, no checkpoint); "
                         "run the command again to start over") from None
    _save(t, here)
    raise TriceError(f"stopped by {signal_name} after step {t.loop.step}; continue with "
                     f"`trice train --resume {t.run.path}`") from None


def _summarise(t: TrainingState, task, n: int, accuracy_after, verdicts_after, sc_accuracy, here) -> dict:
    method, loop, config = t.method, t.loop, t.config
    if method.memory is not None and here.is_main:
        method.memory.save(t.run.memory_path)
    _save_policy(t, here, t.run.policy_path)
    before = loop.accuracy_before
    summary = {"task": task.name, "method": config.method, "params": config.params, "steps": config.steps,
               "steps_done": loop.step, "sequences_scored": loop.sequences_scored,
               "n_eval": n, "greedy_accuracy_before": before, "greedy_accuracy_after": accuracy_after,
               "standard_error_before": standard_error(before, n) if n else None,
               "standard_error_after": standard_error(accuracy_after, n) if n else None,
               **(paired_counts(loop.verdicts_before, verdicts_after) if n else {}),
               "sc_accuracy_after": sc_accuracy, "sc_samples": config.sc_samples,
               "memory_coverage": method.coverage(),
               "acceptance_rate": method.memory.acceptance_rate() if method.memory is not None else None,
               "tokens_sampled": t.sampler.tokens, "tokens_scored": loop.tokens_scored,
               "tokens_forward": loop.tokens_forward, "token_passes": t.budget.passes(),
               "verdicts_after": [bool(v) for v in verdicts_after] if n else [],
               "wall_seconds": round(time.perf_counter() - t.started, 1),
               # this rank's, as at step 1 (a run resumed after it: now, without gradients)
               "trainable_bytes": getattr(t, "held_bytes", None) or sharding.local_bytes(t.policy.model, t.optimizer),
               # this process's peak resident memory (ru_maxrss is in KiB on Linux), and the GPU's peak
               "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
               **({"peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)}
                  if torch.cuda.is_available() else {})}
    t.run.write_summary(summary)
    here.barrier()  # every rank returns once the run directory is complete
    return summary


def make_sampler(config: TrainConfig, policy, generator: torch.Generator, fmt, longest_input: int | None = None):
    """The sampler the run's methods draw rationales from (config.sampler: torch or vllm); ``longest_input``:
    the most tokens a sampled row needs (vLLM sizes its engine by it)."""
    if config.sampler == "vllm":
        from ..generation.vllm_sampler import VLLMSampler

        dtype = str(policy.base_model.dtype).removeprefix("torch.")  # what the trainer's copy resolved to
        return VLLMSampler(policy, config.model, dtype, config.vllm_gpu_memory_utilization, config.seed,
                           generator=generator, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                           check_rows=config.sampler_check_rows, stop=fmt.stop, tool=make_tool(config.tools),
                           max_model_len=longest_input, rows=config.sample_batch_size)
    return TorchSampler(policy, generator, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                        batch_size=config.sample_batch_size, stop=fmt.stop, tool=make_tool(config.tools),
                        engine=config.engine)
