"""Exceptions shared by the pure core and the I/O layers.

They are plain Python exceptions so the core stays free of Airflow; Airflow fails (and retries) a task
on any exception.
"""

from __future__ import annotations


class InvalidJobInput(ValueError):
    """A user-supplied value is wrong. Raised before anything is sent to BigQuery."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class JobAlreadyExists(Exception):
    """``jobs.insert`` answered 409 ``duplicate``: a job with this ID exists (maybe an earlier attempt's)."""


class JobFailed(Exception):
    """The BigQuery job ended DONE with an ``errorResult``."""

    def __init__(self, full_id: str, error_result: dict):
        self.full_id = full_id
        self.reason = error_result.get("reason", "unknown")
        self.error_message = error_result.get("message", "")
        super().__init__(f"BigQuery job {full_id} failed: [{self.reason}] {self.error_message}")


class JobNotVisible(Exception):
    """A job ID is taken (409) but the job cannot be read: wrong location, or no permission to see it."""
