#!/usr/bin/env bash
# Runs parts of the compute-fair study one after another (docs/study/README.md). Each argument is TASK:SEEDS,
# e.g. `benchmarks/study_queue.sh basic_arithmetic:0 sports_understanding:0`. `trice compare` resumes, so the
# queue can be killed and restarted; run two queues on different tasks to use both cores of a 2-core machine
# (never two queues on the same task: they would share one results.md).
set -euo pipefail
# BIG-Bench Hard from the shared data folder beside the checkout unless TRICE_DATA_DIR says otherwise (no hub here)
if [ -z "${TRICE_DATA_DIR:-}" ] && [ -d ../shared/data ]; then export TRICE_DATA_DIR=$(cd ../shared/data && pwd); fi
METHODS=${METHODS:-trice,rloo,star,trice-nocv,rs,pt-direct,fewshot-cot}
for item in "$@"; do
  task=${item%%:*}; seeds=${item#*:}
  echo "== $(date -u +%FT%TZ) $task seeds $seeds"
  trice compare --config "configs/study-$task.yaml" --methods "$METHODS" --seeds "$seeds" \
    --out "runs/study/$task" --threads 1
done
