"""``trice train`` and ``trice demo``: a training run from flags and a config file, or the offline demo."""

from __future__ import annotations

import dataclasses
import os

from ..config import TrainConfig
from ..errors import TriceError
from .flags import config_from_args

# The offline demo: the packaged SmolLM2-135M-Instruct, LoRA (`trice demo --params prompt` runs the paper's soft
# prompt), reasoning-gym chain_sum with 2-3 one-digit terms. Its measured run: docs/demo/summary.json.
DEMO = dict(
    model="smollm2-135m", params="lora", task="gym/chain_sum", method="trice",  # the paper's estimator
    task_options=dict(min_terms=2, max_terms=3, min_digits=1, max_digits=1, n_train=200, n_test=400),
    steps=80, batch_size=16, subsample=16, max_new_tokens=64, n_eval=400, eval_every=0,
    seed=0, prompt_format="plain",  # the format the demo's figures were measured with (docs/demo)
)


def print_summary(summary: dict) -> None:
    from ..runtime.distributed import world

    if not world().is_main:  # one process prints for the job
        return
    before, after, n = summary["greedy_accuracy_before"], summary["greedy_accuracy_after"], summary["n_eval"]
    if before is not None:
        from ..evaluation.statistics import standard_error

        se = standard_error(before, n)
        # the standard error is the before accuracy's (binomial, n questions): the yardstick the change is read in
        in_se = f" = {(after - before) / se:+.1f} x the before accuracy's standard error {se:.3f}" if se else ""
        print(f"held-out greedy accuracy: before {before:.3f}, after {after:.3f} "
              f"(n = {n}; change {after - before:+.3f}{in_se})")
        if "paired_z" in summary:
            print(f"paired on the same questions: {summary['questions_gained']} turned right, "
                  f"{summary['questions_lost']} turned wrong (McNemar z = {summary['paired_z']:+.1f})")
    coverage = summary.get("memory_coverage")
    print((f"memory coverage {coverage:.3f}, " if coverage is not None else "")
          + f"tokens sampled {summary['tokens_sampled']}")


def cmd_train(args, base: dict | None = None) -> int:
    if getattr(args, "resume", None):
        from ..artifacts.run_dir import RunDir

        given = [f.name for f in dataclasses.fields(TrainConfig) if getattr(args, f.name, None) is not None]
        if given or args.config:
            raise TriceError(f"--resume continues a run with its own config; drop {', '.join(given) or '--config'}")
        config, resume = RunDir(args.resume).config(), args.resume
    else:
        config, resume = config_from_args(args, base), None
    if config.sampler == "vllm":
        _quiet_openmp(config.threads)
    from ..training.loop import train  # (torch is imported here, after the OpenMP settings)

    summary = train(resume=resume) if resume else train(config)
    print_summary(summary)
    return 0


def _quiet_openmp(threads: int | None) -> None:
    """vLLM's CPU engine runs in this process: with OpenMP's default spin-waiting its threads and torch's
    slowed it ~6x (measured, docs/vllm.md). Set before torch is imported; a user's own settings win."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads or os.cpu_count() or 1))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_demo(args) -> int:
    return cmd_train(args, dict(DEMO, out=args.out or "runs/demo"))
