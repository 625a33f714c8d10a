"""Training: the one loop (:mod:`.loop`), the set-up every command shares (:mod:`.setup`), the state a
checkpoint holds (:mod:`.state`, written by :mod:`.checkpoint`), the compute budget (:mod:`.budget`),
the optimiser (:mod:`.optim`), the held-out evaluations along the way (:mod:`.evaluations`) and the
terminal output (:mod:`.progress`)."""
