"""Everything the fake knows, in one object shared by all request threads.

The HTTP layer, the control API and the Python handle all act on this; a
reset puts it back to how a fresh server starts.
"""

from __future__ import annotations

import threading

from .behaviour import Behaviour
from .call_log import CallLog
from .clock import Clock
from .faults import FaultInjector
from .job_model import Job
from .job_resource import job_resource
from .job_store import JobStore
from .rules import RuleBook
from .uploads import UploadSessions

DEFAULT_USER_EMAIL = "fakebq-user@test-project.iam.gserviceaccount.com"


class FakeState:
    def __init__(self, *, clock: Clock | None = None, seed: int = 0,
                 user_email: str = DEFAULT_USER_EMAIL):
        self.clock = clock or Clock()
        self.store = JobStore(self.clock)
        self.rules = RuleBook()
        self.injector = FaultInjector(seed)
        self.call_log = CallLog()
        self.uploads = UploadSessions()
        self.defaults = Behaviour()
        self.user_email = user_email
        self._initial = (seed, user_email)
        # Set to cut short in-flight "delay" faults (on reset and stop).
        self.interrupt = threading.Event()

    def resolve_behaviour(self, job_id: str, job_type: str, labels: dict,
                          query: str | None, directive: dict | None) -> Behaviour:
        """defaults < query directive < first matching rule."""
        behaviour = self.defaults.merged(directive)
        return behaviour.merged(self.rules.consume_match(job_id, job_type, labels, query))

    def render(self, job: Job, now: float, base_url: str) -> dict:
        return job_resource(job, now, base_url, self.store.num_children(job, now))

    def reset(self) -> None:
        seed, user_email = self._initial
        old, self.interrupt = self.interrupt, threading.Event()
        old.set()
        self.store.clear()
        self.rules.clear()
        self.injector.reset(seed)
        self.call_log.clear()
        self.uploads.clear()
        self.defaults = Behaviour()
        self.user_email = user_email
        self.clock.reset()
