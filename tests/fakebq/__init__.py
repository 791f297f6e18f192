"""fakebq: a controllable fake of the BigQuery REST v2 jobs API, over real HTTP.

Driven by the unmodified google-cloud-bigquery client, to test exactly-once
job submission against lost answers, retries, cancels and eventual
consistency. Standard library only.

    FakeBigQuery          in-process server + handle (pytest fixture ``fake_bq``)
    FakeBigQueryProcess   ``python -m tests.fakebq`` as a subprocess + HTTP handle
    RemoteFakeBigQuery    HTTP handle for a fake started elsewhere
    Behaviour, Rule, Fault, Clock
"""

from .behaviour import Behaviour, parse_directive
from .clock import Clock
from .faults import ENDPOINTS, FAULT_KINDS, Fault
from .remote import FakeBigQueryProcess, RemoteFakeBigQuery
from .rules import Rule
from .server import FakeBigQuery
from .state import DEFAULT_USER_EMAIL

__all__ = [
    "Behaviour", "Clock", "DEFAULT_USER_EMAIL", "ENDPOINTS", "FAULT_KINDS", "FakeBigQuery",
    "FakeBigQueryProcess", "Fault", "RemoteFakeBigQuery", "Rule", "parse_directive",
]
