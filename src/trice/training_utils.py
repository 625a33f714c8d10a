"""Small pieces of the training loop: schedule, gradient norm, evaluation logging, progress bar."""

from __future__ import annotations

import math
import time

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .evaluate import greedy_accuracy, standard_error
from .tools import make_tool, tool_stats

console = Console(stderr=True)


def cosine_schedule(step: int, total: int, final_ratio: float) -> float:
    """Learning-rate factor: cosine decay from 1 to ``final_ratio`` over ``total`` steps."""
    progress = min(step / max(total, 1), 1.0)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def grad_norm(params) -> float:
    grads = [p.grad.detach().flatten() for p in params if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0


def lora_targets(spec: str):
    return spec if spec == "all-linear" else [s.strip() for s in spec.split(",") if s.strip()]


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def evaluate_and_log(run, policy, method, task, test_set, config, step: int, progress,
                     tokens_sampled: int, started: float | None = None,
                     extra: dict | None = None) -> tuple[float | None, list[bool]]:
    """Held-out greedy accuracy and each question's verdict, logged to metrics.jsonl and printed;
    ``started`` is the run's start (perf_counter) for the record's ``seconds_elapsed``, ``extra`` more
    fields of the record (the budget spent). The record's ``subset_accuracy`` is the accuracy on the
    first ``config.eval_subset`` questions, the learning curve's fixed subset."""
    if not test_set:
        return None, []
    t0 = time.perf_counter()
    bar = progress.add_task(f"greedy eval @ step {step}", total=None)
    tool = make_tool(config.tools)
    accuracy, verdicts, texts = greedy_accuracy(policy, task, test_set, config.max_new_tokens, config.sample_batch_size,
                                                prompt=method.prompt, stop=method.format.stop, hook=tool)
    progress.remove_task(bar)
    subset = verdicts[:config.eval_subset]
    run.log({"event": "eval", "step": step, "greedy_accuracy": accuracy, "n_eval": len(test_set),
             "subset_accuracy": sum(subset) / len(subset), "tokens_sampled": tokens_sampled, **(extra or {}),
             **(tool_stats(texts, verdicts) if tool is not None else {}),
             "seconds": time.perf_counter() - t0,
             "seconds_elapsed": time.perf_counter() - started if started is not None else None})
    console.print(f"step {step}: held-out greedy accuracy {accuracy:.3f} "
                  f"(± {standard_error(accuracy, len(test_set)):.3f}, n = {len(test_set)})")
    return accuracy, verdicts


def paired_z(before: list[bool], after: list[bool]) -> dict:
    """McNemar's paired comparison of the same questions before and after training: questions that
    turned right (gained) and turned wrong (lost), and z = (gained - lost) / sqrt(gained + lost)."""
    gained = sum(1 for b, a in zip(before, after) if a and not b)
    lost = sum(1 for b, a in zip(before, after) if b and not a)
    z = (gained - lost) / math.sqrt(gained + lost) if gained + lost else 0.0
    return {"questions_gained": gained, "questions_lost": lost, "paired_z": z}
