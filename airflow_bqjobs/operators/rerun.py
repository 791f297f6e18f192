"""Repeat an existing BigQuery job, exactly once per task instance (BigQuery's "repeat a job")."""

from __future__ import annotations

from typing import Any, Sequence

from airflow_bqjobs._compat import Context
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.core.rerun import SOURCE_FIELD, parse_overrides, parse_source_job, rerun_configuration
from airflow_bqjobs.operators._arguments import check_arguments
from airflow_bqjobs.operators._submitting import JobSubmittingOperator


class BigQueryRerunJobOperator(JobSubmittingOperator):
    """Read a job, and run its configuration again as a new job, optionally changed.

    As BigQuery documents it: ``jobs.get`` the source job, keep its configuration without what
    BigQuery filled in (see :mod:`airflow_bqjobs.core.rerun`: a query's anonymous result table, the
    output-only ``jobType``, the old task's Airflow labels), deep-merge ``configuration_overrides``,
    and insert it under a new ID. From there it is the submit operator's path: the ID is derived from
    the run identity and the final configuration, so a retry of this task reattaches to the re-run it
    started, and the task waits for the job (in the triggerer if deferrable). The new job runs in
    ``project_id`` (default: the connection's) and in the source job's location unless ``location``
    is given. ``jobTimeoutMs``: from the overrides if set there, else from this task's
    ``execution_timeout``, else the source job's. A load job whose data was uploaded cannot be
    repeated without new ``sourceUris``: BigQuery does not keep uploaded data.

    Returns the new job's reference and pushes its summary under the XCom key ``job_summary``.

    :param source_job: the job to repeat: ``job_id``, ``LOCATION.job_id``, ``project:job_id`` (as ``bq ls -j`` prints it), ``project:LOCATION.job_id``,
        a ``jobReference`` dict, or a submit task's output (``submit.output`` or its rendered
        ``xcom_pull``). Templated.
    :param configuration_overrides: deep-merged into the source configuration: dicts merge key by
        key, other values (lists too) replace, ``None`` removes a key; e.g.
        ``{"query": {"destinationTable": {...}, "writeDisposition": "WRITE_TRUNCATE"}}``. Templated.
    :param labels: extra job labels; the source job's own labels are kept (Airflow's are replaced).
    :param job_id, job_id_prefix, reattach_on_clear, rerun_cancelled: as for ``BigQuerySubmitJobOperator``.
    :param deferrable, poll_interval, cancel_on_kill: as for ``BigQuerySubmitJobOperator``.
    """

    template_fields: Sequence[str] = (
        "source_job", "configuration_overrides", "project_id", "location", "labels", "job_id", "job_id_prefix",
        "impersonation_chain",
    )
    template_fields_renderers = {"configuration_overrides": "json"}
    ui_color = "#e4f0e8"

    def __init__(self, *, source_job: Any, configuration_overrides: dict | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_job = source_job
        self.configuration_overrides = configuration_overrides
        check_arguments(self, source_job=parse_source_job, configuration_overrides=parse_overrides)

    def build_job(self, context: Context, source: dict) -> tuple[JobRef, dict]:
        """The base reference and configuration that repeat ``source`` (a job resource): no I/O."""
        configuration = rerun_configuration(
            source, parse_overrides(self.configuration_overrides), job_timeout_ms=self.job_timeout_ms()
        )
        base, configuration = self.finish_job(context, configuration)
        location = self.location or (source.get("jobReference") or {}).get("location")
        return JobRef(base.job_id, location=location), configuration

    def execute(self, context: Context) -> Any:
        source_ref = parse_source_job(self.source_job)
        parse_overrides(self.configuration_overrides)
        self.check_options()
        hook = self.make_hook(context)
        source_ref = hook.resolve(source_ref)
        source = hook.get_job(source_ref)
        if source is None:
            raise InvalidJobInput(
                SOURCE_FIELD, f"no job {source_ref} (wrong project or location, or its metadata was deleted?)"
            )
        base, configuration = self.build_job(context, source)
        self.log.info("Repeating job %s.", source_ref)
        return self.submit_and_wait(context, hook, hook.resolve(base), lambda ref: hook.insert_job(ref, configuration))
