"""What a job read and wrote, named as OpenLineage's spec (and the Google provider) name datasets."""

import pytest

from airflow_bqjobs.core.lineage import DatasetName, gcs_dataset, job_lineage

P = "proj"
ANON = {"projectId": P, "datasetId": "_4f1e0c2a9b", "tableId": "anon7d1f0e2c"}


def t(dataset, table, project=P):
    return {"projectId": project, "datasetId": dataset, "tableId": table}


def bq(name):
    return DatasetName("bigquery", name)


def job(configuration, statistics=None, status=None, job_id="j1"):
    return {"jobReference": {"projectId": P, "location": "EU", "jobId": job_id}, "configuration": configuration,
            "statistics": statistics or {}, "status": status or {"state": "DONE"}}


def test_query_reads_referenced_tables_minus_the_destination_and_writes_the_destination():
    dest = t("mart", "totals")
    lineage = job_lineage(job(
        {"jobType": "QUERY", "query": {"query": "INSERT ...", "destinationTable": dest}},
        {"totalBytesProcessed": "2048", "query": {"referencedTables": [t("raw", "sales"), dest, t("raw", "fx", "other")],
                                                  "totalBytesBilled": "10485760", "cacheHit": False}}))
    assert lineage.inputs == [bq("proj.raw.sales"), bq("other.raw.fx")]
    assert lineage.outputs == [bq("proj.mart.totals")]
    assert (lineage.sql, lineage.bytes_billed, lineage.bytes_processed, lineage.cache_hit) == (
        "INSERT ...", 10485760, 2048, False)
    assert (lineage.job_id, lineage.job_type, lineage.error) == ("j1", "QUERY", None)


def test_an_anonymous_result_table_is_no_output():
    lineage = job_lineage(job({"query": {"query": "SELECT 1", "destinationTable": ANON}},
                              {"query": {"referencedTables": [t("raw", "sales")], "cacheHit": True}}))
    assert lineage.inputs == [bq("proj.raw.sales")] and lineage.outputs == []
    assert lineage.cache_hit is True and lineage.job_type == "QUERY"


def test_ddl_target_is_an_output():
    lineage = job_lineage(job({"query": {"query": "CREATE TABLE mart.t AS SELECT ..."}},
                              {"query": {"ddlTargetTable": t("mart", "t"), "referencedTables": [t("raw", "s")]}}))
    assert (lineage.inputs, lineage.outputs) == ([bq("proj.raw.s")], [bq("proj.mart.t")])


def test_a_script_is_accounted_for_by_its_children():
    parent = job({"query": {"query": "BEGIN ... END"}}, {"numChildJobs": "2", "query": {"statementType": "SCRIPT"}})
    children = [
        job({"query": {"query": "CREATE TEMP ...", "destinationTable": t("stage", "s1")}},
            {"query": {"referencedTables": [t("raw", "a")]}}, job_id="c1"),
        job({"query": {"query": "INSERT ...", "destinationTable": t("mart", "m")}},
            {"query": {"referencedTables": [t("stage", "s1"), t("raw", "b")]}}, job_id="c2"),
    ]
    lineage = job_lineage(parent, children=children)
    assert lineage.inputs == [bq("proj.raw.a"), bq("proj.raw.b")]  # stage.s1 is written by the script itself
    assert lineage.outputs == [bq("proj.stage.s1"), bq("proj.mart.m")]


def test_load_from_cloud_storage():
    lineage = job_lineage(job({"load": {"sourceUris": ["gs://landing/2026/01/part-*.json", "gs://landing/x.csv"],
                                        "destinationTable": t("raw", "events")}}))
    assert lineage.inputs == [DatasetName("gs://landing", "2026/01"), DatasetName("gs://landing", "x.csv")]
    assert lineage.outputs == [bq("proj.raw.events")] and lineage.job_type == "LOAD"


def test_load_of_an_uploaded_file(tmp_path):
    path = tmp_path / "rows.json"
    lineage = job_lineage(job({"load": {"destinationTable": t("raw", "events")}}), uploaded_file=str(path))
    assert lineage.inputs == [DatasetName("file", str(path))]


def test_copy_and_extract():
    copy = job_lineage(job({"copy": {"sourceTables": [t("a", "x"), t("a", "y")], "destinationTable": t("b", "z")}}))
    assert (copy.inputs, copy.outputs, copy.job_type) == ([bq("proj.a.x"), bq("proj.a.y")], [bq("proj.b.z")], "COPY")
    single = job_lineage(job({"copy": {"sourceTable": t("a", "x"), "destinationTable": t("b", "z")}}))
    assert single.inputs == [bq("proj.a.x")]
    extract = job_lineage(job({"extract": {"sourceTable": t("mart", "m"),
                                           "destinationUris": ["gs://exports/m/part-*.csv"]}}))
    assert (extract.inputs, extract.outputs) == ([bq("proj.mart.m")], [DatasetName("gs://exports", "m")])


def test_the_error_of_a_failed_job():
    err = {"reason": "invalidQuery", "message": "Syntax error"}
    assert job_lineage(job({"query": {"query": "SELEC"}}, status={"state": "DONE", "errorResult": err})).error == err


@pytest.mark.parametrize("uri, name", [
    ("gs://b/dir/file.csv", "dir/file.csv"), ("gs://b/dir/*", "dir"), ("gs://b/dir/pre_*", "dir"),
    ("gs://b/dir/", "dir"), ("gs://b/file.*", "/"), ("gs://b", "/"), ("gs://b/dir/file.", "dir"),
])
def test_gcs_names_as_the_google_provider_gives_them(uri, name):
    assert gcs_dataset(uri) == DatasetName("gs://b", name)
