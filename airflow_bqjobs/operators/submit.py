"""Submit a BigQuery job exactly once per task instance, however often the task is retried."""

from __future__ import annotations

import os
from typing import IO, Any, Sequence

from airflow_bqjobs._compat import Context
from airflow_bqjobs.core.job_config import parse_configuration
from airflow_bqjobs.core.job_ref import JobRef
from airflow_bqjobs.core.upload import FileIdentity, check_upload_configuration, job_id_input
from airflow_bqjobs.operators._submitting import JobSubmittingOperator
from airflow_bqjobs.operators._upload import inspect_source


class BigQuerySubmitJobOperator(JobSubmittingOperator):
    """Run a query, load, copy or extract job given in BigQuery's REST ``configuration`` form.

    The job ID is derived from the DAG run context and the rendered configuration, so every retry of
    the task instance reattaches to the job its earlier attempt started: a PENDING/RUNNING job is
    awaited, a successful one is the result (nothing re-runs), a failed one is re-run once under the
    next generation of the ID. Clearing the task or its DAG run starts a new job unless
    ``reattach_on_clear=True``. Returns the job reference (``projectId``, ``location``, ``jobId``) and
    pushes a summary (state, statistics, errors) under the XCom key ``job_summary``.

    Upload loads: with ``source_file``, the configuration must be a ``load`` job with a
    ``destinationTable`` and no ``sourceUris``; the file is sent with the job through BigQuery's
    upload URI (one multipart request below 5 MB, a resumable upload in chunks above). The upload is
    the job's insert, so a retry that finds the earlier attempt's job uploads nothing. The job ID
    hashes the file's path and size, not its content (see :mod:`airflow_bqjobs.core.upload`).

    :param configuration: the job configuration (``{"query": {...}}``, ``{"load": {...}}``, ...), or a
        path to a ``.json`` file holding it; strings ending in ``.sql`` inside it are read as templates.
    :param source_file: data for a load job: a path on the worker (templated; never read as a
        template, whatever its extension), or a seekable binary file object (sent from its start).
    :param labels: extra job labels; ``airflow-dag``, ``airflow-task``, ``airflow-run`` are always added.
    :param job_id: a fixed job ID instead of the derived one (you then own its uniqueness).
    :param job_id_prefix: replaces the ``airflow`` prefix of derived IDs.
    :param reattach_on_clear: follow the same job even after the task or DAG run is cleared.
    :param rerun_cancelled: a retry re-runs a cancelled job (default); ``False`` fails the task instead.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_interval: longest pause between status checks, in seconds (checks start at 1 s).
    :param cancel_on_kill: cancel the job when the task is killed or times out.
    :param impersonation_chain: a service account to impersonate, or a delegation chain ending with it
        (a list, or a comma-separated string); wins over the connection's extra. Templated.

    Extra link "BigQuery Console" (the job's page, stored before waiting); OpenLineage events name
    the job's input and output datasets (see :mod:`airflow_bqjobs.operators._lineage`).
    """

    template_fields: Sequence[str] = (
        "configuration", "source_file", "project_id", "location", "labels", "job_id", "job_id_prefix",
        "impersonation_chain",
    )
    template_ext: Sequence[str] = (".json", ".sql")
    template_fields_renderers = {"configuration": "json"}
    ui_color = "#e4f0e8"
    # Template fields naming data: rendered as inline templates, never loaded as template files.
    _literal_template_fields: Sequence[str] = ("source_file",)

    def __init__(
        self,
        *,
        configuration: dict | str,
        source_file: str | IO[bytes] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.configuration = configuration
        self.source_file = source_file
        if isinstance(configuration, dict):  # templated values are checked again once rendered
            parsed = parse_configuration(configuration)
            if source_file is not None:
                check_upload_configuration(parsed)

    def build_job(self, context: Context) -> tuple[JobRef, dict]:
        """The base job reference and the configuration to submit, all validated: no request sent."""
        base, configuration, _ = self._build(context)
        return base, configuration

    def _build(self, context: Context) -> tuple[JobRef, dict, FileIdentity | None]:
        if self.source_file is None:
            return (*self.finish_job(context, self.configuration), None)
        check_upload_configuration(parse_configuration(self.configuration))
        source = inspect_source(self.source_file)
        base, configuration = self.finish_job(
            context, self.configuration, id_input=lambda config: job_id_input(config, source)
        )
        return base, configuration, source

    def lineage_source_file(self) -> str | None:
        """The uploaded file's path (a load job's input in the lineage events)."""
        return str(self.source_file) if isinstance(self.source_file, (str, os.PathLike)) else None

    def execute(self, context: Context) -> Any:
        base, configuration, source = self._build(context)
        hook = self.make_hook(context)
        base = hook.resolve(base)
        if source is None:
            return self.submit_and_wait(context, hook, base, lambda ref: hook.insert_job(ref, configuration))
        self.log.info("Load data: %s (%d bytes).", source.name, source.size)
        return self.submit_and_wait(
            context,
            hook,
            base,
            lambda ref: hook.upload_load_job(ref, configuration, self.source_file, size=source.size),
        )

    # -- templating ------------------------------------------------------------------------------

    def resolve_template_files(self) -> None:
        """At DAG parse time: never replace a data file's path with the file's content."""
        literal = {name: getattr(self, name) for name in self._literal_template_fields}
        for name in literal:
            setattr(self, name, None)
        try:
            super().resolve_template_files()
        finally:
            for name, value in literal.items():
                setattr(self, name, value)

    def _do_render_template_fields(self, parent, template_fields, context, jinja_env, seen_oids) -> None:
        """Render data paths (``source_file``) as inline templates, even when they end in ``.json``."""
        fields = list(template_fields)
        if parent is self:
            for name in self._literal_template_fields:
                value = getattr(self, name, None)
                if name in fields and isinstance(value, str):
                    fields.remove(name)
                    setattr(self, name, self.render_inline(value, context, jinja_env))
        super()._do_render_template_fields(parent, fields, context, jinja_env, seen_oids)
