#!/usr/bin/env bash
# The real-deployment test (tests/deployment, marker `deployment`): PostgreSQL + Airflow's scheduler,
# dag-processor, api-server and triggerer as separate processes, against the fake BigQuery server.
#
#   bash scripts/deployment_test.sh [pytest args...]      e.g. -s to watch progress live
#
# Needs Python 3.11 (the venv comes from scripts/test.sh) and, when PostgreSQL's server binaries are
# missing, root with apt-get: the session fixture then runs `apt-get update && apt-get install -y
# postgresql`. Only tests/deployment is collected, so the in-process suite's Airflow set-up (its
# SQLite DB) is not built for nothing. BQJOBS_KEEP_DEPLOYMENT=1 keeps the deployment's AIRFLOW_HOME.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# One process: the session fixture starts one deployment (and -s shows its progress live).
BQJOBS_TEST_WORKERS=0 exec bash scripts/test.sh -m "deployment and not soak" tests/deployment "$@"
