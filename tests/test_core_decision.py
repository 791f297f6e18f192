import itertools

import pytest

from airflow_bqjobs.core.decision import Action, decide


def job(state, reason=None):
    status = {"state": state}
    if reason:
        status["errorResult"] = {"reason": reason, "message": "m"}
    return {"status": status}


EXPECTED = {
    # (state, errorResult reason, rerun_cancelled) -> action
    ("PENDING", None, True): Action.ATTACH,
    ("RUNNING", None, True): Action.ATTACH,
    ("DONE", None, True): Action.SUCCEED,
    ("DONE", "invalid", True): Action.NEXT_GENERATION,
    ("DONE", "jobBackendError", True): Action.NEXT_GENERATION,
    ("DONE", "stopped", True): Action.NEXT_GENERATION,
    ("DONE", "stopped", False): Action.FAIL,
    ("DONE", "invalid", False): Action.NEXT_GENERATION,
}


@pytest.mark.parametrize(
    "state, reason, rerun_cancelled",
    list(itertools.product(["PENDING", "RUNNING", "DONE"], [None, "invalid", "jobBackendError", "stopped"], [True, False])),
)
def test_every_combination(state, reason, rerun_cancelled):
    action = decide(job(state, reason), rerun_cancelled=rerun_cancelled)
    if state != "DONE":
        # an errorResult on a job still running is not final: keep waiting
        assert action is Action.ATTACH
    elif reason is None:
        assert action is Action.SUCCEED
    elif reason == "stopped" and not rerun_cancelled:
        assert action is Action.FAIL
    else:
        assert action is Action.NEXT_GENERATION
    key = (state, reason, rerun_cancelled)
    if key in EXPECTED:
        assert action is EXPECTED[key]


def test_no_job_means_insert():
    assert decide(None) is Action.INSERT
    assert decide(None, rerun_cancelled=False) is Action.INSERT


def test_missing_status_is_treated_as_pending():
    assert decide({}) is Action.ATTACH
