#!/usr/bin/env bash
# The latent-reasoning peers (docs/latent/README.md): jepo, latro and trice-soft against trice, star and rloo at
# one compute budget. Each argument is TASK:SEEDS (configs/latent-TASK.yaml); `trice compare` resumes, so the
# queue can be killed and restarted. One queue per task can run at a time.
set -euo pipefail
METHODS=${METHODS:-jepo,latro,trice-soft,star,rloo,trice}
for item in "$@"; do
  task=${item%%:*}; seeds=${item#*:}
  echo "== $(date -u +%FT%TZ) $task seeds $seeds"
  trice compare --config "configs/latent-$task.yaml" --methods "$METHODS" --reference trice \
    --seeds "$seeds" --out "runs/latent/$task" --threads 1
done
