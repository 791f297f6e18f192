"""Exactly-once BigQuery jobs for Apache Airflow.

Nothing is imported here on purpose: DAG files import ``airflow_bqjobs.operators`` at parse time,
and this package must stay as cheap to import as possible.
"""

__version__ = "0.1.0"
