"""Studies over many runs: ``trice compare`` (:mod:`.compare`), its plots (:mod:`.plots`) and one run's
report (:mod:`.report`)."""
