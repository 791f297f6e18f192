import pytest

from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.core.job_config import build_configuration, parse_configuration
from airflow_bqjobs.core.labels import airflow_labels, merge_labels, sanitize_label_value, validate_labels
from airflow_bqjobs.core.summary import summarize_job

Q = {"query": {"query": "SELECT 1", "useLegacySql": False}}


def test_airflow_labels_are_valid_and_distinct_when_shortened():
    run_a = "manual__2026-11-21T19:40:08.123456+00:00" + "x" * 60
    run_b = run_a[:-1] + "y"
    la, lb = airflow_labels("Sales.DAG", "Load", run_a, 3), airflow_labels("Sales.DAG", "Load", run_b, 3)
    validate_labels(la)
    assert la["airflow-dag"] == "sales_dag" and la["airflow-map-index"] == "3"
    assert len(la["airflow-run"]) == 63 and la["airflow-run"] != lb["airflow-run"]


def test_international_letters_kept():
    assert sanitize_label_value("Café-Ünïcode") == "café-ünïcode"


@pytest.mark.parametrize(
    "labels, fragment",
    [
        ({"Team": "a"}, "must start with a lowercase letter"),
        ({"1team": "a"}, "must start with a lowercase letter"),
        ({"team": "A"}, "value of 'team'"),
        ({"team": "x" * 64}, "at most 63"),
        ({"": "a"}, "1-63 characters"),
        ({"team": 5}, "value of 'team'"),
        ({f"k{i}": "v" for i in range(65)}, "at most 64"),
        (["team"], "must be a dict"),
    ],
)
def test_bad_labels(labels, fragment):
    with pytest.raises(InvalidJobInput, match="labels") as err:
        validate_labels(labels)
    assert fragment in str(err.value)


def test_labels_never_silently_dropped():
    with pytest.raises(InvalidJobInput, match="exceed"):
        merge_labels({f"k{i}": "v" for i in range(62)}, airflow_labels("d", "t", "r"))
    with pytest.raises(InvalidJobInput, match="airflow-dag"):
        merge_labels({"airflow-dag": "mine"}, airflow_labels("d", "t", "r"))


def test_build_configuration_merges_labels_and_timeout():
    config = build_configuration(
        {**Q, "labels": {"team": "a", "env": "dev"}},
        labels={"env": "prod"},
        airflow_labels=airflow_labels("d", "t", "r"),
        job_timeout_ms=60000,
    )
    assert config["labels"] == {"team": "a", "env": "prod", "airflow-dag": "d", "airflow-task": "t", "airflow-run": "r"}
    assert config["jobTimeoutMs"] == "60000"
    assert build_configuration({**Q, "jobTimeoutMs": "5"}, job_timeout_ms=60000)["jobTimeoutMs"] == "5"


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({}, "exactly one job type"),
        ({"query": {}, "load": {}}, "['query', 'load']"),
        ({"querry": {}}, "querry"),
        ({"query": "SELECT 1"}, "configuration.query: must be a dict"),
        ({"configuration": Q}, "not a whole job resource"),
        ("{not json", "not JSON"),
        (["query"], "must be a dict"),
        ({"query": {"query": float("nan")}}, "JSON-serialisable"),
        ({**Q, "jobTimeoutMs": -1}, "jobTimeoutMs"),
        ({**Q, "jobTimeoutMs": "soon"}, "jobTimeoutMs"),
        ({**Q, "labels": {"Bad": "x"}}, "configuration.labels"),
    ],
)
def test_bad_configuration(config, fragment):
    with pytest.raises(InvalidJobInput) as err:
        parse_configuration(config)
    assert fragment in str(err.value)


def test_configuration_from_json_text():
    assert parse_configuration('{"copy": {"sourceTable": {}}}') == {"copy": {"sourceTable": {}}}


def test_summary_is_compact():
    job = {
        "jobReference": {"projectId": "p", "location": "US", "jobId": "j"},
        "configuration": {"query": {"query": "SELECT 1"}, "labels": {"a": "b"}},
        "status": {"state": "DONE", "errors": [{"reason": "r", "message": "m"}]},
        "statistics": {"creationTime": "1", "query": {"totalBytesBilled": "10", "queryPlan": [{"huge": 1}]}},
    }
    s = summarize_job(job)
    assert s["job_type"] == "query" and s["state"] == "DONE" and s["error_result"] is None
    assert s["statistics"] == {"creationTime": "1", "query": {"totalBytesBilled": "10"}}
    assert s["errors"] == [{"reason": "r", "message": "m"}]
