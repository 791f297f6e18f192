#!/usr/bin/env bash
# Runs the example DAGs end to end against a local BigQuery emulator (no Google account needed):
#
#   bash scripts/run_examples.sh [run_examples.py args, e.g. --dag-id ID]; a second pass that creates any job other than re-creations of jobs whose metadata the first pass deleted fails the run
#
# Prints a short report (per DAG run: task, job, inserted/reattached/reused, state, bytes, labels);
# everything else (uv, Airflow's full task logs, the emulator) goes to log files in a run directory
# that is kept (its path is printed first and last).
#
# 1. the dev venv (.venv), exactly as scripts/test.sh makes it (scripts/_venv.sh);
# 2. the emulator venv (.emulator-venv, Python 3.13): local-bigquery and DuckDB, with the DuckDB
#    extensions it needs installed from PyPI wheels into DuckDB's extension directory
#    (~/.duckdb/extensions/v1.5.5/...), since DuckDB cannot download them here;
# 3. starts `local-bigquery serve` on free loopback ports with a temporary data dir, waits for it,
#    and stops it on every exit path;
# 4. a temporary AIRFLOW_HOME, `airflow db migrate` (while the emulator starts), then
#    `python scripts/run_examples.py` with BIGQUERY_EMULATOR_HOST pointing at the emulator.
# Settings: EMULATOR_PYTHON (a Python 3.13 interpreter); BQJOBS_KEEP_EMULATOR=1 leaves the emulator
# running after the run, to look at its jobs with `bq` or curl (the last lines say how, and how to
# stop it); AIRFLOW__LOGGING__LOGGING_LEVEL (default INFO, into the task log file).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh

start=$(date +%s.%N)
elapsed() { awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
log() { printf '[examples %5ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf '[examples] ERROR: %s\n' "$*" >&2; exit 1; }

EMULATOR_VENV="$REPO_ROOT/.emulator-venv"
DUCKDB_VERSION="1.5.5"
DUCKDB_EXTENSIONS=(icu ducklake spatial inet)
EMULATOR_REQUIREMENTS=("local-bigquery==0.3.2" "duckdb==$DUCKDB_VERSION")
for _ext in "${DUCKDB_EXTENSIONS[@]}"; do
    EMULATOR_REQUIREMENTS+=("duckdb-extension-$_ext==$DUCKDB_VERSION")
done
EMULATOR_PROJECT="local"  # local-bigquery's default project

find_python313() {
    local candidate root
    if [[ -n "${EMULATOR_PYTHON:-}" ]]; then
        echo "$EMULATOR_PYTHON"
        return
    fi
    if root="$(pyenv root 2>/dev/null)"; then
        # newest 3.13.x first
        for candidate in $(ls -d "$root"/versions/3.13.* 2>/dev/null | sort -V -r); do
            if [[ -x "$candidate/bin/python3.13" ]]; then
                echo "$candidate/bin/python3.13"
                return
            fi
        done
    fi
    if command -v python3.13 >/dev/null 2>&1 && python3.13 -c '' >/dev/null 2>&1; then
        command -v python3.13
        return
    fi
    return 1
}

ensure_emulator_venv() {
    local py stamp want
    want="$(printf '%s\n' "${EMULATOR_REQUIREMENTS[@]}")"
    stamp="$EMULATOR_VENV/.bqjobs-requirements"
    if [[ -e "$EMULATOR_VENV" ]] && ! "$EMULATOR_VENV/bin/python" -c '' >/dev/null 2>&1; then
        log "$EMULATOR_VENV is broken: recreating it"
        rm -rf "$EMULATOR_VENV"
    fi
    if [[ ! -x "$EMULATOR_VENV/bin/python" ]]; then
        py="$(find_python313)" || die "the BigQuery emulator (local-bigquery) needs Python 3.13: none found \
under \$(pyenv root)/versions/3.13.* or as python3.13 on PATH. Install one (e.g. 'pyenv install 3.13') \
or point EMULATOR_PYTHON at it."
        log "creating $EMULATOR_VENV with $py"
        "$VENV_DIR/bin/uv" venv --quiet --python "$py" "$EMULATOR_VENV"
    fi
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" || ! -x "$EMULATOR_VENV/bin/local-bigquery" ]]; then
        log "installing ${EMULATOR_REQUIREMENTS[*]}"
        "$VENV_DIR/bin/uv" pip install --quiet --python "$EMULATOR_VENV/bin/python" "${EMULATOR_REQUIREMENTS[@]}"
        printf '%s\n' "$want" >"$stamp"
    fi
    # Install any extension DuckDB does not have yet from the wheel's file, then load each one.
    "$EMULATOR_VENV/bin/python" - "$DUCKDB_VERSION" "${DUCKDB_EXTENSIONS[@]}" <<'PY'
import importlib.util, os, sys
import duckdb

version, names = sys.argv[1], sys.argv[2:]
con = duckdb.connect()
installed = {
    name: path
    for name, ok, path in con.execute(
        "SELECT extension_name, installed, install_path FROM duckdb_extensions()"
    ).fetchall()
    if ok
}
for name in names:
    if name in installed and os.path.exists(installed[name]):
        continue
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    path = os.path.join(
        spec.submodule_search_locations[0], "extensions", f"v{version}", f"{name}.duckdb_extension"
    )
    con.execute(f"FORCE INSTALL '{path}'")
    print(f"[examples] installed DuckDB extension {name} from {path}", file=sys.stderr)
for name in names:
    con.execute(f"LOAD {name}")
PY
}

free_port() {
    "$VENV_DIR/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/bqjobs-examples.XXXXXX")"
KEEP_EMULATOR="${BQJOBS_KEEP_EMULATOR:-0}"
EMULATOR_PID=""
MIGRATE_PID=""
RUNNER_PID=""
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "$RUNNER_PID" "$MIGRATE_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n "$EMULATOR_PID" && "$KEEP_EMULATOR" == 1 && $rc -eq 0 ]] && kill -0 "$EMULATOR_PID" 2>/dev/null; then
        show_emulator
    elif [[ -n "$EMULATOR_PID" ]] && kill -0 "$EMULATOR_PID" 2>/dev/null; then
        kill -TERM "$EMULATOR_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$EMULATOR_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$EMULATOR_PID" 2>/dev/null || true
        wait "$EMULATOR_PID" 2>/dev/null || true
        log "emulator stopped"
    fi
    log "logs kept in $TMP_DIR: tasks.log (Airflow's full task logs, both runs), emulator.log, venv.log,"
    log "  airflow-home/db-migrate.log; delete the directory when done (rm -rf $TMP_DIR)"
    if [[ "$KEEP_EMULATOR" != 1 && $rc -eq 0 ]]; then
        log "to look at the jobs yourself (bq, curl): BQJOBS_KEEP_EMULATOR=1 bash scripts/run_examples.sh"
    fi
    log "total $(elapsed) s (exit $rc)"
    exit "$rc"
}
show_emulator() {
    local url="http://127.0.0.1:$PORT" jobs
    jobs="$("$VENV_DIR/bin/python" -c "import json, urllib.request
print(len(json.load(urllib.request.urlopen('$url/bigquery/v2/projects/$EMULATOR_PROJECT/jobs?allUsers=true&maxResults=1000')).get('jobs') or []))" 2>/dev/null || echo '?')"
    log "the emulator keeps running at $url (pid $EMULATOR_PID, project $EMULATOR_PROJECT, $jobs jobs); look with:"
    local bq="bq --api $url --project_id $EMULATOR_PROJECT --oauth_access_token=unused"
    log "  $bq ls -j -a -n $jobs"
    log "  $bq show -j <job id>"
    log "  curl -s '$url/bigquery/v2/projects/$EMULATOR_PROJECT/jobs?allUsers=true&maxResults=1000'"
    log "  (local-bigquery 0.3.2 answers nextPageToken: null, so 'bq ls -j' loops forever unless -n is"
    log "  at most the number of jobs, $jobs here; --oauth_access_token: the emulator checks no"
    log "  credentials, and without one bq asks for 'gcloud auth login')"
    log "  stop it with: kill $EMULATOR_PID"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "run directory (kept): $TMP_DIR"
log "dev venv (uv's output: $TMP_DIR/venv.log)"
if ! (ensure_venv) >"$TMP_DIR/venv.log" 2>&1; then
    tail -n 40 "$TMP_DIR/venv.log" >&2
    die "setting up .venv failed (log: $TMP_DIR/venv.log)"
fi
log "emulator venv"
ensure_emulator_venv

# --- Airflow: a throwaway home; its DB migrates while the emulator starts ------------------------
unset AIRFLOW_CONFIG AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
export AIRFLOW_HOME="$TMP_DIR/airflow-home"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__UNIT_TEST_MODE=False
export AIRFLOW__CORE__DAGS_FOLDER="$REPO_ROOT/example_dags"
# Full task logs (INFO: inserted / reattached lines, progress, final lines) go to tasks.log.
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
export GOOGLE_CLOUD_PROJECT="$EMULATOR_PROJECT"
# The provider's default connection (google_cloud_default compatible): the emulator's project.
export AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT="{\"conn_type\": \"bigquery_jobs\", \"extra\": {\"project\": \"$EMULATOR_PROJECT\"}}"
mkdir -p "$AIRFLOW_HOME"
log "airflow db migrate in the background (log $AIRFLOW_HOME/db-migrate.log)"
"$VENV_DIR/bin/airflow" db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 &
MIGRATE_PID=$!

# --- start the emulator (a port taken between free_port and bind: try again) --------------------
for attempt in 1 2 3; do
    PORT="$(free_port)"
    GRPC_PORT="$(free_port)"
    [[ "$PORT" != "$GRPC_PORT" ]] || continue
    mkdir -p "$TMP_DIR/emulator-data"
    log "starting local-bigquery on 127.0.0.1:$PORT (gRPC $GRPC_PORT), log $TMP_DIR/emulator.log"
    "$EMULATOR_VENV/bin/local-bigquery" serve --host 127.0.0.1 --port "$PORT" --grpc-port "$GRPC_PORT" \
        --project "$EMULATOR_PROJECT" --data-dir "$TMP_DIR/emulator-data" >"$TMP_DIR/emulator.log" 2>&1 &
    EMULATOR_PID=$!
    ready=0
    for _ in $(seq 1 300); do  # up to 60 s
        if ! kill -0 "$EMULATOR_PID" 2>/dev/null; then
            break
        fi
        if "$VENV_DIR/bin/python" -c "import sys, urllib.request
try: urllib.request.urlopen('http://127.0.0.1:$PORT/bigquery/v2/projects/$EMULATOR_PROJECT/jobs', timeout=2)
except Exception: sys.exit(1)" 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.2
    done
    [[ $ready == 1 ]] && break
    wait "$EMULATOR_PID" 2>/dev/null || true
    EMULATOR_PID=""
    log "emulator did not come up (attempt $attempt); its log:"
    sed 's/^/    /' "$TMP_DIR/emulator.log" >&2 || true
done
[[ -n "$EMULATOR_PID" ]] || die "could not start the BigQuery emulator"
log "emulator ready (pid $EMULATOR_PID)"
export BIGQUERY_EMULATOR_HOST="http://127.0.0.1:$PORT"

migrate_rc=0
wait "$MIGRATE_PID" || migrate_rc=$?
MIGRATE_PID=""
if [[ $migrate_rc -ne 0 ]]; then
    tail -n 40 "$AIRFLOW_HOME/db-migrate.log" >&2
    die "airflow db migrate failed (exit $migrate_rc)"
fi
log "airflow db migrated"

log "python scripts/run_examples.py --expect-no-new-jobs --log-file $TMP_DIR/tasks.log $*"
rc=0
# In the background and waited for, so that a TERM/INT to this script is handled at once.
"$VENV_DIR/bin/python" scripts/run_examples.py --expect-no-new-jobs --log-file "$TMP_DIR/tasks.log" "$@" &
RUNNER_PID=$!
wait "$RUNNER_PID" || rc=$?
RUNNER_PID=""
log "run_examples.py exited with $rc"
exit "$rc"
