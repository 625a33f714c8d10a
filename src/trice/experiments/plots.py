"""Plots and reports from run directories (matplotlib, PNG; no display needed).

``comparison_plots`` draws one figure per quantity with a colour per method and a line per seed, and
the learning curves against compute (token-passes, :mod:`trice.training.budget`) as the mean over seeds with a
95% band; ``learning_curves`` draws those with one panel per task (a study of several ``compare``
directories); :mod:`trice.experiments.report` draws them for one run.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..artifacts.run_dir import RunDir  # noqa: E402
from ..evaluation.statistics import mean_ci  # noqa: E402

CURVES = [  # (metric key in the per-step records, title, file name, log scale)
    ("proposal_accuracy", "training proposal accuracy", "proposal_accuracy.png", False),
    ("memory_coverage", "memory coverage (training examples with a correct rationale)", "memory_coverage.png", False),
    ("mean_beta", "mean beta (leave-one-out acceptance rate)", "mean_beta.png", False),
    ("grad_variance", "gradient variance estimate (EMA of |g|^2 - |EMA g|^2)", "grad_variance.png", True),
]


def _smooth(values: list[float], window: int = 10) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        acc = acc[-window:]
        out.append(sum(acc) / len(acc))
    return out


def _steps(run: RunDir) -> list[dict]:
    return [r for r in run.metrics() if "event" not in r]


def evaluations(run: RunDir) -> list[dict]:
    return [r for r in run.metrics() if r.get("event") == "eval"]


def comparison_plots(runs: dict[str, RunDir], out: str | Path) -> list[Path]:
    """``runs`` maps "<method>-seed<seed>" to its run directory; returns the PNG files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    colour = _colours({"": runs})
    files = []

    files.append(learning_curves({"": runs}, out / "accuracy_vs_compute.png"))
    for key, title in (("proposal_accuracy", "training proposal accuracy"), ("memory_coverage", "memory coverage")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        _bands(ax, runs, lambda run: [(_compute(r), r[key]) for r in _steps(run) if r.get(key) is not None],
               colours=colour)
        _finish(ax, f"{title} against compute (mean over seeds, 95% band)", "token-passes", key)
        files.append(_save(fig, out / f"{key}_vs_compute.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, run in runs.items():
        method = _method(label)
        evals = evaluations(run)
        if evals:
            ax.plot([e.get("tokens_sampled", 0) for e in evals], [e["greedy_accuracy"] for e in evals],
                    "o-", color=colour[method], alpha=0.8, label=method)
    _finish(ax, "held-out greedy accuracy against sampled tokens", "tokens sampled", "accuracy")
    files.append(_save(fig, out / "accuracy_vs_tokens.png"))

    for key, title, name, log in CURVES:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        drawn = False
        for label, run in runs.items():
            method = _method(label)
            rows = [r for r in _steps(run) if r.get(key) is not None]
            if rows:
                ax.plot([r["step"] for r in rows], _smooth([r[key] for r in rows]), color=colour[method],
                        alpha=0.8, label=method)
                drawn = True
        if log and drawn:
            ax.set_yscale("log")
        _finish(ax, title + " (moving average of 10 steps)", "step", key)
        files.append(_save(fig, out / name))
    return files


def _compute(record: dict) -> float:
    """A record's compute: token-passes, or sampled tokens for runs from before the unit existed."""
    return record.get("token_passes", record.get("tokens_sampled", 0))


def _curve(run: RunDir) -> list[tuple[float, float]]:
    """(token-passes, accuracy on the fixed subset) at every evaluation of the run; runs without
    subset evaluations use the full held-out accuracy."""
    return [(_compute(e), e.get("subset_accuracy", e["greedy_accuracy"])) for e in evaluations(run)]


def _method(label: str) -> str:
    return label.rsplit("-seed", 1)[0]


def _colours(tasks: dict[str, dict[str, RunDir]]) -> dict[str, tuple]:
    """One colour per method across every panel of a figure, in order of first appearance."""
    methods = list(dict.fromkeys(_method(label) for runs in tasks.values() for label in runs))
    return {method: plt.cm.tab10(i % 10) for i, method in enumerate(methods)}


def _bands(ax, runs: dict[str, RunDir], points, limits: tuple[float, float] = (0.0, 1.0),
           colours: dict[str, tuple] | None = None) -> None:
    """Per method: each seed's (x, y) points interpolated onto a common grid up to the shortest seed's
    last x, then the mean and the 95% confidence band (Student t) over seeds; one seed: its line. The band
    is clipped to ``limits`` (every curve drawn here is a fraction: with 3 seeds a t band can pass 0 or 1).
    ``colours``: method -> colour (the same across a figure's panels); default, this panel's own ``_colours``."""
    colours = colours or _colours({"": runs})
    by_method: dict[str, list] = {}
    for label, run in runs.items():
        xy = sorted(points(run))
        if xy:
            by_method.setdefault(_method(label), []).append(xy)
    for method, curves in by_method.items():
        end = min(c[-1][0] for c in curves)
        start = max(c[0][0] for c in curves)
        grid = np.linspace(start, end, 50) if end > start else np.array([end])
        ys = np.array([np.interp(grid, [p[0] for p in c], [p[1] for p in c]) for c in curves])
        stats = [mean_ci(list(col)) for col in ys.T]
        mean = np.array([m for m, _ in stats])
        half = np.array([0.0 if np.isnan(h) else h for _, h in stats])
        colour = colours[method]
        ax.plot(grid, mean, color=colour, label=f"{method} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
        low, high = np.clip(mean - half, *limits), np.clip(mean + half, *limits)
        ax.fill_between(grid, low, high, color=colour, alpha=0.2)


def learning_curves(tasks: dict[str, dict[str, RunDir]], path: str | Path) -> Path:
    """Held-out greedy accuracy against compute, one panel per task: ``tasks`` maps a task label to its
    runs ("<method>-seed<seed>" -> run directory). Accuracy is on the learning curve's fixed subset of
    the held-out questions (config.eval_subset), mean over seeds with a 95% band."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    colours = _colours(tasks)
    for ax, (task, runs) in zip(axes[0], tasks.items()):
        _bands(ax, runs, _curve, colours=colours)
        _finish(ax, f"{task + ': ' if task else ''}held-out greedy accuracy against compute", "token-passes",
                "accuracy (fixed held-out subset)")
    return _save(fig, Path(path))


def training_curves(tasks: dict[str, dict[str, RunDir]], key: str, path: str | Path) -> Path:
    """A training quantity logged each step (``proposal_accuracy``, ``memory_coverage``) against compute,
    one panel per task, mean over seeds with a 95% band; methods that never log it are left out."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    colours = _colours(tasks)
    for ax, (task, runs) in zip(axes[0], tasks.items()):
        _bands(ax, runs, lambda run: [(_compute(r), r[key]) for r in _steps(run) if r.get(key) is not None],
               colours=colours)
        _finish(ax, f"{task + ': ' if task else ''}{key.replace('_', ' ')} against compute", "token-passes", key)
    return _save(fig, Path(path))


def _finish(ax, title, xlabel, ylabel):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one legend entry per method
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.grid(alpha=0.3)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
