"""The loop's held-out evaluations: before training, every ``eval_every`` steps, at the learning curve's
points of the budget (``eval_points``, on the fixed subset), and after training; each is logged to
metrics.jsonl and printed."""

from __future__ import annotations

import time

from ..evaluation.statistics import standard_error
from ..tools import tool_stats
from .progress import console


def evaluate_and_log(t, held_out, step: int, progress, examples=None, **extra) -> tuple[float | None, list[bool]]:
    """Held-out greedy accuracy of ``t.policy`` and each question's verdict (``examples``: a part of the
    held-out set, default all of it), logged with the budget spent and ``extra`` fields. The record's
    ``subset_accuracy`` is the accuracy on the first ``config.eval_subset`` questions, the learning
    curve's fixed subset."""
    examples = held_out.examples if examples is None else examples
    if not examples:
        return None, []
    t0 = time.perf_counter()
    bar = progress.add_task(f"greedy eval @ step {step}", total=None)
    accuracy, verdicts, texts = held_out.greedy(t.policy, examples)
    progress.remove_task(bar)
    subset = verdicts[:t.config.eval_subset]
    t.run.log({"event": "eval", "step": step, "greedy_accuracy": accuracy, "n_eval": len(examples),
               "subset_accuracy": sum(subset) / len(subset), "tokens_sampled": t.sampler.tokens,
               "token_passes": t.budget.passes(), **extra,
               **(tool_stats(texts, verdicts) if held_out.tool is not None else {}),
               "seconds": time.perf_counter() - t0, "seconds_elapsed": time.perf_counter() - t.started})
    console.print(f"step {step}: held-out greedy accuracy {accuracy:.3f} "
                  f"(± {standard_error(accuracy, len(examples)):.3f}, n = {len(examples)})")
    return accuracy, verdicts


def curve_point(t, held_out, progress) -> None:
    """The learning curve (config.eval_points): once the budget spent passes the next of the evenly spaced
    points k / eval_points (k < eval_points; the end is the final, full evaluation), evaluate on the fixed
    subset of the held-out set (its first eval_subset questions)."""
    config, loop = t.config, t.loop
    if not config.eval_points or loop.next_curve_point >= config.eval_points:
        return
    spent = t.budget.spent()
    if spent < loop.next_curve_point / config.eval_points:
        return
    while loop.next_curve_point < config.eval_points and spent >= loop.next_curve_point / config.eval_points:
        loop.next_curve_point += 1
    evaluate_and_log(t, held_out, loop.step, progress, held_out.examples[:config.eval_subset],
                     curve_point=loop.next_curve_point - 1, budget_spent=spent)
