"""The BigQuery jobs API (insert, get, cancel, delete metadata, list) through google-cloud-bigquery.

One client per hook, built on first use and reused for every call (the trigger keeps one hook for its
whole wait). Every request has a timeout and is retried under :func:`is_transient` with jittered
exponential backoff (:mod:`airflow_bqjobs.core.retrying`: each retry logged with its reason and next
delay), for at most ``retry_deadline`` seconds and never past ``retry_until`` (the try's
execution_timeout); callers that run their own retry loop (the trigger) pass ``retry=None``. An
explicit emulator endpoint that refuses connections fails at once: nothing is listening there.
``google.cloud`` is imported here lazily, never when a DAG file imports an operator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from airflow_bqjobs._compat import AirflowNotFoundException, BaseHook
from airflow_bqjobs.core.attach import generation_of
from airflow_bqjobs.core.backoff import backoff_delays
from airflow_bqjobs.core.credential_options import parse_impersonation_chain
from airflow_bqjobs.core.errors import InvalidJobInput, JobAlreadyExists
from airflow_bqjobs.core.job_ref import JobRef, validate_location, validate_project_id
from airflow_bqjobs.core.retrying import EmulatorUnreachable, call_with_retry, is_connection_refused
from airflow_bqjobs.hooks.credentials import client_settings, emulator_endpoint, normalize_extras

if TYPE_CHECKING:
    from google.cloud.bigquery import Client

_DEFAULT = object()
USER_AGENT = "airflow-bqjobs"


@dataclass(frozen=True)
class RetryPolicy:
    """The hook's transient-error retry: jittered backoff from ``initial`` to ``maximum`` seconds,
    for at most ``deadline`` seconds (``limit`` names what set it, for the error message)."""

    deadline: float
    initial: float = 1.0
    maximum: float = 32.0
    limit: str = "retry_deadline"
    log: Callable[[str], None] = print

    def run(self, call: Callable[[], Any], what: str) -> Any:
        return call_with_retry(
            call,
            deadline=self.deadline,
            what=what,
            limit=self.limit,
            delays=backoff_delays(initial=self.initial, maximum=self.maximum),
            log=self.log,
        )


class BigQueryJobsHook(BaseHook):
    """Talks to BigQuery's jobs API with a ``google_cloud_default``-compatible connection.

    :param impersonation_chain: a service account to impersonate, or a delegation chain ending with
        it (wins over the connection's ``impersonation_chain`` extra); see
        :mod:`airflow_bqjobs.hooks.credentials`.
    """

    conn_name_attr = "gcp_conn_id"
    default_conn_name = "google_cloud_default"
    conn_type = "bigquery_jobs"
    hook_name = "BigQuery Jobs"

    def __init__(
        self,
        gcp_conn_id: str = default_conn_name,
        *,
        project_id: str | None = None,
        location: str | None = None,
        request_timeout: float = 60.0,
        retry_deadline: float = 600.0,
        retry_until: datetime | None = None,
        connection: Any = _DEFAULT,
        impersonation_chain: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = parse_impersonation_chain(impersonation_chain) or None
        self._project_id = validate_project_id(project_id)
        self._location = validate_location(location)
        self.request_timeout = request_timeout
        self.retry_deadline = retry_deadline
        self.retry_until = retry_until
        self._connection = connection

    # -- configuration ---------------------------------------------------------------------------

    @cached_property
    def extras(self) -> dict[str, Any]:
        """The connection's extras without legacy prefixes; ``{}`` (ADC) when there is no connection."""
        conn = self._connection
        if conn is _DEFAULT:
            try:
                conn = self.get_connection(self.gcp_conn_id)
            except AirflowNotFoundException:
                self.log.info("No connection %r: using Application Default Credentials.", self.gcp_conn_id)
                conn = None
        return normalize_extras(conn.extra_dejson if conn is not None else {})

    def client_settings(self):
        """Credentials, project and endpoint of this hook's connection (and impersonation chain)."""
        from google.auth.exceptions import DefaultCredentialsError

        try:
            return client_settings(self.extras, self.impersonation_chain)
        except DefaultCredentialsError as exc:
            raise InvalidJobInput(
                "gcp_conn_id",
                f"no credentials: connection {self.gcp_conn_id!r} does not exist or has no key_path or"
                f" keyfile_dict extra, and Application Default Credentials were not found ({exc})",
            ) from None

    @cached_property
    def client(self) -> Client:
        from google.api_core.client_info import ClientInfo
        from google.cloud import bigquery

        from airflow_bqjobs import __version__

        settings = self.client_settings()
        project = self._project_id or settings.project_id
        if not project:
            raise InvalidJobInput(
                "project_id",
                f"no project: pass project_id, set the 'project' extra of connection {self.gcp_conn_id!r},"
                " or use credentials that name one",
            )
        return bigquery.Client(
            project=project,
            credentials=settings.credentials,
            location=self.location,
            client_options={"api_endpoint": settings.api_endpoint} if settings.api_endpoint else None,
            client_info=ClientInfo(user_agent=f"{USER_AGENT}/{__version__}"),
        )

    def use_client(self, client: Client) -> None:
        """Use this (shared) client instead of building one: see :mod:`airflow_bqjobs.hooks.shared`."""
        self.__dict__["client"] = client

    @property
    def project_id(self) -> str:
        return self._project_id or self.client.project

    @property
    def location(self) -> str | None:
        return self._location or validate_location(self.extras.get("location"), "location extra")

    # Backoff between transient retries, in seconds (tests shorten these).
    backoff_initial = 1.0
    backoff_maximum = 32.0

    @cached_property
    def retry(self) -> RetryPolicy:
        """Jittered exponential backoff on transient errors, bounded by ``retry_deadline`` and ``retry_until``."""
        deadline, limit = float(self.retry_deadline), "retry_deadline"
        if self.retry_until is not None:
            left = (self.retry_until - datetime.now(timezone.utc)).total_seconds()
            if left < deadline:
                deadline, limit = max(0.0, left), "the try's remaining execution_timeout"
        return RetryPolicy(deadline, self.backoff_initial, self.backoff_maximum, limit, self.log.warning)

    @cached_property
    def emulator_endpoint(self) -> str | None:
        """The explicit emulator endpoint (``emulator_host`` extra or ``BIGQUERY_EMULATOR_HOST``), if any."""
        return emulator_endpoint(self.extras)

    def _retried(self, retry: Any, call: Callable[[], Any], what: str) -> Any:
        if retry is None:
            return call()
        if isinstance(retry, RetryPolicy):
            return retry.run(call, what)
        return retry(call)()  # a google.api_core Retry

    def resolve(self, ref: JobRef) -> JobRef:
        """Fill the reference's missing project and location from the hook."""
        return ref.with_defaults(self.project_id, self.location)

    def _request(self, method: str, path: str, *, retry: Any = _DEFAULT, params: dict | None = None, data: Any = None,
                 object_hook: Callable[[dict], Any] | None = None):
        """One REST call through the client's authorised session: raw resources, our retry rule.

        The client's job objects are not used: their ``to_api_repr()`` drops ``status`` and
        ``statistics`` for query jobs, and we want BigQuery's resource exactly as sent.
        ``object_hook``: decode the answer with ``json.loads(..., object_hook=object_hook)``.
        """
        retry = self.retry if retry is _DEFAULT else retry
        query = {k: v for k, v in (params or {}).items() if v is not None}

        def call():
            answer = self._guarded(
                lambda: self.client._connection.api_request(
                    method=method, path=path, query_params=query, data=data, timeout=self.request_timeout,
                    expect_json=object_hook is None,
                )
            )
            return answer if object_hook is None else json.loads(answer, object_hook=object_hook)

        return self._retried(retry, call, f"{method} {path}")

    def _guarded(self, call: Callable[[], Any]) -> Any:
        """``call()``; a refused connection to an explicit emulator endpoint stops at once, never retried."""
        try:
            return call()
        except Exception as exc:
            if self.emulator_endpoint and is_connection_refused(exc):
                raise EmulatorUnreachable(
                    f"the BigQuery emulator endpoint {self.emulator_endpoint} (emulator_host extra of connection"
                    f" {self.gcp_conn_id!r} or BIGQUERY_EMULATOR_HOST) refuses connections: is the emulator"
                    " running there?"
                ) from exc
            raise

    @staticmethod
    def _job_path(ref: JobRef, suffix: str = "") -> str:
        return f"/projects/{ref.project_id}/jobs/{ref.job_id}{suffix}"

    # -- jobs API --------------------------------------------------------------------------------

    def get_job(self, ref: JobRef, *, retry: Any = _DEFAULT) -> dict | None:
        """The job resource, or ``None`` if BigQuery has no such job (in that location)."""
        from google.api_core.exceptions import NotFound

        ref = self.resolve(ref)
        try:
            return self._request("GET", self._job_path(ref), retry=retry, params={"location": ref.location})
        except NotFound:
            return None

    def insert_job(self, ref: JobRef, configuration: dict, *, retry: Any = _DEFAULT) -> dict:
        """``jobs.insert`` under ``ref``; raises :class:`JobAlreadyExists` on 409.

        A request whose outcome is unknown (timeout, reset, 5xx) is retried under the same ID: either it
        inserts now, or the 409 proves the earlier try did and the caller reads that job.
        """
        from google.api_core.exceptions import Conflict

        ref = self.resolve(ref)
        body = {"jobReference": ref.to_api(), "configuration": configuration}
        try:
            return self._request("POST", f"/projects/{ref.project_id}/jobs", retry=retry, data=body)
        except Conflict as exc:
            raise JobAlreadyExists(exc.message) from None

    def upload_load_job(
        self, ref: JobRef, configuration: dict, source: Any, *, size: int | None = None, retry: Any = _DEFAULT
    ) -> dict:
        """``jobs.insert`` through the upload URI: the load ``configuration`` and the data, under ``ref``.

        ``source`` is a path (opened here) or a seekable binary file object, read from its start;
        ``size`` bytes are sent (``None``: to the end). google-cloud-bigquery picks a multipart request
        for small sizes and a resumable session (chunks, each retried by google-resumable-media) for
        large or unknown ones. A 409 raises :class:`JobAlreadyExists`. Any other transient failure
        restarts the upload under the same ID, which is safe: BigQuery creates the job only once the
        data is complete, and a job that already exists answers 409.
        """
        from google.api_core.exceptions import Conflict

        ref = self.resolve(ref)
        retry = self.retry if retry is _DEFAULT else retry
        try:
            return self._retried(
                retry,
                lambda: self._guarded(lambda: self._upload(ref, configuration, source, size)),
                f"upload of job {ref.job_id}",
            )
        except Conflict as exc:
            raise JobAlreadyExists(exc.message) from None

    def _upload(self, ref: JobRef, configuration: dict, source: Any, size: int | None) -> dict:
        import copy
        import os

        from google.cloud.bigquery import LoadJobConfig, TableReference

        table = {"projectId": ref.project_id, **configuration["load"]["destinationTable"]}
        job_config = LoadJobConfig.from_api_repr(copy.deepcopy(configuration))

        def send(file_obj) -> dict:
            job = self.client.load_table_from_file(
                file_obj,
                TableReference.from_api_repr(table),
                rewind=True,
                size=size,
                job_id=ref.job_id,
                project=ref.project_id,
                location=ref.location,
                job_config=job_config,
                timeout=self.request_timeout,
            )
            return _raw_resource(job._properties)

        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as file_obj:
                return send(file_obj)
        return send(source)

    def cancel_job(self, ref: JobRef, *, retry: Any = _DEFAULT) -> dict:
        """Request cancellation; returns the job as BigQuery reports it right after (often not DONE yet)."""
        ref = self.resolve(ref)
        response = self._request("POST", self._job_path(ref, "/cancel"), retry=retry, params={"location": ref.location})
        return response["job"]

    def delete_job_metadata(self, ref: JobRef, *, retry: Any = _DEFAULT) -> None:
        """``jobs.delete``: remove a DONE job's metadata (and its children's). Never stops a job."""
        ref = self.resolve(ref)
        self._request("DELETE", self._job_path(ref, "/delete"), retry=retry, params={"location": ref.location})

    def find_job_location(self, base: JobRef, *, not_before: datetime | None = None) -> str | None:
        """Where a generation of ``base``'s ID lives: ``jobs.list`` spans every location, ``jobs.get``
        without a location finds only US and EU multi-region jobs. Scans this account's jobs created
        since ``not_before`` (newest first, minimal projection); ``None`` if none matches."""
        base = self.resolve(base)
        min_ms = int(not_before.timestamp() * 1000) if not_before is not None else None
        for entry in self.list_jobs(project_id=base.project_id, min_creation_time_ms=min_ms, projection="minimal"):
            ref = entry.get("jobReference") or {}
            if generation_of(str(ref.get("jobId", "")), base.job_id) is not None and ref.get("location"):
                return ref["location"]
        return None

    def list_jobs(
        self,
        *,
        project_id: str | None = None,
        all_users: bool = False,
        state_filter: Sequence[str] = (),
        min_creation_time_ms: int | None = None,
        max_creation_time_ms: int | None = None,
        max_results: int | None = None,
        parent_job_id: str | None = None,
        projection: str = "full",
        page_size: int = 1000,
        retry: Any = _DEFAULT,
        object_hook: Callable[[dict], Any] | None = None,
    ) -> Iterator[dict]:
        """Job list entries, newest first, paging through ``jobs.list`` lazily up to ``max_results``.

        ``object_hook``: each page is decoded with ``json.loads(..., object_hook=object_hook)`` (the
        shared poller turns entries into small tuples as they are decoded)."""
        params = {
            "allUsers": all_users or None,
            "stateFilter": list(state_filter) or None,
            "minCreationTime": min_creation_time_ms,
            "maxCreationTime": max_creation_time_ms,
            "parentJobId": parent_job_id,
            "projection": projection,
        }
        path = f"/projects/{project_id or self.project_id}/jobs"
        remaining = max_results
        token = None
        while remaining is None or remaining > 0:
            size = page_size if remaining is None else min(page_size, remaining)
            page = self._request("GET", path, retry=retry, params={**params, "maxResults": size, "pageToken": token},
                                 object_hook=object_hook)
            for job in page.get("jobs", [])[: remaining if remaining is not None else None]:
                yield job
                if remaining is not None:
                    remaining -= 1
            token = page.get("nextPageToken")
            if not token:
                return


def _raw_resource(properties: dict) -> dict:
    """The job resource as BigQuery sent it: the client's job object turns these times into floats."""
    resource = dict(properties)
    statistics = dict(resource.get("statistics") or {})
    for key in ("creationTime", "startTime", "endTime"):
        if isinstance(statistics.get(key), float):
            statistics[key] = str(int(statistics[key]))
    resource["statistics"] = statistics
    return resource
