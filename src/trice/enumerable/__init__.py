"""Latent-variable models small enough to enumerate, on which the estimators and the loop are proven
correct: TRICE's (:mod:`.model`: exact marginal likelihood, posterior and gradient) and the likelihood
methods' (:mod:`.soft`: a soft answer likelihood)."""

from .model import (
           EnumerableModel,
           gradient_draws,
           guide_probs,
           run_trice,
           with_acceptance_rate,
)
from .soft import SoftModel, soft_gradient_draws

__all__ = ["EnumerableModel", "SoftModel", "gradient_draws", "guide_probs", "run_trice", "soft_gradient_draws",
           "with_acceptance_rate"]
