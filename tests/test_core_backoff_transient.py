import itertools
import random

import pytest
import requests
from google.api_core import exceptions as gexc

from airflow_bqjobs.core.backoff import backoff_delays, poll_intervals, validate_interval
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.transient import is_transient


def test_poll_intervals_grow_to_the_cap():
    assert list(itertools.islice(poll_intervals(5), 6)) == [1.0, 1.5, 2.25, 3.375, 5, 5]
    assert list(itertools.islice(poll_intervals(0.2), 2)) == [0.2, 0.2]


def test_backoff_is_jittered_and_capped():
    delays = list(itertools.islice(backoff_delays(1, 8, 2, random.Random(1)), 8))
    assert all(0.5 <= d <= 1 for d in delays[:1]) and all(d <= 8 for d in delays)
    assert max(delays) > 4
    assert len(set(delays)) == len(delays)


@pytest.mark.parametrize("value", [0, -1, "5", None, True, float("nan")])
def test_bad_intervals(value):
    with pytest.raises(InvalidJobInput, match="poll_interval"):
        validate_interval(value, "poll_interval")


def _err(cls, reason=None):
    return cls("boom", errors=[{"reason": reason, "message": "boom"}] if reason else [])


@pytest.mark.parametrize(
    "exc, transient",
    [
        (_err(gexc.TooManyRequests), True),
        (_err(gexc.Forbidden, "rateLimitExceeded"), True),
        (_err(gexc.Forbidden, "quotaExceeded"), False),
        (_err(gexc.Forbidden, "accessDenied"), False),
        (_err(gexc.InternalServerError, "backendError"), True),
        (_err(gexc.InternalServerError), True),
        (_err(gexc.ServiceUnavailable), True),
        (_err(gexc.BadGateway), True),
        (_err(gexc.GatewayTimeout), True),
        (_err(gexc.BadRequest, "invalid"), False),
        (_err(gexc.NotFound, "notFound"), False),
        (_err(gexc.Conflict, "duplicate"), False),
        (requests.exceptions.ConnectionError("reset"), True),
        (requests.exceptions.ReadTimeout("slow"), True),
        (requests.exceptions.ChunkedEncodingError("cut"), True),
        (requests.exceptions.SSLError("cert"), False),
        (ConnectionResetError(), True),
        (ValueError("bug"), False),
    ],
)
def test_one_retry_rule(exc, transient):
    assert is_transient(exc) is transient
