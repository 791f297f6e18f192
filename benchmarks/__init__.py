"""Benchmarks: airflow-bqjobs next to apache-airflow-providers-google. Run with ``bash scripts/bench.sh``."""
