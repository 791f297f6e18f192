"""The DAG whose OpenLineage events tests/test_openlineage.py checks: a query, a load, a copy and an
extract job, each in sync and deferrable mode; a script; an upload load; a SELECT writing BigQuery's
anonymous result table; a job that fails. The ``/* fakebq: ... */`` directives give the fake the
statistics BigQuery would report (referenced tables, DDL targets) and keep deferrable jobs running
long enough to really defer."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

P = "test-project"
CONN_ID = "bqjobs_lineage"
DAG_ID = "bqjobs_lineage"
LOGICAL_DATE = datetime(2026, 5, 1, tzinfo=timezone.utc)
_UPLOAD = {"path": None}


def table(dataset: str, name: str) -> dict:
    return {"projectId": P, "datasetId": dataset, "tableId": name}


def fakebq(**behaviour) -> str:
    return f"/* fakebq: {json.dumps(behaviour)} */"


SALES, FX, TOTALS = table("raw", "sales"), table("raw", "fx"), table("mart", "daily_totals")


def query(running_s: float) -> dict:
    stats = {"query": {"referencedTables": [SALES, FX, TOTALS], "totalBytesBilled": "10485760",
                       "cacheHit": False}, "totalBytesProcessed": "2097152"}
    sql = (f"{fakebq(running_s=running_s, statistics=stats)} "
           "SELECT day, SUM(amount * rate) AS total FROM raw.sales JOIN raw.fx USING (currency) GROUP BY day")
    return {"query": {"query": sql, "useLegacySql": False, "destinationTable": TOTALS,
                      "writeDisposition": "WRITE_APPEND"}}


LOAD = {"load": {"sourceUris": ["gs://landing/events/2026-05-01/part-*.json"], "destinationTable": table("raw", "events"),
                 "sourceFormat": "NEWLINE_DELIMITED_JSON"}}
COPY = {"copy": {"sourceTables": [TOTALS], "destinationTable": table("backup", "daily_totals")}}
EXTRACT = {"extract": {"sourceTable": TOTALS, "destinationUris": ["gs://exports/daily_totals/part-*.csv"]}}
SCRIPT = {"query": {"useLegacySql": False, "query": (
    f"{fakebq(statistics={'query': {'referencedTables': [SALES], 'ddlTargetTable': table('stage', 'eu_sales')}})}"
    " CREATE OR REPLACE TABLE stage.eu_sales AS SELECT * FROM raw.sales WHERE region = 'EU';\n"
    f"{fakebq(statistics={'query': {'referencedTables': [table('stage', 'eu_sales'), FX], 'ddlTargetTable': table('mart', 'eu_totals')}})}"
    " CREATE OR REPLACE TABLE mart.eu_totals AS SELECT day, SUM(amount) FROM stage.eu_sales JOIN raw.fx USING (currency) GROUP BY day;")}}
ANONYMOUS = {"query": {"query": f"{fakebq(statistics={'query': {'referencedTables': [SALES]}})} SELECT COUNT(*) FROM raw.sales",
                       "useLegacySql": False}}
FAILING = {"query": {"query": f"{fakebq(error={'reason': 'invalidQuery', 'message': 'Unrecognized name: amout'})} SELECT amout FROM raw.sales",
                     "useLegacySql": False}}


def upload_file(directory: str) -> str:
    path = os.path.join(directory, "events.json")
    with open(path, "w") as handle:
        handle.write('{"id": 1}\n{"id": 2}\n')
    _UPLOAD["path"] = path
    return path


def build_dag():
    from airflow_bqjobs.operators.rerun import BigQueryRerunJobOperator
    from airflow_bqjobs.operators.submit import BigQuerySubmitJobOperator
    from tests.compat import DAG

    common = {"gcp_conn_id": CONN_ID, "project_id": P, "poll_interval": 0.2, "retries": 0}
    with DAG(DAG_ID, schedule=None, start_date=LOGICAL_DATE, catchup=False) as dag:
        for mode, deferrable in (("sync", False), ("deferred", True)):
            running = 1.0 if deferrable else 0.1
            submitted = BigQuerySubmitJobOperator(task_id=f"query_{mode}", configuration=query(running),
                                                  deferrable=deferrable, **common)
            # the rerun operator's lineage: the repeated job reads and writes what the source did
            submitted >> BigQueryRerunJobOperator(task_id=f"rerun_{mode}", source_job=submitted.output,
                                                  deferrable=deferrable, **common)
            for kind, config in (("load", LOAD), ("copy", COPY), ("extract", EXTRACT)):
                BigQuerySubmitJobOperator(task_id=f"{kind}_{mode}", configuration=config, deferrable=deferrable,
                                          **common)
        BigQuerySubmitJobOperator(task_id="script", configuration=SCRIPT, **common)
        BigQuerySubmitJobOperator(task_id="anonymous_result", configuration=ANONYMOUS, **common)
        BigQuerySubmitJobOperator(task_id="upload", configuration={"load": {
            "destinationTable": table("raw", "uploaded"), "sourceFormat": "NEWLINE_DELIMITED_JSON"}},
            source_file=_UPLOAD["path"], **common)
        BigQuerySubmitJobOperator(task_id="failing", configuration=FAILING, **common)
    return dag
