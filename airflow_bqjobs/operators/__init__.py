"""Operators of airflow-bqjobs. Importing them is cheap: no google.cloud module is loaded."""

from airflow_bqjobs.operators.cancel import BigQueryCancelJobOperator
from airflow_bqjobs.operators.delete import BigQueryDeleteJobMetadataOperator
from airflow_bqjobs.operators.get import BigQueryGetJobOperator
from airflow_bqjobs.operators.list import BigQueryListJobsOperator
from airflow_bqjobs.operators.rerun import BigQueryRerunJobOperator
from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator

__all__ = [
    "BigQueryCancelJobOperator",
    "BigQueryDeleteJobMetadataOperator",
    "BigQueryGetJobOperator",
    "BigQueryListJobsOperator",
    "BigQueryRerunJobOperator",
    "BigQuerySubmitJobOperator",
]
