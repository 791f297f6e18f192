"""Sensors of airflow-bqjobs. Importing them is cheap: no google.cloud module is loaded."""

from airflow_bqjobs.sensors.job import BigQueryJobSensor

__all__ = ["BigQueryJobSensor"]
