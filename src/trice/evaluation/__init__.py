"""Held-out evaluation (ALGORITHM.md section 4): greedy accuracy and self-consistency
(:mod:`.accuracy`), and the statistics reports use (:mod:`.statistics`)."""

from .accuracy import greedy_accuracy, self_consistency_accuracy
from .statistics import mcnemar_z, mean_ci, paired_counts, standard_error

__all__ = ["greedy_accuracy", "mcnemar_z", "mean_ci", "paired_counts", "self_consistency_accuracy", "standard_error"]
