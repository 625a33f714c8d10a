#!/usr/bin/env bash
# The calculator study (docs/tools/README.md): TRICE with the calculator against TRICE without it, STaR with
# it and direct prompt tuning, at one compute budget. Each argument is TASK:SEEDS (configs/tools-TASK.yaml);
# `trice compare` resumes, so the queue can be killed and restarted. One queue per task can run at a time.
set -euo pipefail
METHODS=${METHODS:-trice+calculator,trice,star+calculator,pt-direct}
for item in "$@"; do
  task=${item%%:*}; seeds=${item#*:}
  echo "== $(date -u +%FT%TZ) $task seeds $seeds"
  trice compare --config "configs/tools-$task.yaml" --methods "$METHODS" --reference trice+calculator \
    --seeds "$seeds" --out "runs/tools/$task" --threads 1
done
