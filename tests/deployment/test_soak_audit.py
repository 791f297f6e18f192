"""The soak's audit rules (soak_audit.py), one case each, on hand-made snapshots (no deployment)."""

from __future__ import annotations

from airflow_bqjobs.core.labels import airflow_labels
from tests.deployment.soak_audit import DriverRecord, audit, split_job_id

DAG = "bqjobs_soak"
RUN = "soak_s1_r000"
BASE = "airflow_bqjobs_soak_q_soak_s1_r000_m0_0123456789abcdef0123"
OTHER_BASE = "airflow_bqjobs_soak_q_soak_s1_r000_m0_fedcba9876543210fedc"
STOPPED = {"reason": "stopped", "message": "cancelled"}
BACKEND = {"reason": "jobBackendError", "message": "boom"}


def job(job_id, created, end, error=None, state="DONE", cancel=False, task="q", map_index=0):
    return {"job_id": job_id, "labels": airflow_labels(DAG, task, RUN, map_index), "state": state,
            "error_result": error if state == "DONE" else None, "created_at": created, "end_at": end,
            "cancel_requested": cancel, "parent_job_id": None}


def ti(state="success", end=100.0, task="q", map_index=0):
    return {"run_id": RUN, "task_id": task, "map_index": map_index, "state": state, "end_date": end}


def run_audit(jobs, tis, xcoms=None, record=None, **kw):
    xcoms = {(RUN, "q", 0): jobs[-1]["job_id"]} if xcoms is None else xcoms
    return audit(DAG, jobs, tis, xcoms, record or DriverRecord(), fake_to_wall=lambda f: f, **kw)


def marked_at(wall_time, try_number=1):
    """The driver's record of a mark-failed of TI (RUN, q, 0) while BASE ran."""
    return DriverRecord(marked_failed={(RUN, "q", 0): [BASE]}, marked_at={(RUN, "q", 0): (wall_time, try_number)})


def test_one_successful_job_whose_xcom_matches_passes():
    result = run_audit([job(BASE, 10, 50)], [ti()])
    assert result.failures() == {}
    assert (result.task_instances, result.jobs, result.successful_tis) == (1, 1, 1)


def test_a_job_failed_once_then_its_next_generation_passes():
    result = run_audit([job(BASE, 10, 20, BACKEND), job(f"{BASE}_1", 25, 60)], [ti()])
    assert result.failures() == {}


def test_a_generation_inserted_while_the_one_before_still_ran_is_a_duplicate():
    result = run_audit([job(BASE, 10, 40, BACKEND), job(f"{BASE}_1", 25, 60)], [ti()])
    assert len(result.duplicates) == 1 and "generation 1" in result.duplicates[0]


def test_a_generation_after_a_successful_job_is_a_duplicate():
    result = run_audit([job(BASE, 10, 20), job(f"{BASE}_1", 25, 60)], [ti()])
    assert result.duplicates


def test_a_new_id_base_without_a_clear_of_this_task_instance_is_a_duplicate():
    # e.g. the clear of another task of the run bumped dag_run.clear_number and re-keyed this retry
    result = run_audit([job(BASE, 10, 20, BACKEND), job(OTHER_BASE, 25, 60)], [ti()])
    assert len(result.duplicates) == 1 and "cleared 0 time(s)" in result.duplicates[0]


def test_a_new_id_base_after_a_clear_of_this_task_instance_passes():
    record = DriverRecord()
    record.clears[(RUN, "q", 0)] += 1
    result = run_audit([job(BASE, 10, 20), job(OTHER_BASE, 25, 60)], [ti()], record=record)
    assert result.failures() == {}


def test_a_job_still_running_at_the_end_is_orphaned():
    result = run_audit([job(BASE, 10, None, state="RUNNING")], [ti(state="failed")], xcoms={})
    assert len(result.orphaned) == 1 and "still RUNNING" in result.orphaned[0]


def test_a_job_that_ran_on_after_its_task_instance_finished_is_orphaned():
    result = run_audit([job(BASE, 10, 200)], [ti(state="failed", end=100)], xcoms={})
    assert len(result.orphaned) == 1 and "past its task instance's end" in result.orphaned[0]


def test_a_job_stopped_on_request_after_its_task_instance_finished_is_not_orphaned():
    record = DriverRecord(marked_failed={(RUN, "q", 0): [BASE]})
    result = run_audit([job(BASE, 10, 130, STOPPED, cancel=True)], [ti(state="failed", end=100)], xcoms={},
                       record=record)
    assert result.failures() == {}


def test_a_successful_task_instance_whose_xcom_names_another_job_lost_its_result():
    result = run_audit([job(BASE, 10, 50)], [ti()], xcoms={(RUN, "q", 0): f"{BASE}_1"})
    assert len(result.lost_results) == 1


def test_a_successful_task_instance_whose_last_job_failed_lost_its_result():
    result = run_audit([job(BASE, 10, 50, BACKEND)], [ti()])
    assert result.lost_results


def test_a_task_instance_marked_failed_whose_job_was_stopped_passes():
    record = DriverRecord(marked_failed={(RUN, "q", 0): [BASE]})
    result = run_audit([job(BASE, 10, 50, STOPPED, cancel=True)], [ti(state="failed")], xcoms={}, record=record)
    assert result.failures() == {}


def test_a_task_instance_marked_failed_whose_job_ran_to_success_is_reported():
    record = DriverRecord(marked_failed={(RUN, "q", 0): [BASE]})
    result = run_audit([job(BASE, 10, 50)], [ti(state="failed")], xcoms={}, record=record)
    assert len(result.marked_failed_not_stopped) == 1


def test_a_mark_failed_whose_cancel_came_after_the_job_ended_on_its_own_passes_and_is_reported():
    # marked at 40 with 4 s left (end 44); the triggerer took 6 s to stop the trigger: cancel at 46
    result = run_audit([job(BASE, 10, 44)], [ti(state="failed", end=40)], xcoms={}, record=marked_at(40),
                       cancel_calls={BASE: 46.0}, triggers_started={((RUN, "q", 0), 1)})
    assert result.failures() == {}
    assert len(result.cancelled_after_natural_end) == 1 and result.mark_to_cancel_s == [6.0]


def test_a_mark_failed_whose_cancel_came_later_than_the_bound_is_reported():
    result = run_audit([job(BASE, 10, 44)], [ti(state="failed", end=40)], xcoms={}, record=marked_at(40),
                       cancel_calls={BASE: 140.0}, triggers_started={((RUN, "q", 0), 1)}, cancel_bound_s=60)
    assert len(result.marked_failed_not_stopped) == 1


def test_a_mark_failed_with_a_started_trigger_and_no_cancel_is_reported():
    result = run_audit([job(BASE, 10, 50)], [ti(state="failed", end=40)], xcoms={}, record=marked_at(40),
                       triggers_started={((RUN, "q", 0), 1)})
    assert len(result.marked_failed_not_stopped) == 1 and len(result.orphaned) == 1


def test_a_mark_failed_before_any_triggerer_started_the_trigger_passes_and_is_reported():
    # Airflow deletes the trigger row and runs nothing for the task: the job runs to its end
    result = run_audit([job(BASE, 10, 50)], [ti(state="failed", end=40)], xcoms={}, record=marked_at(40),
                       triggers_started={((RUN, "q", 0), 2)})  # only another try's trigger ran
    assert result.failures() == {}
    assert len(result.marked_before_trigger_ran) == 1


def test_a_marked_job_still_running_at_the_end_is_orphaned_even_if_its_trigger_never_ran():
    result = run_audit([job(BASE, 10, None, state="RUNNING")], [ti(state="failed", end=40)], xcoms={},
                       record=marked_at(40), triggers_started=set())
    assert len(result.orphaned) == 1


def test_a_cancel_no_user_asked_for_is_reported():
    # a takeover, a killed worker or a zombie try cancelled the job of a task nobody touched
    result = run_audit([job(BASE, 10, 20, STOPPED, cancel=True), job(f"{BASE}_1", 25, 60)], [ti()])
    assert len(result.cancelled_not_by_user) == 1


def test_a_job_of_a_task_instance_the_audit_does_not_know_is_reported():
    result = run_audit([job(BASE, 10, 50), job("airflow_x_0123456789abcdef0123", 10, 50, task="gone")], [ti()],
                       xcoms={(RUN, "q", 0): BASE})
    assert result.unowned_jobs == ["airflow_x_0123456789abcdef0123"]


def test_split_job_id_reads_base_and_generation():
    assert split_job_id(BASE) == (BASE, 0)
    assert split_job_id(f"{BASE}_12") == (BASE, 12)
