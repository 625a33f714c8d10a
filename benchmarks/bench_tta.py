"""The time-to-accuracy figure of the benchmark suite: TRICE's time to reach STaR's final accuracy (bench.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench_common import TASK, TASK_OPTIONS, log, exemplars_file, Bench  # noqa: E402


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def training_curve(records: list[dict]) -> tuple[list[dict], float]:
    """Evaluation points with the training wall time spent before them: set-up (the init record) plus
    every step's sampling and scoring time; evaluation time itself is excluded (both runs alike).
    Returns the points and the whole run's training time."""
    elapsed = sum(r.get("seconds", 0.0) for r in records if r.get("event") == "init")
    points = []
    for r in records:
        if r.get("event") == "eval":
            points.append({"step": r["step"], "accuracy": r["greedy_accuracy"], "train_seconds": elapsed,
                           "tokens_sampled": r.get("tokens_sampled"), "eval_seconds": r.get("seconds")})
        elif "step" in r and "event" not in r:
            elapsed += r.get("seconds_sampling", 0.0) + r.get("seconds_scoring", 0.0)
    return points, elapsed


def time_to_accuracy(trice_dir: Path, star_dir: Path) -> tuple[float, dict]:
    star_points, star_seconds = training_curve(read_metrics(star_dir))
    trice_points, trice_seconds = training_curve(read_metrics(trice_dir))
    star_final, star_tokens = star_points[-1]["accuracy"], star_points[-1]["tokens_sampled"]
    reached = next((p for p in trice_points if p["accuracy"] >= star_final), None)
    details = {"star_final_accuracy": star_final, "star_accuracy_before": star_points[0]["accuracy"],
               "star_train_seconds": star_seconds, "star_tokens_sampled": star_tokens,
               "trice_train_seconds": trice_seconds, "trice_final_accuracy": trice_points[-1]["accuracy"],
               "trice_curve": trice_points, "star_curve": star_points, "trice_run": str(trice_dir),
               "star_run": str(star_dir),
               "wall_time": "set-up + sampling + scoring seconds from metrics.jsonl; evaluations excluded"}
    if star_tokens is not None:  # the equal-token comparison: TRICE's last evaluation within STaR's tokens
        within = [p for p in trice_points if p["tokens_sampled"] is not None and p["tokens_sampled"] <= star_tokens]
        if within:
            details["trice_accuracy_at_star_tokens"] = within[-1]["accuracy"]
            details["trice_step_at_star_tokens"] = within[-1]["step"]
    if reached is None:
        details["flag"] = ("TRICE never reached STaR's final accuracy: the value is a lower bound, TRICE's "
                           "whole training time / STaR's")
        return trice_seconds / star_seconds, details
    details["trice_reached_at_step"] = reached["step"]
    details["trice_seconds_to_reach"] = reached["train_seconds"]
    details["trice_tokens_to_reach"] = reached["tokens_sampled"]
    if reached["step"] == 0:
        details["flag"] = "STaR ended no better than the untuned model, which TRICE 'reaches' before training"
    return reached["train_seconds"] / star_seconds, details


def fig_tta(b: Bench):
    """time_to_accuracy_vs_star: STaR for one outer iteration (sample all 200 questions, rationalise the
    wrong ones, 20 fine-tuning steps), then TRICE, evaluated every 3 steps, until it has sampled
    --trice-token-factor times STaR's tokens; same LoRA, lr 1e-3, M = L = 16, 64 tokens, n_eval 200,
    exemplars."""
    walls = {}
    if b.args.from_compare:
        base = Path(b.args.from_compare)
        trice_dir, star_dir = base / "trice-seed0", base / "star-seed0"
    else:
        import shutil

        from trice.config import TrainConfig
        from trice.training.loop import train

        out = Path(b.args.tta_dir)
        out.mkdir(parents=True, exist_ok=True)
        common = dict(model="smollm2-135m", params="lora", task=TASK, task_options=dict(TASK_OPTIONS),
                      batch_size=16, subsample=16, lr=1e-3, max_new_tokens=64, n_eval=200, seed=0,
                      checkpoint_every=0, exemplars=exemplars_file(out))
        star_dir, trice_dir = out / "star-seed0", out / "trice-seed0"
        if b.args.reuse_star and (star_dir / "summary.json").exists():
            star = json.loads((star_dir / "summary.json").read_text())
            log(f"  reusing the STaR run in {star_dir}")
        else:
            shutil.rmtree(star_dir, ignore_errors=True)
            t0 = time.perf_counter()
            star = train(TrainConfig(method="star", steps=b.args.star_steps, star_inner_steps=b.args.star_steps,
                                     eval_every=0, out=str(star_dir), **common))
            walls["star_train_call_seconds"] = time.perf_counter() - t0
        log(f"  STaR: accuracy {star['greedy_accuracy_before']:.3f} -> {star['greedy_accuracy_after']:.3f}, "
            f"{star['tokens_sampled']} tokens sampled")
        shutil.rmtree(trice_dir, ignore_errors=True)
        t0 = time.perf_counter()
        budget = int(b.args.trice_token_factor * star["tokens_sampled"])
        tr = train(TrainConfig(method="trice", steps=b.args.trice_max_steps, token_budget=budget,
                               eval_every=b.args.eval_every, out=str(trice_dir), **common))
        walls["trice_train_call_seconds"] = time.perf_counter() - t0
        walls["trice_token_budget"] = budget
        log(f"  TRICE: accuracy {tr['greedy_accuracy_before']:.3f} -> {tr['greedy_accuracy_after']:.3f}, "
            f"{tr['tokens_sampled']} tokens sampled, {tr['steps_done']} steps")
    value, details = time_to_accuracy(trice_dir, star_dir)
    b.record("tta", value, {**details, **walls}, met=False if "trice_reached_at_step" not in details else None)
    log(f"  STaR final {details['star_final_accuracy']:.3f} in {details['star_train_seconds']:.0f} s; TRICE "
        + (f"reached it at step {details['trice_reached_at_step']} after {details['trice_seconds_to_reach']:.0f} s"
           if "trice_reached_at_step" in details else "never reached it")
        + (f" ({details['flag']})" if "flag" in details else "")
        + (f"; at STaR's token count TRICE had {details['trice_accuracy_at_star_tokens']:.3f}"
           if "trice_accuracy_at_star_tokens" in details else ""))


