"""What a process needs to know about where it runs: its place among the processes of a job
(:mod:`.distributed`) and whether it was asked to stop (:mod:`.interrupts`). Everything above imports
these; they import nothing of trice but its errors."""
