"""What the fake holds for one task instance, checked against what the task returned.

The exactly-once promise, per task instance: one successful job, and no other job beyond one per
failed generation the scenario caused; nothing left PENDING or RUNNING; the task's result (returned
reference, ``return_value`` and ``job_summary`` XComs) names the successful job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from airflow_bqjobs.operators._waiting import SUMMARY_XCOM_KEY
from tests.reliability.attempt_driver import SUCCESS, TaskInstanceSpec, TaskRun
from tests.reliability.crash_points import Probe
from tests.reliability.task_context import XComStore, build_context

UNFINISHED = ("PENDING", "RUNNING")
# The fake's clock follows this machine's wall clock (unless a test froze it, which only delays it).
CLOCK_SLACK_S = 0.05


def base_job_id(spec: TaskInstanceSpec) -> str:
    """The generation-0 job ID the operator derives for this task instance (pure: no request)."""
    operator = spec.make_operator()
    context = build_context(spec.key, operator, try_number=1, max_tries=operator.retries or 0,
                            clear_number=spec.clear_number, xcom=XComStore(), probe=Probe())
    operator.render_template_fields(context)
    base, _ = operator.build_job(context)
    return base.job_id


def jobs_of(jobs: Iterable[dict], base: str) -> list[dict]:
    """The fake's jobs of one task instance: the base ID and its generations, oldest first."""
    mine = [j for j in jobs if j["job_id"] == base or j["job_id"].startswith(base + "_")]
    return sorted(mine, key=lambda j: 0 if j["job_id"] == base else int(j["job_id"].rsplit("_", 1)[1]))


def succeeded(job: dict) -> bool:
    return job["state"] == "DONE" and not job["error_result"]


def reference(job: dict) -> dict[str, str]:
    return {"projectId": job["project"], "location": job["location"], "jobId": job["job_id"]}


@dataclass
class Audit:
    duplicates: int = 0  # successful jobs beyond one, plus jobs beyond what the failures justify
    orphans: int = 0  # jobs of this task instance not DONE when its task run was over (or still not DONE)
    lost: int = 0  # 1 if the task did not end with the successful job as its result
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.orphans or self.lost or self.problems)


def audit_task_run(run: TaskRun, jobs: list[dict], *, failed_generations: int) -> Audit:
    """Check one successful task run against its jobs (``jobs_of`` the fake's snapshot)."""
    audit = Audit()
    good = [j for j in jobs if succeeded(j)]
    audit.duplicates = max(0, len(good) - 1) + max(0, len(jobs) - (failed_generations + 1))
    audit.orphans = sum(j["state"] in UNFINISHED or j["end_at"] > run.finished_at + CLOCK_SLACK_S for j in jobs)
    if audit.duplicates:
        audit.problems.append(f"{len(jobs)} jobs ({len(good)} successful), expected {failed_generations + 1}"
                              f" with 1 successful: {[(j['job_id'], j['state'], j['error_result']) for j in jobs]}")
    if audit.orphans:
        audit.problems.append(f"{audit.orphans} job(s) left running after the task run ended: "
                              f"{[(j['job_id'], j['state'], j['end_at'] - run.finished_at) for j in jobs]}")
    problem = _result_problem(run, good[-1] if good else None)
    if problem:
        audit.lost = 1
        audit.problems.append(problem)
    return audit


def _result_problem(run: TaskRun, job: dict | None) -> str | None:
    if run.state != SUCCESS:
        return f"task ended {run.state}: {run.final.error!r}"
    if job is None:
        return f"task succeeded with {run.result} but no job succeeded"
    expected = reference(job)
    if run.result != expected:
        return f"task returned {run.result}, the successful job is {expected}"
    if run.xcom.get("return_value") != expected:
        return f"return_value XCom {run.xcom.get('return_value')} != {expected}"
    summary: dict[str, Any] = run.xcom.get(SUMMARY_XCOM_KEY) or {}
    seen = (summary.get("job_id"), summary.get("project_id"), summary.get("location"), summary.get("state"),
            summary.get("error_result"))
    if seen != (job["job_id"], job["project"], job["location"], "DONE", None):
        return f"job_summary XCom {seen} does not describe the successful job {expected}"
    return None
