"""FakeBigQuery: the fake running in this process, and the handle tests use.

Serves on a background thread; everything a test sets up (rules, faults,
clock) goes straight to the shared FakeState, with the same specs the
``/_fake`` HTTP API accepts.
"""

from __future__ import annotations

import threading

from . import controls
from .behaviour import Behaviour
from .clock import Clock
from .http_handler import FakeBigQueryHTTPServer
from .inspection import InspectionHelpers
from .state import DEFAULT_USER_EMAIL, FakeState


def rule_spec(job_id=None, job_type=None, *, times=None, labels=None, query=None,
              behaviour: Behaviour | dict | None = None, **fields) -> dict:
    """Build a rule spec dict; ``behaviour`` and keyword fields are merged."""
    if isinstance(behaviour, Behaviour):
        behaviour = behaviour.to_dict()
    spec = {"job_id": job_id, "job_type": job_type, "times": times, "labels": labels, "query": query,
            "behaviour": {**(behaviour or {}), **fields}}
    return {k: v for k, v in spec.items() if v is not None}


def fault_spec(kind, endpoint="any", *, count=None, rate=None, delay_s=None, job_id=None) -> dict:
    spec = {"kind": str(kind), "endpoint": endpoint, "count": count, "rate": rate,
            "delay_s": delay_s, "job_id": job_id}
    return {k: v for k, v in spec.items() if v is not None}


class FakeBigQuery(InspectionHelpers):
    """In-process fake BigQuery server.

    >>> with FakeBigQuery() as fake:
    ...     client = bigquery.Client(project="p", credentials=AnonymousCredentials(),
    ...                              client_options={"api_endpoint": fake.url})
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0,
                 user_email: str = DEFAULT_USER_EMAIL, clock: Clock | None = None, verbose: bool = False):
        self.state = FakeState(clock=clock, seed=seed, user_email=user_email)
        self._httpd = FakeBigQueryHTTPServer((host, port), self.state, verbose=verbose)
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeBigQuery":
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="fakebq", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread (used by ``python -m tests.fakebq``)."""
        self._httpd.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        self.state.interrupt.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "FakeBigQuery":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- control -------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self.state.clock

    def reset(self) -> None:
        """Forget jobs, uploads, rules, faults, calls, defaults; real-time clock."""
        self.state.reset()

    def add_rule(self, job_id: str | None = None, job_type: str | None = None, *, times: int | None = None,
                 labels: dict | None = None, query: str | None = None,
                 behaviour: Behaviour | dict | None = None, **fields) -> int:
        """Jobs matching all given criteria get these behaviour fields; returns the rule id."""
        return controls.add_rule(self.state, rule_spec(job_id, job_type, times=times, labels=labels,
                                                       query=query, behaviour=behaviour, **fields))

    def remove_rule(self, rule_id: int) -> bool:
        return self.state.rules.remove(rule_id)

    def clear_rules(self) -> None:
        self.state.rules.clear()

    @property
    def rules(self) -> list[dict]:
        return self.state.rules.snapshot()

    def set_defaults(self, **fields) -> dict:
        """Change the base Behaviour every job starts from."""
        return controls.set_defaults(self.state, fields)

    def inject(self, kind: str, endpoint: str = "any", *, count: int | None = None, rate: float | None = None,
               delay_s: float | None = None, job_id: str | None = None) -> int:
        """Add a fault (see faults.Fault); returns the fault id."""
        return controls.add_fault(self.state, fault_spec(kind, endpoint, count=count, rate=rate,
                                                         delay_s=delay_s, job_id=job_id))

    def remove_fault(self, fault_id: int) -> bool:
        return self.state.injector.remove(fault_id)

    def clear_faults(self) -> None:
        self.state.injector.clear()

    @property
    def faults(self) -> list[dict]:
        return self.state.injector.snapshot()

    def set_seed(self, seed: int) -> None:
        self.state.injector.set_seed(seed)

    def set_user_email(self, email: str) -> None:
        """The identity the fake attributes requests to (jobs.list without allUsers)."""
        self.state.user_email = email

    def set_location_rule(self, on: bool) -> None:
        """BigQuery's location rule (on by default): regional jobs are found only with their location."""
        self.state.store.location_rule = bool(on)

    # -- inspection ----------------------------------------------------------
    @property
    def jobs(self) -> list[dict]:
        return self.state.store.snapshot(self.url)

    @property
    def calls(self) -> list[dict]:
        return self.state.call_log.calls()

    @property
    def call_counts(self) -> dict[str, int]:
        return self.state.call_log.counts()

    @property
    def fault_counts(self) -> dict[str, int]:
        return self.state.injector.counts()

    def uploaded_bytes(self, job_id: str, project: str | None = None) -> bytes | None:
        return controls.uploaded_bytes(self.state, job_id, project)
