"""Pure logic: no Airflow, no Google client, no I/O. Everything here is unit-testable in isolation."""
