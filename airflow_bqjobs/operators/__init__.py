"""Operators of airflow-bqjobs. Importing them is cheap: no google.cloud module is loaded."""

from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator

__all__ = ["BigQuerySubmitJobOperator"]
