#!/usr/bin/env bash
# The CeleryExecutor soak (tests/deployment/test_celery_soak.py, marker `soak`): PostgreSQL + Redis +
# scheduler, dag-processor, api-server, two Celery workers and two triggerers, a seeded driver killing
# workers, stalling triggerers, clearing and marking tasks, then an audit of the fake BigQuery.
#
#   bash scripts/soak.sh [pytest args...]
#   BQJOBS_SOAK_RUNS=40 BQJOBS_SOAK_CHAOS_S=900 BQJOBS_SOAK_SEED=7 bash scripts/soak.sh   # longer soak
#
# Defaults (bounded: ~10 minutes with start-up on a loaded 2-core machine): 6 DAG runs x 16 task instances, 150 s of
# chaos, seed 11. Installs postgresql / redis-server with apt-get when missing (root). Bounded by
# `timeout` (chaos + drain + 10 minutes). On a shared machine run it as
# `flock /tmp/bqjobs-heavy.lock bash scripts/soak.sh` (one heavy run at a time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
limit=$(( ${BQJOBS_SOAK_CHAOS_S:-150} + ${BQJOBS_SOAK_DRAIN_S:-420} + 600 ))
exec timeout --signal=TERM --kill-after=60 "${limit%.*}" \
    env BQJOBS_TEST_WORKERS=0 bash scripts/test.sh -m soak tests/deployment/test_celery_soak.py "$@"
