# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/run_examples.sh: makes the dev venv match the lock.
#
#   ensure_venv   creates $VENV_DIR if missing (python3 -m venv), puts uv into it if missing, then
#                 `uv pip sync` the lock together with the project as an editable install (no deps).
#
# Needs only Python 3.11 with venv/pip on a fresh machine. Quick (~0.1 s) when nothing changed.
# Settings (environment):
#   BQJOBS_AIRFLOW Airflow minor to test against: 2.11, 3.0, 3.1, 3.2 or 3.3 (default 3.3). Each has
#                  its own lock (requirements/lock-py311.txt for 3.3, else lock-py311-airflowX.Y.txt)
#                  and its own venv (.venv for 3.3, else .venv-afX.Y); scripts/lock.sh makes the locks.
#   BQJOBS_VENV    venv directory (default: from BQJOBS_AIRFLOW, see above)
#   BQJOBS_PYTHON  interpreter that creates a new venv (default: python3.11, else python3)
#   BQJOBS_LOCK    lock file (default: from BQJOBS_AIRFLOW, see above)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_PIN="uv==0.13.9"
LOCK_PYTHON="3.11"
# Supported Airflow minors, oldest first; the last is the default.
BQJOBS_AIRFLOW_VERSIONS=(2.11 3.0 3.1 3.2 3.3)
BQJOBS_AIRFLOW_DEFAULT="3.3"

_venv_log() { printf '[venv] %s\n' "$*" >&2; }
_venv_die() { printf '[venv] ERROR: %s\n' "$*" >&2; exit 1; }

bqjobs_lock_for() {  # VERSION -> lock path relative to the repo
    if [[ "$1" == "$BQJOBS_AIRFLOW_DEFAULT" ]]; then
        echo "requirements/lock-py311.txt"
    else
        echo "requirements/lock-py311-airflow$1.txt"
    fi
}

export BQJOBS_AIRFLOW="${BQJOBS_AIRFLOW:-$BQJOBS_AIRFLOW_DEFAULT}"  # tests check they run on it
case " ${BQJOBS_AIRFLOW_VERSIONS[*]} " in
    *" $BQJOBS_AIRFLOW "*) ;;
    *) _venv_die "BQJOBS_AIRFLOW=$BQJOBS_AIRFLOW is not a supported Airflow minor (${BQJOBS_AIRFLOW_VERSIONS[*]})" ;;
esac
if [[ "$BQJOBS_AIRFLOW" == "$BQJOBS_AIRFLOW_DEFAULT" ]]; then
    _default_venv="$REPO_ROOT/.venv"
else
    _default_venv="$REPO_ROOT/.venv-af$BQJOBS_AIRFLOW"
fi
VENV_DIR="${BQJOBS_VENV:-$_default_venv}"
LOCK_FILE="${BQJOBS_LOCK:-$REPO_ROOT/$(bqjobs_lock_for "$BQJOBS_AIRFLOW")}"

_venv_pick_python() {
    if [[ -n "${BQJOBS_PYTHON:-}" ]]; then
        echo "$BQJOBS_PYTHON"
    elif command -v "python$LOCK_PYTHON" >/dev/null 2>&1 && "python$LOCK_PYTHON" -c '' >/dev/null 2>&1; then
        echo "python$LOCK_PYTHON"
    elif command -v python3 >/dev/null 2>&1; then
        echo python3
    else
        _venv_die "no python3 on PATH (set BQJOBS_PYTHON)"
    fi
}

ensure_venv() {
    local py
    # A venv whose interpreter no longer runs (moved, or its base Python removed) is rebuilt.
    if [[ -e "$VENV_DIR" ]] && ! "$VENV_DIR/bin/python" -c '' >/dev/null 2>&1; then
        _venv_log "$VENV_DIR is broken: recreating it"
        rm -rf "$VENV_DIR"
    fi
    if [[ ! -x "$VENV_DIR/bin/python" ]]; then
        py="$(_venv_pick_python)"
        _venv_log "creating $VENV_DIR with $py ($("$py" -V 2>&1))"
        "$py" -m venv "$VENV_DIR" || _venv_die "'$py -m venv $VENV_DIR' failed (Debian: apt-get install python3-venv)"
    fi
    local have
    have="$("$VENV_DIR/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [[ "$have" != "$LOCK_PYTHON" ]]; then
        _venv_log "WARNING: $VENV_DIR runs Python $have but $(basename "$LOCK_FILE") is locked for $LOCK_PYTHON"
    fi

    if [[ ! -x "$VENV_DIR/bin/uv" ]]; then
        _venv_log "installing $UV_PIN into $VENV_DIR"
        if ! "$VENV_DIR/bin/python" -m pip --version >/dev/null 2>&1; then
            # venvs made by `uv venv` have no pip
            "$VENV_DIR/bin/python" -m ensurepip --default-pip >/dev/null || _venv_die "no pip in $VENV_DIR"
        fi
        "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check "$UV_PIN" \
            || _venv_die "pip install $UV_PIN failed"
    fi

    # One sync for the lock plus the project itself (editable, and like `--no-deps`: sync installs
    # exactly what it is given) plus uv. Syncing the lock alone would uninstall the editable project,
    # and reinstalling it afterwards rebuilds it on every run (~1.5 s); this way an unchanged venv is
    # a no-op. uv is listed because sync removes it (and pip) from venvs that `uv venv` made.
    [[ -f "$LOCK_FILE" ]] || _venv_die "lock file $LOCK_FILE not found"
    local editable_req
    editable_req="$(mktemp "${TMPDIR:-/tmp}/bqjobs-editable.XXXXXX")"
    printf -- '-e %s\n%s\n' "$REPO_ROOT" "$UV_PIN" >"$editable_req"
    local rc=0
    # --compile-bytecode: every .pyc written once here (~25 s for a new venv, under 1 s after), not
    # compiled again by each test process, worker and subprocess that imports Airflow (~10 s of CPU
    # each when PYTHONDONTWRITEBYTECODE is set or the venv is not writable).
    "$VENV_DIR/bin/uv" pip sync --compile-bytecode --python "$VENV_DIR/bin/python" "$LOCK_FILE" "$editable_req" || rc=$?
    rm -f "$editable_req"
    [[ $rc -eq 0 ]] || _venv_die "uv pip sync failed (exit $rc)"

    # A lock that no longer satisfies pyproject.toml shows up here (regenerate it: see README).
    if ! "$VENV_DIR/bin/uv" pip check --quiet --python "$VENV_DIR/bin/python" >/dev/null 2>&1; then
        _venv_log "WARNING: 'uv pip check' found unmet requirements; is $(basename "$LOCK_FILE") stale?"
        "$VENV_DIR/bin/uv" pip check --python "$VENV_DIR/bin/python" >&2 || true
    fi
}
