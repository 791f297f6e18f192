"""Delete the metadata of DONE BigQuery jobs (``jobs.delete``), named or found by a DAG run's labels."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from airflow_bqjobs._compat import AirflowException, Context
from airflow_bqjobs.core import job_outcomes as outcomes
from airflow_bqjobs.core.arguments import validate_flag
from airflow_bqjobs.core.decision import job_state
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_listing import to_epoch_ms
from airflow_bqjobs.core.job_ref import JobRef, parse_job_ref
from airflow_bqjobs.core.job_refs import parse_job_refs
from airflow_bqjobs.core.purge import default_min_creation, run_labels, select_run_jobs, task_label_values
from airflow_bqjobs.core.transient import error_reason
from airflow_bqjobs.operators._arguments import check_arguments
from airflow_bqjobs.operators._job_set import JobSetOperator, Targets


class BigQueryDeleteJobMetadataOperator(JobSetOperator):
    """Delete job metadata (query text, statistics) from BigQuery's job history. Never stops a job.

    BigQuery deletes only DONE jobs. A job still PENDING or RUNNING is refused (default) or, with
    ``wait_for_done=True``, awaited (in the worker or the triggerer, one job at a time) until all
    the jobs are DONE, and then deleted; it is never cancelled. Deleting a script's parent job
    deletes its children too; a child job cannot be deleted directly, and is refused with
    BigQuery's reason plus the parent to delete instead.

    Two ways to choose the jobs:

    * ``job_id``: one or more jobs, in every form the cancel operator accepts (templated; e.g. the
      output of a submit task, or of a mapped one).
    * ``purge=True``: the jobs of a DAG run, found by the ``airflow-dag`` / ``airflow-run`` labels the
      submit operator sets (the current run by default; ``purge_task_ids`` narrows it to some tasks).
      Jobs are listed (``jobs.list``, your own jobs unless ``all_users=True``), matched by label
      client-side, and every DONE top-level job is deleted. For the current run the listing starts
      at the run's ``run_after`` (less 10 minutes for clock skew) unless ``min_creation_time`` says
      otherwise; for another run, pass ``min_creation_time`` to avoid scanning all history.

    The returned XCom holds one entry per job, ``{"job": <jobReference>, "outcome", "reason",
    "message"}``, with ``outcome`` one of ``deleted``, ``already_gone`` or ``refused`` (still running,
    or refused by BigQuery). The task fails, after handling every job, if any was refused (unless
    ``fail_on_refused=False``) or, with ``strict=True``, if any was already gone.

    :param job_id: the job(s) to delete; leave unset with ``purge=True``.
    :param wait_for_done: wait for unfinished jobs to finish, then delete them.
    :param strict: a job that no longer exists is an error (default: reported as ``already_gone``).
    :param fail_on_refused: fail the task when a job could not be deleted (default True).
    :param purge: delete the jobs of a DAG run instead of named jobs.
    :param purge_dag_id: DAG whose run is purged (default: this DAG). Templated.
    :param purge_run_id: run to purge (default: this run). Templated.
    :param purge_task_ids: only the jobs of these task ids. Templated.
    :param all_users: list every user's jobs, not only the connection's own (needs ``bigquery.jobs.listAll``).
    :param min_creation_time: list jobs created at or after this (epoch ms or datetime). Templated.
    """

    template_fields: Sequence[str] = (
        *JobSetOperator.template_fields, "purge_dag_id", "purge_run_id", "purge_task_ids", "min_creation_time",
    )
    ui_color = "#eeeeee"

    def __init__(
        self,
        *,
        job_id: Any = None,
        wait_for_done: bool = False,
        strict: bool = False,
        fail_on_refused: bool = True,
        purge: bool = False,
        purge_dag_id: str | None = None,
        purge_run_id: str | None = None,
        purge_task_ids: str | Sequence[str] | None = None,
        all_users: bool = False,
        min_creation_time: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(job_id=job_id, **kwargs)
        if purge == (job_id is not None):
            raise InvalidJobInput("job_id", "pass the jobs to delete, or purge=True to delete a DAG run's jobs (not both)")
        if not purge and (purge_dag_id or purge_run_id or purge_task_ids):
            raise InvalidJobInput("purge", "purge_dag_id, purge_run_id and purge_task_ids need purge=True")
        self.wait_for_done = wait_for_done
        self.strict = strict
        self.fail_on_refused = fail_on_refused
        self.purge = purge
        self.purge_dag_id = purge_dag_id
        self.purge_run_id = purge_run_id
        self.purge_task_ids = purge_task_ids
        self.all_users = all_users
        self.min_creation_time = min_creation_time
        for name in ("wait_for_done", "strict", "fail_on_refused", "purge", "all_users"):
            validate_flag(getattr(self, name), name)
        check_arguments(
            self,
            job_id=lambda value: value is None or parse_job_refs(value),
            purge_dag_id=lambda value: value is None or _non_empty(value, "purge_dag_id"),
            purge_run_id=lambda value: value is None or _non_empty(value, "purge_run_id"),
            purge_task_ids=task_label_values,
            min_creation_time=lambda value: to_epoch_ms(value, "min_creation_time"),
        )

    def execute(self, context: Context) -> list[dict]:
        return self.follow(context, self.make_hook(context))

    # -- choosing the jobs -------------------------------------------------------------------------

    def read_targets(self, context: Context, hook) -> Targets:
        return self._purge_targets(context, hook) if self.purge else self.read_jobs(hook, self.job_refs(hook))

    def waits(self) -> bool:
        return self.wait_for_done

    def _purge_targets(self, context: Context, hook) -> Targets:
        """The DAG run's top-level jobs, with their list entries (state, parent) as last seen."""
        ti = context["ti"]
        labels = run_labels(self.purge_dag_id or ti.dag_id, self.purge_run_id or context["run_id"])
        tasks = task_label_values(self.purge_task_ids)
        min_ms = to_epoch_ms(self.min_creation_time, "min_creation_time")
        if min_ms is None and not self.purge_run_id and not self.purge_dag_id:
            min_ms = to_epoch_ms(default_min_creation(_run_after(context)), "min_creation_time")
        if min_ms is None:
            self.log.info("No min_creation_time: scanning the whole job history for %s.", labels)
        entries = hook.list_jobs(all_users=self.all_users, min_creation_time_ms=min_ms)
        selected = select_run_jobs(entries, labels, tasks)
        self.log.info("Found %d job(s) labelled %s%s.", len(selected), labels, f" for tasks {sorted(tasks)}" if tasks else "")
        return [(hook.resolve(parse_job_ref(entry["jobReference"])), entry) for entry in selected]

    # -- acting ----------------------------------------------------------------------------------

    def _delete(self, hook, ref: JobRef, job: Mapping) -> dict:
        from google.api_core.exceptions import BadRequest, NotFound

        try:
            hook.delete_job_metadata(ref)
        except NotFound:
            # We saw the job a moment ago: either our own request acted and its answer was lost (the
            # hook retried), or someone deleted it meanwhile. Either way it is gone as asked.
            self.log.info("Job %s was gone when the delete landed (a retried request); counted as deleted.", ref)
            return outcomes.delete_entry(ref, outcomes.DELETED)
        except BadRequest as exc:
            message = exc.message
            parent = (job.get("statistics") or {}).get("parentJobId")
            if parent:
                message += f" Hint: delete its parent job {ref.with_job_id(parent)} instead (that deletes its children too)."
            self.log.warning("BigQuery refused to delete job %s: [%s] %s", ref, error_reason(exc), message)
            return outcomes.delete_entry(ref, outcomes.REFUSED, reason=error_reason(exc), message=message)
        self.log.info("Deleted the metadata of job %s.", ref)
        return outcomes.delete_entry(ref, outcomes.DELETED)

    def _gone(self, ref: JobRef) -> dict:
        self.log.info("Job %s does not exist (already deleted?).", ref)
        return outcomes.delete_entry(ref, outcomes.ALREADY_GONE, reason="notFound", message=f"Not found: job {ref}")

    def _not_done(self, ref: JobRef, job: Mapping) -> dict:
        message = (
            f"Job {ref} is {job_state(job)}: only DONE jobs can be deleted. Pass wait_for_done=True to wait"
            " for it to finish first (it is never cancelled), or cancel it."
        )
        self.log.warning(message)
        return outcomes.delete_entry(ref, outcomes.REFUSED, reason="not_done", message=message)

    def settled(self, context: Context, hook, targets: Targets) -> list[dict]:
        """Every job is DONE, or we do not wait: delete the DONE ones, refuse the others."""
        results = []
        for ref, job in targets:
            if job is None:
                results.append(self._gone(ref))
            elif job_state(job) == "DONE":
                results.append(self._delete(hook, ref, job))
            else:
                results.append(self._not_done(ref, job))
        counts = {o: sum(e["outcome"] == o for e in results) for o in (outcomes.DELETED, outcomes.ALREADY_GONE, outcomes.REFUSED)}
        self.log.info("Job metadata: %s", ", ".join(f"{n} {o}" for o, n in counts.items()))
        problems = [
            e for e in results
            if (e["outcome"] == outcomes.REFUSED and self.fail_on_refused)
            or (e["outcome"] == outcomes.ALREADY_GONE and self.strict)
        ]
        if problems:
            lines = "\n".join(f"  {parse_job_ref(e['job'])}: {e['outcome']} [{e['reason']}] {e['message']}" for e in problems)
            raise AirflowException(f"{len(problems)} of {len(results)} job(s) could not be deleted:\n{lines}")
        return results


def _non_empty(value, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidJobInput(field, f"must be a non-empty string, got {value!r}")
    return value


def _run_after(context: Context):
    """When the current DAG run became due: none of its jobs can be older (Airflow 2: logical date)."""
    dag_run = context.get("dag_run")
    return getattr(dag_run, "run_after", None) or context.get("logical_date") or getattr(dag_run, "logical_date", None)
