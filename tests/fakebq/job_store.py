"""All jobs of the fake, with BigQuery's semantics for insert, get, cancel,
delete and list.

Every operation runs under one lock, which is what makes jobs.insert atomic:
of N concurrent inserts of one id, exactly one creates the job and the rest
get 409 duplicate.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import itertools
import secrets
import threading
from typing import Callable

from . import api_errors
from .api_errors import ApiError, invalid, job_name
from .behaviour import Behaviour, parse_directive
from .clock import Clock
from .job_model import DONE, Job
from .job_resource import job_snapshot
from .sql_statements import split_statements
from .validation import check_job_id, check_labels, job_type_of

# (job_id, job_type, labels, query, directive_overrides) -> Behaviour
BehaviourResolver = Callable[[str, str, dict, "str | None", "dict | None"], Behaviour]

DEFAULT_LOCATION = "US"
DEFAULT_PAGE_SIZE = 50
# jobs.get / cancel / delete / getQueryResults find a job in these without ``location``.
MULTI_REGIONS = frozenset({"us", "eu"})


def _same_location(a: str, b: str | None, location_rule: bool = True) -> bool:
    """BigQuery's location rule: without ``location`` only US and EU multi-region jobs are found."""
    if b is None:
        return not location_rule or a.lower() in MULTI_REGIONS
    return a.lower() == b.lower()


class JobStore:
    def __init__(self, clock: Clock):
        self._clock = clock
        self._lock = threading.RLock()
        self._jobs: dict[tuple[str, str], Job] = {}
        self._seq = itertools.count(1)
        self._not_found_once: set[tuple[str, str]] = set()
        # On, as BigQuery: a regional job is not found without its location.
        self.location_rule = True

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._not_found_once.clear()
            self.location_rule = True

    # -- insert ------------------------------------------------------------
    def insert(self, project: str, resource: object, *, user_email: str,
               resolve: BehaviourResolver, upload_bytes: bytes | None = None) -> tuple[Job, bool]:
        """Create a job from a jobs.insert body. Returns (job, stored).

        ``stored`` is False for dry runs, which BigQuery answers without
        keeping a job.
        """
        if not isinstance(resource, dict):
            raise invalid("The request body must be a job resource (JSON object)")
        ref = resource.get("jobReference") or {}
        job_id = ref.get("jobId") or ("job_" + secrets.token_urlsafe(21))
        check_job_id(job_id)
        job_type = job_type_of(resource.get("configuration"))
        configuration = copy.deepcopy(resource["configuration"])
        labels = check_labels(configuration.get("labels"))
        query = (configuration.get("query") or {}).get("query") if job_type == "QUERY" else None
        try:
            directive = parse_directive(query)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        configuration["jobType"] = job_type

        with self._lock:
            now = self._clock.now()
            if configuration.get("dryRun"):
                location = ref.get("location") or DEFAULT_LOCATION
                return self._build(project, job_id, location, job_type, configuration,
                                   Behaviour(pending_s=0, running_s=0), user_email, now), False
            existing = self._jobs.get((project, job_id))
            if existing is not None:
                raise api_errors.duplicate(project, existing.location, job_id)
            try:
                behaviour = resolve(job_id, job_type, labels, query, directive)
            except ValueError as exc:
                raise invalid(str(exc)) from None
            owner = behaviour.user_email or user_email
            # Without jobReference.location the job runs where its data lives (behaviour.location).
            location = ref.get("location") or behaviour.location or DEFAULT_LOCATION
            job = self._build(project, job_id, location, job_type, configuration, behaviour, owner, now)
            job.upload_bytes = upload_bytes
            self._jobs[(project, job_id)] = job
            if job_type == "QUERY":
                statements = split_statements(query or "")
                if len(statements) >= 2:
                    self._add_script_children(job, statements)
            return job, True

    def _build(self, project, job_id, location, job_type, configuration, behaviour, owner, now) -> Job:
        start = now + behaviour.pending_s
        end = start + behaviour.running_s
        error = behaviour.error
        timeout_ms = configuration.get("jobTimeoutMs")
        if timeout_ms is not None and now + int(timeout_ms) / 1000.0 < end:
            end = now + int(timeout_ms) / 1000.0
            start = min(start, end)
            error = {"reason": "stopped",
                     "message": f"Job execution was cancelled: Job timed out after {int(timeout_ms) / 1000:g} sec"}
        return Job(project=project, job_id=job_id, location=location, job_type=job_type,
                   configuration=configuration, behaviour=behaviour, user_email=owner,
                   created_at=now, start_at=start, end_at=end, final_error=error, seq=next(self._seq))

    def _add_script_children(self, parent: Job, statements: list[str]) -> None:
        """One child per statement, run back to back inside the parent's run."""
        digest = hashlib.sha256(job_name(parent.project, parent.location, parent.job_id).encode()).hexdigest()[:32]
        natural_end = parent.start_at + parent.behaviour.running_s
        slice_s = parent.behaviour.running_s / len(statements)
        kept = [i for i in range(len(statements))
                if i == 0 or parent.end_at >= natural_end or parent.start_at + i * slice_s < parent.end_at]
        child_behaviour = Behaviour(pending_s=0, running_s=slice_s, cancel_s=parent.behaviour.cancel_s)
        for i in kept:
            # A statement's own directive may give its statistics (e.g. the tables it references).
            statistics = (parse_directive(statements[i]) or {}).get("statistics") or {}
            behaviour = dataclasses.replace(child_behaviour, statistics=statistics) if statistics else child_behaviour
            c_start = parent.start_at + i * slice_s
            last = i == kept[-1]
            c_end = parent.end_at if last else min(c_start + slice_s, parent.end_at)
            child = Job(
                project=parent.project, job_id=f"script_job_{digest}_{i}", location=parent.location,
                job_type="QUERY",
                configuration={"query": {"query": statements[i], "useLegacySql": False}, "jobType": "QUERY"},
                behaviour=behaviour, user_email=parent.user_email,
                created_at=c_start, start_at=c_start, end_at=c_end,
                final_error=parent.final_error if last else None, seq=next(self._seq),
                parent_job_id=parent.job_id, statement_index=i,
            )
            self._jobs[(child.project, child.job_id)] = child
            parent.child_job_ids.append(child.job_id)

    # -- single-job operations ----------------------------------------------
    def _find(self, project: str, job_id: str, location: str | None, now: float) -> Job:
        job = self._jobs.get((project, job_id))
        if (job is None or not job.visible_at(now)
                or not _same_location(job.location, location, self.location_rule)):
            raise api_errors.not_found(project, location, job_id)
        return job

    def get(self, project: str, job_id: str, location: str | None) -> tuple[Job, float]:
        with self._lock:
            now = self._clock.now()
            return self._find(project, job_id, location, now), now

    def cancel(self, project: str, job_id: str, location: str | None) -> tuple[Job, float]:
        with self._lock:
            now = self._clock.now()
            job = self._find(project, job_id, location, now)
            if job.request_cancel(now):
                self._cancel_children(job, now)
            return job, now

    def _cancel_children(self, parent: Job, now: float) -> None:
        done_at = parent.cancel_done_at
        for child_id in list(parent.child_job_ids):
            child = self._jobs[(parent.project, child_id)]
            if child.created_at >= done_at and child.created_at > now:
                # The script stops before this statement would have started.
                del self._jobs[(parent.project, child_id)]
                parent.child_job_ids.remove(child_id)
            elif child.state_at(now) != DONE:
                child.cancel_requested_at = now
                child.cancel_done_at = done_at

    def delete(self, project: str, job_id: str, location: str | None) -> None:
        with self._lock:
            now = self._clock.now()
            job = self._find(project, job_id, location, now)
            name = job_name(project, job.location, job_id)
            if job.parent_job_id is not None:
                parent = job_name(project, job.location, job.parent_job_id)
                raise invalid(f"Job {name} is a child job of script job {parent}: child jobs cannot be "
                              "deleted directly; delete the parent job instead.")
            state = job.state_at(now)
            if state != DONE:
                raise ApiError(400, "resourceInUse",
                               f"Job {name} is {state} and cannot be deleted: only DONE jobs can be deleted.")
            for child_id in job.child_job_ids:
                self._jobs.pop((project, child_id), None)
            del self._jobs[(project, job_id)]

    # -- eventual consistency ------------------------------------------------
    def arm_not_found_once(self, project: str, job_id: str) -> None:
        with self._lock:
            self._not_found_once.add((project, job_id))

    def take_not_found_once(self, project: str, job_id: str) -> bool:
        with self._lock:
            key = (project, job_id)
            if key in self._not_found_once:
                self._not_found_once.discard(key)
                return True
            return False

    # -- list ----------------------------------------------------------------
    def list(self, project: str, *, user_email: str, all_users: bool = False,
             states: set[str] | None = None, min_creation_ms: int | None = None,
             max_creation_ms: int | None = None, parent_job_id: str | None = None,
             max_results: int | None = None, page_token: str | None = None) -> tuple[list[Job], str | None, float]:
        """Matching jobs, newest first, one page. Returns (jobs, next_token, now)."""
        with self._lock:
            now = self._clock.now()
            selected = []
            for job in self._jobs.values():
                if job.project != project or not job.visible_at(now):
                    continue
                if job.parent_job_id != parent_job_id:
                    continue
                if not all_users and job.user_email != user_email:
                    continue
                if states and job.state_at(now).lower() not in states:
                    continue
                created_ms = int(job.created_at * 1000)
                if min_creation_ms is not None and created_ms < min_creation_ms:
                    continue
                if max_creation_ms is not None and created_ms > max_creation_ms:
                    continue
                selected.append(job)
            selected.sort(key=_list_key, reverse=True)
            if page_token:
                after = _decode_token(page_token)
                selected = [j for j in selected if _list_key(j) < after]
            size = max_results if max_results and max_results > 0 else DEFAULT_PAGE_SIZE
            page, rest = selected[:size], selected[size:]
            token = _encode_token(_list_key(page[-1])) if rest else None
            return page, token, now

    # -- inspection ----------------------------------------------------------
    def visible_children(self, job: Job, now: float) -> list[str]:
        with self._lock:
            return [cid for cid in job.child_job_ids
                    if (c := self._jobs.get((job.project, cid))) is not None and c.visible_at(now)]

    def num_children(self, job: Job, now: float) -> int:
        return len(self.visible_children(job, now))

    def find_any(self, job_id: str, project: str | None = None) -> Job | None:
        with self._lock:
            for job in self._jobs.values():
                if job.job_id == job_id and (project is None or job.project == project):
                    return job
            return None

    def snapshot(self, base_url: str) -> list[dict]:
        with self._lock:
            now = self._clock.now()
            jobs = sorted((j for j in self._jobs.values() if j.visible_at(now)), key=lambda j: j.seq)
            return [job_snapshot(j, now, base_url, self.visible_children(j, now)) for j in jobs]


def _list_key(job: Job) -> tuple[float, int]:
    return (job.created_at, job.seq)


def _encode_token(key: tuple[float, int]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]!r}:{key[1]}".encode()).decode()


def _decode_token(token: str) -> tuple[float, int]:
    try:
        created, seq = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        return float(created), int(seq)
    except Exception:
        raise invalid(f"Invalid page token: {token}") from None
