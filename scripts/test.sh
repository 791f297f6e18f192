#!/usr/bin/env bash
# Runs the test suite in the locked dev venv:  bash scripts/test.sh [pytest args...]
#
# Creates .venv if missing, syncs it to requirements/lock-py311.txt plus the project (editable),
# then runs `python -m pytest "$@"` (no arguments: the whole suite, testpaths in pyproject.toml).
# Exit code: pytest's, except that "no tests collected" (pytest's 5) is a failure too (1).
#
# Workers: the tests run in BQJOBS_TEST_WORKERS pytest-xdist processes (default 2; 0 = in this one
# process), one test file per worker at a time (`--dist loadfile`, so a module's fixtures are built
# once). Each worker has its own AIRFLOW_HOME, SQLite metadata DB and fake BigQuery server
# (tests/conftest.py). Not added when the arguments choose themselves (-n, -p no:xdist, --pdb, -s),
# nor when the venv's lock lacks pytest-xdist (a warning says so).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh

start=$(date +%s.%N)
elapsed() { awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

ensure_venv
echo "[test] venv ready in $(elapsed) s ($("$VENV_DIR/bin/python" -V))" >&2

workers=("-n" "${BQJOBS_TEST_WORKERS:-2}" "--dist" "loadfile")
[[ "${BQJOBS_TEST_WORKERS:-2}" != 0 ]] || workers=()
if [[ ${#workers[@]} -gt 0 ]] && ! compgen -G "$VENV_DIR/lib/python*/site-packages/xdist/__init__.py" >/dev/null; then
    echo "[test] WARNING: pytest-xdist is not in $(basename "$LOCK_FILE") (regenerate it: bash scripts/lock.sh $BQJOBS_AIRFLOW); one process" >&2
    workers=()
fi
for arg in "$@"; do
    case "$arg" in
        -n | -n* | --numprocesses* | --dist* | no:xdist | --pdb | --trace | -s | --capture=no) workers=() ;;
    esac
done

rc=0
"$VENV_DIR/bin/python" -m pytest "${workers[@]}" "$@" || rc=$?

if [[ $rc -eq 5 ]]; then
    echo "[test] FAILED: pytest collected no tests (exit 5); a run that tests nothing is not green" >&2
    rc=1
fi
echo "[test] exit $rc; total $(elapsed) s" >&2
exit "$rc"
