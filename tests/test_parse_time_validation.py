"""Every literal constructor argument is checked when the DAG file is parsed, with the error the task
would raise when it runs; the same value written as a template is checked once rendered (same error).

Each case: (1) constructing the operator with the literal bad value raises InvalidJobInput naming the
field; (2) the same value produced by a Jinja template constructs fine, and rendering + execute
raise the identical error, with no request sent; (3) a DAG file holding the literal fails to import
through Airflow's own DagBag, naming the field.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_bqjobs.core.arguments import is_literal
from airflow_bqjobs.core.errors import InvalidJobInput
from airflow_bqjobs.operators import (
    BigQueryCancelJobOperator,
    BigQueryDeleteJobMetadataOperator,
    BigQueryGetJobOperator,
    BigQueryListJobsOperator,
    BigQueryRerunJobOperator,
    BigQuerySubmitJobOperator,
)
from airflow_bqjobs.sensors.job import BigQueryJobSensor
from tests.airflow_context import make_context

QUERY = {"query": {"query": "SELECT 1", "useLegacySql": False}}


@dataclass(frozen=True)
class Case:
    name: str
    operator: type
    argument: str
    literal: Any  # the bad value as written in a DAG file
    template: Any  # a template rendering to the same bad value (None: the argument is not templated)
    field: str
    says: str
    base: dict = field(default_factory=dict)

    def kwargs(self, value) -> dict:
        kwargs = {"task_id": "t", "project_id": "test-project", **self.base}
        if self.operator is BigQuerySubmitJobOperator:
            kwargs.setdefault("configuration", QUERY)
        if self.operator in (BigQueryCancelJobOperator, BigQueryJobSensor, BigQueryGetJobOperator):
            kwargs.setdefault("job_id", "some_job")
        if self.operator is BigQueryRerunJobOperator:
            kwargs.setdefault("source_job", "some_job")
        if self.operator is BigQueryDeleteJobMetadataOperator and "purge" not in self.base:
            kwargs.setdefault("job_id", "some_job")
        kwargs[self.argument] = value
        return kwargs


CASES = [
    Case("submit-job_id", BigQuerySubmitJobOperator, "job_id", "daily load!", "{{ 'daily load!' }}",
         "job_id", "only letters, digits"),
    Case("submit-label", BigQuerySubmitJobOperator, "labels", {"team": "Data Eng"}, {"team": "{{ 'Data Eng' }}"},
         "labels", "lowercase letters"),
    Case("submit-location", BigQuerySubmitJobOperator, "location", "us central1", "{{ 'us central1' }}",
         "location", "not a BigQuery location"),
    Case("submit-project_id", BigQuerySubmitJobOperator, "project_id", "My_Project", "{{ 'My_Project' }}",
         "project_id", "not a valid Google Cloud project ID"),
    Case("submit-job_id_prefix", BigQuerySubmitJobOperator, "job_id_prefix", "my.prefix", "{{ 'my.prefix' }}",
         "job_id_prefix", "only letters, digits"),
    Case("submit-deferrable", BigQuerySubmitJobOperator, "deferrable", "yes", None, "deferrable", "True or False"),
    Case("submit-reattach_on_clear", BigQuerySubmitJobOperator, "reattach_on_clear", "no", None,
         "reattach_on_clear", "True or False"),
    Case("rerun-source_job", BigQueryRerunJobOperator, "source_job", "not a job!", "{{ 'not a job!' }}",
         "source_job", "only letters, digits"),
    Case("rerun-configuration_overrides", BigQueryRerunJobOperator, "configuration_overrides", "{not json",
         None, "configuration_overrides", "not JSON"),
    Case("cancel-job_id-empty-list", BigQueryCancelJobOperator, "job_id", [], "{{ [] }}", "job_id", "empty list"),
    Case("cancel-job_id-bad", BigQueryCancelJobOperator, "job_id", ["ok", "a b"], "{{ ['ok', 'a b'] }}",
         "job_id[1]", "only letters, digits"),
    Case("cancel-location", BigQueryCancelJobOperator, "location", "U S", "{{ 'U S' }}", "location",
         "not a BigQuery location"),
    Case("cancel-wait", BigQueryCancelJobOperator, "wait", "yes", None, "wait", "True or False"),
    Case("delete-job_id", BigQueryDeleteJobMetadataOperator, "job_id", "a b", "{{ 'a b' }}", "job_id",
         "only letters, digits"),
    Case("delete-min_creation_time", BigQueryDeleteJobMetadataOperator, "min_creation_time", "yesterday",
         "{{ 'yesterday' }}", "min_creation_time", "neither epoch milliseconds", base={"purge": True}),
    Case("delete-purge_task_ids", BigQueryDeleteJobMetadataOperator, "purge_task_ids", [""], None,
         "purge_task_ids", "non-empty task id", base={"purge": True}),
    Case("list-state_filter", BigQueryListJobsOperator, "state_filter", "finished", "{{ 'finished' }}",
         "state_filter", "not a job state"),
    Case("list-min_creation_time", BigQueryListJobsOperator, "min_creation_time", "soon", "{{ 'soon' }}",
         "min_creation_time", "neither epoch milliseconds"),
    Case("list-labels", BigQueryListJobsOperator, "labels", {"Team": "a"}, {"Team": "{{ 'a' }}"},
         "labels", "start with a lowercase letter"),
    Case("list-airflow_run_id", BigQueryListJobsOperator, "airflow_run_id", "", None,
         "airflow_run_id", "non-empty string"),
    Case("list-all_users", BigQueryListJobsOperator, "all_users", "yes", None, "all_users", "True or False"),
    Case("sensor-job_id", BigQueryJobSensor, "job_id", "x:", "{{ 'x:' }}", "job_id", "the job ID after ':' is empty"),
    Case("sensor-two-jobs", BigQueryJobSensor, "job_id", ["a", "b"], "{{ ['a', 'b'] }}", "job_id", "names 2 jobs"),
    Case("sensor-location", BigQueryJobSensor, "location", "us central1", "{{ 'us central1' }}", "location",
         "not a BigQuery location"),
    Case("sensor-deferrable", BigQueryJobSensor, "deferrable", "yes", None, "deferrable", "True or False"),
    Case("sensor-wait_for_existence", BigQueryJobSensor, "wait_for_existence", 1, None,
         "wait_for_existence", "True or False"),
    Case("get-job_id", BigQueryGetJobOperator, "job_id", ["a", "b"], "{{ ['a', 'b'] }}", "job_id", "names 2 jobs"),
    Case("get-missing_ok", BigQueryGetJobOperator, "missing_ok", "yes", None, "missing_ok", "True or False"),
]
TEMPLATED = [c for c in CASES if c.template is not None]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_literal_bad_argument_fails_at_construction(case):
    with pytest.raises(InvalidJobInput) as err:
        case.operator(**case.kwargs(case.literal))
    assert err.value.field == case.field and case.says in str(err.value), str(err.value)


@pytest.mark.parametrize("case", TEMPLATED, ids=[c.name for c in TEMPLATED])
def test_templated_bad_argument_fails_once_rendered_with_the_same_error(case, emulator, fake_bq):
    with pytest.raises(InvalidJobInput) as at_parse:
        case.operator(**case.kwargs(case.literal))
    op = case.operator(**case.kwargs(case.template))  # parses: the value is not known yet
    context = make_context(op)
    with pytest.raises(InvalidJobInput) as at_run:
        op.render_template_fields(context)
        if case.operator is BigQueryJobSensor:
            op.poke(context)
        else:
            op.execute(context)
    assert str(at_run.value) == str(at_parse.value)
    assert fake_bq.calls == []


def test_an_xcom_arg_is_checked_when_the_task_runs_not_at_parse_time():
    from airflow.providers.common.compat.sdk import DAG, task

    with DAG("xcom_args", schedule=None):
        @task
        def produce():
            return "whatever"

        value = produce()
        BigQueryCancelJobOperator(task_id="cancel", job_id=value)
        BigQuerySubmitJobOperator(task_id="submit", configuration=QUERY, labels={"team": value})
        BigQueryJobSensor(task_id="sense", job_id=value)


def test_a_dag_file_with_a_bad_literal_fails_to_import_naming_the_field(airflow_db, tmp_path):
    from tests.compat import dag_bag

    (tmp_path / "bad_dag.py").write_text(textwrap.dedent("""
        import pendulum
        from airflow.providers.common.compat.sdk import DAG
        from airflow_bqjobs.operators import BigQueryListJobsOperator

        with DAG("bad_dag", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):
            BigQueryListJobsOperator(task_id="list", state_filter="finished")
    """))
    bag = dag_bag(tmp_path)
    (error,) = bag.import_errors.values()
    assert "state_filter: 'finished' is not a job state" in error and bag.dags == {}


@pytest.mark.parametrize(
    "value, literal",
    [("plain", True), ("{{ ds }}", False), ("{% if x %}a{% endif %}", False), ({"a": ["b", "{{ c }}"]}, False),
     ([1, 2.5, None, True], True), ({"k": "v"}, True), (object(), False)],
)
def test_is_literal(value, literal):
    assert is_literal(value) is literal


def test_a_file_name_the_operator_reads_as_a_template_is_not_literal():
    assert is_literal("job.json", (".json", ".sql")) is False
    assert is_literal("job.json") is True
