"""Gradient estimators as pure functions over tensors, testable without a model: TRICE's (:mod:`.trice`:
the leave-one-out ``beta``, the 2M signed terms, the ``subsample`` drawn by systematic resampling ∝ |w|),
the likelihood methods' (:mod:`.likelihood`), and the leave-one-out baselines they share
(:mod:`.leave_one_out`)."""

from .leave_one_out import leave_one_out_logmeanexp, leave_one_out_mean
from .trice import (
                    ESTIMATORS,
                    Terms,
                    cv_coefficients,
                    estimator_terms,
                    merge_duplicates,
                    subsample_terms,
                    systematic_resample,
                    trice_weights,
)

__all__ = ["ESTIMATORS", "Terms", "cv_coefficients", "estimator_terms", "leave_one_out_logmeanexp",
           "leave_one_out_mean", "merge_duplicates", "subsample_terms", "systematic_resample", "trice_weights"]
