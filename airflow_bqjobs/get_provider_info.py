"""Provider metadata read by Airflow's ProvidersManager (entry point group ``apache_airflow_provider``).

Plain data on purpose: Airflow calls this in every component at start-up, so it imports nothing.
It validates against ``airflow/provider_info.schema.json`` and its ``connection-types`` item against
the ``connection-types`` part of ``airflow/provider.yaml.schema.json`` (declarative connection form,
Airflow >= 3.2; older versions ignore these keys and fall back to hook methods).
"""

from __future__ import annotations

_INTEGRATION = "BigQuery Jobs"


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-bqjobs",
        "name": "BigQuery Jobs",
        "description": (
            "Runs `BigQuery <https://cloud.google.com/bigquery>`__ jobs under deterministic job IDs, "
            "so that a retried task reattaches to its job instead of running (and paying for) it "
            "twice; clearing a task or DAG run starts a new job (unless reattach_on_clear=True).\n"
        ),
        # Keep in step with airflow_bqjobs.__version__ (the distribution's version).
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs",
                "tags": ["gcp"],
            }
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_bqjobs.hooks.jobs"],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_bqjobs.operators.submit",
                    "airflow_bqjobs.operators.cancel",
                    "airflow_bqjobs.operators.delete",
                    "airflow_bqjobs.operators.get",
                    "airflow_bqjobs.operators.list",
                    "airflow_bqjobs.operators.rerun",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_bqjobs.sensors.job"],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_bqjobs.triggers.job"],
            }
        ],
        "extra-links": ["airflow_bqjobs.links.BigQueryConsoleLink"],
        "connection-types": [
            {
                "connection-type": "bigquery_jobs",
                "hook-class-name": "airflow_bqjobs.hooks.jobs.BigQueryJobsHook",
                "hook-name": "BigQuery Jobs",
                "conn-fields": {
                    "project": {
                        "label": "Project ID",
                        "description": "Project that runs and is billed for the jobs. "
                        "Defaults to the credentials' project.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "key_path": {
                        "label": "Keyfile Path",
                        "description": "Path to a service-account JSON key file on the workers. "
                        "Leave empty (with Keyfile JSON) for Application Default Credentials.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "keyfile_dict": {
                        "label": "Keyfile JSON",
                        "description": "Content of a service-account JSON key.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "credential_config_file": {
                        "label": "Credential Configuration File",
                        "description": "External-account (Workload Identity Federation) configuration: "
                        "a path on the workers, or the JSON itself.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "scope": {
                        "label": "Scopes (comma separated)",
                        "description": "OAuth scopes. Default: bigquery and cloud-platform.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "impersonation_chain": {
                        "label": "Impersonation Chain",
                        "description": "Service account to impersonate, or a comma-separated delegation "
                        "chain ending with it. An operator's impersonation_chain argument wins.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "is_anonymous": {
                        "label": "Anonymous credentials (ignores all other settings)",
                        "schema": {"type": ["boolean", "null"]},
                    },
                    "location": {
                        "label": "Location",
                        "description": "Default job location, e.g. US, EU, europe-west1.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "emulator_host": {
                        "label": "Emulator host",
                        "description": "BigQuery emulator endpoint, e.g. http://127.0.0.1:9050 "
                        "(anonymous credentials; same as the BIGQUERY_EMULATOR_HOST variable).",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "login", "password", "port"],
                    "relabeling": {},
                    "placeholders": {},
                },
            }
        ],
    }
