"""``trice compare``: methods x seeds on one task under one compute budget.

Every run goes through the same loop, sampler, scorer, checker and evaluator; each is a normal run
directory under ``OUT/<method>-seed<seed>``. The budget is ``compute_budget`` in token-passes
(:mod:`trice.training.budget`: sampled + forward-only + 3 x scored tokens, so methods that sample nothing pay too) or the older
``token_budget`` of sampled tokens. Writes ``results.csv`` (a row per run), ``results.md`` (means with
95% confidence intervals, and every method against the reference method paired on the same held-out
questions) and PNG plots (see :mod:`trice.experiments.plots`).

A method name may carry a tool, ``METHOD+TOOL`` (e.g. ``trice+calculator``): that method with
``tools=TOOL`` (:mod:`trice.tools`), so one comparison holds a method with and without the tool; and config
overrides, ``METHOD@KEY=VALUE`` (e.g. ``grpo@k=8``), so one holds a method at two settings.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time

import yaml
from pathlib import Path

from ..artifacts.run_dir import RunDir
from ..config import TrainConfig
from ..errors import TriceError
from ..evaluation.statistics import discordant, mcnemar_z, mean_ci
from ..methods.registry import METHODS
from ..runtime.distributed import world
from ..tools import TOOLS

COLUMNS = ["method", "seed", "greedy_accuracy_before", "greedy_accuracy", "change", "questions_gained",
           "questions_lost", "sc_accuracy", "tokens_sampled", "tokens_scored", "token_passes", "sequences_scored",
           "steps_done", "wall_seconds", "memory_coverage", "n_eval"]


def method_config(base: TrainConfig, name: str) -> TrainConfig:
    """The config of ``name``: a method, ``METHOD+TOOL`` (the method with that tool), and either followed by
    ``@KEY=VALUE`` config overrides (``grpo@k=8``: GRPO with TRL's default group size).

    >>> method_config(TrainConfig(), "star+calculator").method, method_config(TrainConfig(), "star+calculator").tools
    ('star', 'calculator')
    >>> method_config(TrainConfig(), "grpo@k=8@grpo_loss_type=grpo").k
    8
    """
    head, *overrides = name.split("@")
    method, _, tool = head.partition("+")
    if method not in METHODS or (tool and tool not in TOOLS):
        raise TriceError(f"unknown method {name!r}: choose from {', '.join(METHODS)}, optionally as "
                         f"METHOD+TOOL with a tool from {', '.join(t for t in TOOLS if t != 'none')}, and "
                         "@KEY=VALUE config overrides")
    changes = {"method": method, **({"tools": tool} if tool else {})}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in TrainConfig.__dataclass_fields__ or key in ("method", "seed", "out"):
            raise TriceError(f"{name!r}: {item!r} is not KEY=VALUE with KEY a config key (not method, seed or out)")
        changes[key] = yaml.safe_load(value)
    return dataclasses.replace(base, **changes).validate()


def compare(base: TrainConfig, methods: list[str], seeds: list[int], out: str | Path, train_fn=None,
            reference: str | None = None, **train_kwargs) -> list[dict]:
    """Run every (method, seed); returns the rows written to ``results.csv``. ``reference``: the method the
    paired table compares every other one with (default: trice, else trice-full, trice-nocv, the first)."""
    if train_fn is None:
        from ..training.loop import train as train_fn
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in methods:
        for seed in seeds:
            config = dataclasses.replace(method_config(base, method), seed=seed, out=str(out / f"{method}-seed{seed}"))
            start = time.perf_counter()
            summary = _finished_or_resumed(config, train_fn, train_kwargs)
            rows.append({"method": method, "seed": seed,
                         "greedy_accuracy_before": summary["greedy_accuracy_before"],
                         "greedy_accuracy": summary["greedy_accuracy_after"],
                         "change": _change(summary),
                         "questions_gained": summary.get("questions_gained"),
                         "questions_lost": summary.get("questions_lost"),
                         "sc_accuracy": summary.get("sc_accuracy_after"),
                         "tokens_sampled": summary["tokens_sampled"],
                         "tokens_scored": summary.get("tokens_scored"), "token_passes": summary.get("token_passes"),
                         "sequences_scored": summary.get("sequences_scored"),
                         "steps_done": summary.get("steps_done"),
                         "wall_seconds": summary.get("wall_seconds", round(time.perf_counter() - start, 1)),
                         "memory_coverage": _coverage(summary, config.out), "n_eval": summary["n_eval"]})
            if world().is_main:
                write_results(rows, out, _verdicts(out, rows), reference)
    if not world().is_main:  # under a launcher, one process writes the table and the plots
        return rows
    from .plots import comparison_plots

    comparison_plots({f"{r['method']}-seed{r['seed']}": RunDir(out / f"{r['method']}-seed{r['seed']}")
                      for r in rows}, out)
    return rows


def _verdicts(out: Path, rows: list[dict]) -> dict[tuple[str, int], list[bool]]:
    """Each finished run's final per-question verdicts (summary.json), by (method, seed)."""
    found = {}
    for r in rows:
        run = RunDir(out / f"{r['method']}-seed{r['seed']}")
        verdicts = run.summary().get("verdicts_after") if run.summary_path.exists() else None
        if verdicts:
            found[(r["method"], r["seed"])] = verdicts
    return found


def paired_differences(reference: str, rows: list[dict], verdicts: dict) -> list[dict]:
    """``reference`` against every other method on the same held-out questions, seed paired with seed:
    the mean difference in final accuracy with its 95% CI over seeds (Student t), and McNemar's test
    pooled over seeds and questions (questions only the reference got right against those only the
    other got right)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        if method == reference:
            continue
        seeds = sorted({r["seed"] for r in rows if r["method"] == method}
                       & {r["seed"] for r in rows if r["method"] == reference})
        acc = {(r["method"], r["seed"]): r["greedy_accuracy"] for r in rows}
        diffs = [acc[(reference, s)] - acc[(method, s)] for s in seeds
                 if acc.get((reference, s)) is not None and acc.get((method, s)) is not None]
        mean, half = mean_ci(diffs)
        wins = losses = 0
        for s in seeds:
            a, b = verdicts.get((reference, s)), verdicts.get((method, s))
            if a and b and len(a) == len(b):
                other_only, reference_only = discordant(a, b)
                wins, losses = wins + reference_only, losses + other_only
        z = mcnemar_z(wins, losses)
        out.append({"method": method, "seeds": len(diffs), "difference": mean, "ci": half,
                    "reference_only": wins, "other_only": losses, "z": z})
    return out


def _coverage(summary: dict, out: str) -> float | None:
    """The summary's memory coverage, else the last one logged (runs from before STaR reported it)."""
    if summary.get("memory_coverage") is not None:
        return summary["memory_coverage"]
    logged = [r["memory_coverage"] for r in RunDir(out).metrics() if r.get("memory_coverage") is not None]
    return logged[-1] if logged else None


def _finished_or_resumed(config: TrainConfig, train_fn, train_kwargs) -> dict:
    """Run ``config``, unless its directory already holds it: a finished run (same config) is read
    back, an interrupted one resumed from its last checkpoint. So a killed compare loses nothing, and
    several ``trice compare`` processes (e.g. one per seed) can fill one output directory."""
    run = RunDir(config.out)
    if run.config_path.exists():
        saved = run.config()
        if config.prompt_format == "auto":  # a run saves the format auto resolved to
            config = dataclasses.replace(config, prompt_format=saved.prompt_format)
        # fields that change speed or placement, not what is computed
        ignore = dict(lr=None, out=None, threads=None, device=None, vllm_gpu_memory_utilization=0.3,
                      sampler_check_rows=0)
        if dataclasses.replace(saved, **ignore) != dataclasses.replace(config, **ignore) or (
                config.lr is not None and config.lr != saved.lr):
            raise TriceError(f"{run.path} holds a run with a different config; use another --out "
                             "or remove that directory")
        if run.summary_path.exists():
            return run.summary()
        if any(run.checkpoints_path.glob("*")):
            return train_fn(None, resume=str(run.path), **train_kwargs)
    return train_fn(config, **train_kwargs)


def _change(summary: dict) -> float | None:
    before, after = summary.get("greedy_accuracy_before"), summary.get("greedy_accuracy_after")
    return None if before is None or after is None else after - before


def _pooled_z(rows: list[dict]) -> str:
    z = mcnemar_z(sum(r["questions_gained"] or 0 for r in rows), sum(r["questions_lost"] or 0 for r in rows))
    return "-" if math.isnan(z) else f"{z:+.1f}"


def write_results(rows: list[dict], out: Path, verdicts: dict | None = None, reference: str | None = None) -> None:
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| method | runs | greedy accuracy | change | paired z | self-consistency | memory coverage | "
             "tokens sampled | token-passes | sequences scored | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]

        def cell(key, fmt="{:.3f}"):
            mean, half = mean_ci([r[key] for r in mine if r[key] is not None])
            if math.isnan(mean):
                return "-"
            return fmt.format(mean) + ("" if math.isnan(half) else " ± " + fmt.replace("+", "").format(half))

        lines.append(f"| {method} | {len(mine)} | {cell('greedy_accuracy')} | {cell('change', '{:+.3f}')} | "
                     f"{_pooled_z(mine)} | {cell('sc_accuracy')} | "
                     f"{cell('memory_coverage')} | {cell('tokens_sampled', '{:.0f}')} | {cell('token_passes', '{:.0f}')} | "
                     f"{cell('sequences_scored', '{:.0f}')} | {cell('wall_seconds', '{:.0f}')} |")
    lines.append("")
    lines.append("Means over seeds ± half-width of the 95% confidence interval (Student t). change: held-out "
                 "greedy accuracy after minus before training, same questions. paired z: McNemar's test pooled "
                 "over seeds, (questions turned right - turned wrong) / sqrt(their sum). token-passes: sampled "
                 "tokens + tokens run forward without gradient + 3 x scored tokens (trice.training.budget).")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    if reference not in methods:
        reference = next((m for m in ("trice", "trice-full", "trice-nocv") if m in methods), methods[0])
    pairs = paired_differences(reference, rows, verdicts or {})
    if pairs:
        lines += ["", f"## {reference} against each method, on the same held-out questions", "",
                  f"| method | seeds | {reference} - method (95% CI) | questions only {reference} got right / "
                  "only the method got right | McNemar z |", "|---|---|---|---|---|"]
        for p in pairs:
            ci = "" if math.isnan(p["ci"]) else f" ± {p['ci']:.3f}"
            diff = "-" if math.isnan(p["difference"]) else f"{p['difference']:+.3f}{ci}"
            z = "-" if math.isnan(p["z"]) else f"{p['z']:+.2f}"
            lines.append(f"| {p['method']} | {p['seeds']} | {diff} | {p['reference_only']} / {p['other_only']} | {z} |")
        lines += ["", "Differences of final held-out greedy accuracy, seed paired with seed (Student t over seeds); "
                  "McNemar's z pools the discordant questions over seeds (|z| > 1.96: p < 0.05, two-sided)."]
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
