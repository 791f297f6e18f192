#!/usr/bin/env bash
# Benchmarks, side by side with apache-airflow-providers-google:  bash scripts/bench.sh [--quick]
#
# Syncs the dev venv (.venv, from the lock) and a second one, .bench-venv, that holds the same lock
# plus Google's provider (benchmarks/requirements-google.txt), then runs benchmarks/run.py: it prints
# one table per benchmark, ours next to Google's, and writes the summary to benchmarks/results.md.
# Our side runs in .venv (what our users install), Google's in .bench-venv. Takes about 30 minutes on
# 2 cores: ~7 for the import, trigger and submit figures, ~21 for the capacity run (benchmarks/capacity.py:
# N = 100, 1,000 and 5,000 triggers on jobs of 60-300 s, ours, main's and Google's). Run it under
# `flock /tmp/bqjobs-heavy.lock timeout 3600` on a shared machine.
#
#   --quick    triggers at N=50 only, 50 submits, capacity at N=20/200 on jobs of 10-30 s (~10 minutes)
#   --relock   re-resolve benchmarks/requirements-google.txt from the lock's versions plus
#              benchmarks/requirements-google.in, then exit
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh

BENCH_LOCK="benchmarks/requirements-google.txt"

if [[ "${1:-}" == "--relock" ]]; then
    ensure_venv
    # Seeded with the project lock, which uv keeps as preferences: only what the provider forces moves.
    cp "$LOCK_FILE" "$BENCH_LOCK"
    exec "$VENV_DIR/bin/uv" pip compile pyproject.toml --extra test benchmarks/requirements-google.in \
        --python-version 3.11 --custom-compile-command "bash scripts/bench.sh --relock" -o "$BENCH_LOCK"
fi

start=$(date +%s.%N)
ensure_venv
DEV_VENV="$VENV_DIR"
VENV_DIR="$REPO_ROOT/.bench-venv" LOCK_FILE="$REPO_ROOT/$BENCH_LOCK" ensure_venv
echo "[bench] venvs ready in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s" >&2

export BENCH_OURS_PYTHON="$DEV_VENV/bin/python"
export BENCH_GOOGLE_PYTHON="$REPO_ROOT/.bench-venv/bin/python"
exec "$BENCH_OURS_PYTHON" -m benchmarks.run "$@"
