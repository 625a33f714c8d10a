"""Methods not yet proven at scale, kept apart as TRL keeps ``trl/experimental``: the likelihood-based
peers ``trice-soft``, ``jepo`` and ``latro`` (:mod:`.likelihood`; measured in docs/latent)."""
