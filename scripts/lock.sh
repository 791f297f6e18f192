#!/usr/bin/env bash
# Regenerates the per-Airflow-version locks:  bash scripts/lock.sh [VERSION...]   (default: all)
#
# One lock per supported Airflow minor, each `uv pip compile` of pyproject.toml (extra `test`) plus
# requirements/airflow-X.Y.in (the exact Airflow release and the pins that release needs, since
# Airflow's constraints files cannot be fetched here). 3.3 is the default lock,
# requirements/lock-py311.txt; the others are requirements/lock-py311-airflowX.Y.txt. An existing
# lock is kept as uv's preferences, so only what changed moves (delete a lock to re-resolve it fully).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh

versions=("$@")
[[ ${#versions[@]} -gt 0 ]] || versions=("${BQJOBS_AIRFLOW_VERSIONS[@]}")
ensure_venv
for v in "${versions[@]}"; do
    lock="$(bqjobs_lock_for "$v")"
    [[ -f "requirements/airflow-$v.in" ]] || _venv_die "no requirements/airflow-$v.in (supported: ${BQJOBS_AIRFLOW_VERSIONS[*]})"
    _venv_log "Airflow $v -> $lock"
    "$VENV_DIR/bin/uv" pip compile pyproject.toml "requirements/airflow-$v.in" --extra test \
        --python-version "$LOCK_PYTHON" --custom-compile-command "bash scripts/lock.sh $v" --quiet -o "$lock"
done
