"""The soak's audit: what the fake BigQuery saw, judged against what Airflow and the driver did.

Pure: it takes snapshots (the fake's jobs, the task instances and XComs from the metadata DB, the
driver's record of its actions) and returns the findings; tests/deployment/test_soak_audit.py
specifies it case by case, tests/deployment/test_celery_soak.py runs it on a real soak.

A task instance (TI) owns the jobs carrying its labels (dag, task, run, map index). Its job IDs are
``<base>[_<generation>]``: the base changes only when the TI is cleared (the rerun key), a generation
only replaces a job that ended in an error. The rules, one finding list each:

* duplicates: a job the TI should not have started: a generation inserted while the one before it
  was not DONE with an error, a second successful job under one base, or more bases than
  1 + the number of times the driver cleared that TI (a clear of another task re-keyed this one).
* orphaned: a job still PENDING/RUNNING at the end, or one that ran on (past a slack) after its TI
  had finished for good and was not stopped by a cancel request: nobody was waiting for it, nobody
  stopped it.
* lost results: a successful TI whose XCom ``return_value`` is not the job reference of its one
  successful job (last base), or whose job did not succeed.
* marked failed, not stopped: a TI the driver marked failed while its job was running, whose job
  did not end DONE with reason ``stopped``, except (reported apart, not failures):

  - the cancel request came within ``cancel_bound_s`` of the mark, but after the job had ended on its
    own (the driver marks jobs with a few seconds left; Airflow's triggerer takes seconds to stop
    a trigger);
  - the TI's trigger never started in any triggerer before the mark (no trigger log for that try):
    Airflow then deletes the trigger row and runs no code at all for the task, so nothing can
    cancel its job, which runs to its end (bounded by ``jobTimeoutMs``).
* cancelled, not by a user: a job with a cancel request whose TI the driver neither marked failed
  nor cleared (a triggerer takeover, a worker kill or a zombie try must never cancel).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from airflow_bqjobs.core.labels import DAG_LABEL, MAP_INDEX_LABEL, RUN_LABEL, TASK_LABEL, airflow_labels

FINISHED_TI = ("success", "failed", "upstream_failed", "skipped", "removed")
_ID_RE = re.compile(r"^(?P<base>.*_[0-9a-f]{20})(?:_(?P<gen>\d+))?$")

TiKey = tuple[str, str, int]  # run_id, task_id, map_index


@dataclass
class DriverRecord:
    """What the driver did to which TI (the audit's notion of "a user asked for it")."""

    clears: dict[TiKey, int] = field(default_factory=lambda: defaultdict(int))
    marked_failed: dict[TiKey, list[str]] = field(default_factory=dict)  # TI -> job ids RUNNING when marked
    marked_at: dict[TiKey, tuple[float, int]] = field(default_factory=dict)  # TI -> (wall time, try) of the mark


@dataclass
class AuditResult:
    task_instances: int = 0
    jobs: int = 0
    successful_tis: int = 0
    duplicates: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    lost_results: list[str] = field(default_factory=list)
    marked_failed_not_stopped: list[str] = field(default_factory=list)
    cancelled_not_by_user: list[str] = field(default_factory=list)
    unowned_jobs: list[str] = field(default_factory=list)  # jobs whose labels match no TI
    # Reported, not failures (see the module docstring):
    marked_before_trigger_ran: list[str] = field(default_factory=list)
    cancelled_after_natural_end: list[str] = field(default_factory=list)
    mark_to_cancel_s: list[float] = field(default_factory=list)  # wall seconds from a mark to its cancel request

    def failures(self) -> dict[str, list[str]]:
        return {name: items for name in ("duplicates", "orphaned", "lost_results", "marked_failed_not_stopped",
                                         "cancelled_not_by_user", "unowned_jobs")
                if (items := getattr(self, name))}


def split_job_id(job_id: str) -> tuple[str, int]:
    """(base, generation) of a derived job ID."""
    match = _ID_RE.match(job_id)
    if match is None:
        return job_id, 0
    return match["base"], int(match["gen"] or 0)


def _ok(job: dict) -> bool:
    return job["state"] == "DONE" and not job["error_result"]


def _failed(job: dict) -> bool:
    return job["state"] == "DONE" and bool(job["error_result"])


def _stopped_on_request(job: dict) -> bool:
    """Cancelled on a request (someone noticed it); whether that someone was a user is the last rule."""
    return bool(job.get("cancel_requested")) and (job["error_result"] or {}).get("reason") == "stopped"


def audit(dag_id: str, jobs: Iterable[dict], tis: Iterable[dict], xcom_job_ids: dict[TiKey, str | None],
          record: DriverRecord, *, fake_to_wall: Callable[[float], float], slack_s: float = 5.0,
          cancel_calls: dict[str, float] | None = None, triggers_started: set[tuple[TiKey, int]] | None = None,
          cancel_bound_s: float = 60.0) -> AuditResult:
    """``jobs``: fake job snapshots; ``tis``: dicts with run_id, task_id, map_index, state, end_date (epoch
    seconds or None); ``xcom_job_ids``: TI -> the ``jobId`` in its return_value XCom (None if absent);
    ``cancel_calls``: job id -> wall time of its first cancel request; ``triggers_started``: (TI, try)
    whose trigger started in a triggerer (None: unknown, every trigger counts as started)."""
    cancel_calls = cancel_calls or {}
    result = AuditResult()
    tis = list(tis)
    by_labels = {tuple(sorted(airflow_labels(dag_id, t["task_id"], t["run_id"], t["map_index"]).items())):
                 (t["run_id"], t["task_id"], t["map_index"]) for t in tis}
    owned: dict[TiKey, list[dict]] = defaultdict(list)
    dag_label = airflow_labels(dag_id, "t", "r")[DAG_LABEL]
    for job in jobs:
        labels = job["labels"] or {}
        if labels.get(DAG_LABEL) != dag_label or job.get("parent_job_id"):
            continue
        result.jobs += 1
        key = tuple(sorted((k, v) for k, v in labels.items()
                           if k in (DAG_LABEL, TASK_LABEL, RUN_LABEL, MAP_INDEX_LABEL)))
        ti_key = by_labels.get(key)
        if ti_key is None:
            result.unowned_jobs.append(job["job_id"])
            continue
        owned[ti_key].append(job)

    result.task_instances = len(tis)
    for ti in tis:
        key: TiKey = (ti["run_id"], ti["task_id"], ti["map_index"])
        name = f"{key[0]}/{key[1]}[{key[2]}]"
        ti_jobs = sorted(owned.get(key, []), key=lambda j: j["created_at"])
        bases: dict[str, list[tuple[int, dict]]] = defaultdict(list)
        for job in ti_jobs:
            base, gen = split_job_id(job["job_id"])
            bases[base].append((gen, job))
        clears = record.clears.get(key, 0)
        if len(bases) > 1 + clears:
            result.duplicates.append(f"{name}: {len(bases)} job ID bases but cleared {clears} time(s): "
                                     f"{[j['job_id'] for j in ti_jobs]}")
        for base, gens in bases.items():
            gens.sort(key=lambda g: g[0])
            if sum(1 for _, j in gens if _ok(j)) > 1:
                result.duplicates.append(f"{name}: more than one successful job under {base}")
            for (_, prev), (gen, job) in zip(gens, gens[1:]):
                if not _failed(prev) or (prev["end_at"] or 0) > job["created_at"]:
                    result.duplicates.append(f"{name}: generation {gen} {job['job_id']} inserted while "
                                             f"{prev['job_id']} was {prev['state']} (error {prev['error_result']})")

        marked = record.marked_failed.get(key) or []
        excused = set()  # marked jobs judged by the marked-failed rule below, not as orphans
        for job in (j for j in ti_jobs if j["job_id"] in marked):
            mark_time, mark_try = record.marked_at.get(key, (None, None))
            cancel_at = cancel_calls.get(job["job_id"])
            if cancel_at is not None and mark_time is not None:
                result.mark_to_cancel_s.append(round(cancel_at - mark_time, 1))
            if job["state"] != "DONE":
                continue  # still running: an orphan (below)
            if (job["error_result"] or {}).get("reason") == "stopped":
                excused.add(job["job_id"])
            elif (cancel_at is not None and mark_time is not None and cancel_at - mark_time <= cancel_bound_s
                  and job["end_at"] is not None and fake_to_wall(job["end_at"]) <= cancel_at):
                excused.add(job["job_id"])
                result.cancelled_after_natural_end.append(
                    f"{name}: {job['job_id']} ended {cancel_at - fake_to_wall(job['end_at']):.1f} s before the cancel "
                    f"requested {cancel_at - mark_time:.1f} s after the mark")
            elif triggers_started is not None and mark_try is not None and (key, mark_try) not in triggers_started:
                excused.add(job["job_id"])
                result.marked_before_trigger_ran.append(f"{name}: {job['job_id']} (try {mark_try})")
            else:
                result.marked_failed_not_stopped.append(f"{name}: {job['job_id']} {job['state']} "
                                                        f"(error {job['error_result']})")

        end_date = ti.get("end_date")
        for job in ti_jobs:
            if job["state"] != "DONE":
                result.orphaned.append(f"{name}: {job['job_id']} still {job['state']} at the end")
            elif ti["state"] in FINISHED_TI and end_date is not None and job["end_at"] is not None \
                    and fake_to_wall(job["end_at"]) > end_date + slack_s and not _stopped_on_request(job) \
                    and job["job_id"] not in excused:
                result.orphaned.append(f"{name}: {job['job_id']} ran {fake_to_wall(job['end_at']) - end_date:.0f} s "
                                       f"past its task instance's end ({ti['state']})")

        if ti["state"] == "success":
            result.successful_tis += 1
            last = ti_jobs[-1] if ti_jobs else None
            xcom = xcom_job_ids.get(key)
            if last is None or not _ok(last) or xcom != last["job_id"]:
                result.lost_results.append(f"{name}: XCom jobId {xcom!r}, last job "
                                           f"{None if last is None else (last['job_id'], last['state'], last['error_result'])}")

        user_touched = bool(marked) or clears > 0
        for job in ti_jobs:
            if job.get("cancel_requested") and not user_touched:
                result.cancelled_not_by_user.append(f"{name}: {job['job_id']} ({ti['state']})")
    return result
