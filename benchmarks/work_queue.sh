#!/usr/bin/env bash
# A worker that takes `trice compare` jobs from a shared queue file until it is empty: run several workers (one
# per core, e.g. under `nice -n 19` beside interactive work) on one queue. Each line of QUEUE is
#   CONFIG OUT METHODS SEEDS [REFERENCE]
# (e.g. `configs/study-gcd.yaml runs/study2/gcd trice,grpo,grpo@k=8 1 trice`; REFERENCE must be one of METHODS); a line is taken under a lock,
# so no two workers run it. `trice compare` resumes, so a killed worker loses at most its current step: put
# the line back to finish it. Two workers may share an OUT with different seeds: each rewrites results.md when
# a run ends, so run one last `trice compare` over all seeds to read every finished run back into it.
set -euo pipefail
queue=${1:?usage: benchmarks/work_queue.sh QUEUE_FILE}
if [ -z "${TRICE_DATA_DIR:-}" ] && [ -d ../shared/data ]; then export TRICE_DATA_DIR=$(cd ../shared/data && pwd); fi
while true; do
  line=$(flock "$queue.lock" bash -c 'line=$(head -n 1 "$0"); [ -n "$line" ] && sed -i 1d "$0"; echo "$line"' "$queue")
  [ -z "$line" ] && break
  read -r config out methods seeds reference <<< "$line"
  echo "== $(date -u +%FT%TZ) $config $methods seeds $seeds"
  # a refused or failed line is reported and skipped; the worker goes on with the next (put it back to retry)
  trice compare --config "$config" --methods "$methods" --seeds "$seeds" --out "$out" --threads 1 \
    ${reference:+--reference "$reference"} || echo "== FAILED (exit $?): $line"
done
