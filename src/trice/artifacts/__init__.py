"""What a run leaves on disk and where else it reports: the run directory (:mod:`.run_dir`) and the
experiment trackers of ``--report-to`` (:mod:`.trackers`)."""
