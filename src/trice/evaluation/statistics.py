"""The statistics every report uses: a proportion's standard error, a mean's 95% confidence interval over
seeds, and McNemar's paired test of two sets of verdicts on the same questions.

>>> round(standard_error(0.5, 100), 3)
0.05
>>> [round(x, 3) for x in mean_ci([0.2, 0.3, 0.4])]
[0.3, 0.248]
>>> paired_counts([True, False, False, True], [True, True, True, False])
{'questions_gained': 2, 'questions_lost': 1, 'paired_z': 0.5773502691896258}
"""

from __future__ import annotations

import math
import statistics

# two-sided 97.5% Student t quantiles by degrees of freedom (no SciPy dependency for this)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def standard_error(accuracy: float, n: int) -> float:
    """sqrt(p (1 - p) / n): the standard error of an accuracy measured on n questions (NaN for n = 0)."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) if n else float("nan")


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (Student t); NaN half-width for n < 2."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    if len(values) < 2:
        return values[0], float("nan")
    t = _T975.get(len(values) - 1, 1.96)
    return statistics.fmean(values), t * statistics.stdev(values) / math.sqrt(len(values))


def mcnemar_z(gained: int, lost: int) -> float:
    """McNemar's z for discordant pairs: (gained - lost) / sqrt(gained + lost); NaN with no discordant pair
    (|z| > 1.96: p < 0.05, two-sided)."""
    return (gained - lost) / math.sqrt(gained + lost) if gained + lost else float("nan")


def discordant(first: list[bool], second: list[bool]) -> tuple[int, int]:
    """(questions only ``second`` got right, questions only ``first`` got right), question by question."""
    gained = sum(1 for a, b in zip(first, second) if b and not a)
    lost = sum(1 for a, b in zip(first, second) if a and not b)
    return gained, lost


def paired_counts(before: list[bool], after: list[bool]) -> dict:
    """McNemar's paired comparison of the same questions before and after training: questions that turned
    right (gained) and turned wrong (lost), and z (0 when none changed)."""
    gained, lost = discordant(before, after)
    z = mcnemar_z(gained, lost)
    return {"questions_gained": gained, "questions_lost": lost, "paired_z": 0.0 if math.isnan(z) else z}
