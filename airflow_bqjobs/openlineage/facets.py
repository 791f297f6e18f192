"""The ``bigQueryJob`` run facet: the Google provider's facet of that name (``cached``,
``billedBytes``) plus ``processedBytes``, ``jobType`` and ``location``; without its ``properties``
dump of the whole resource (the SQL is already the ``sql`` job facet). Imports OpenLineage: only
ever imported from inside a lineage method."""

from __future__ import annotations

from attr import define, field
from openlineage.client.generated.base import RunFacet

from airflow_bqjobs import __version__

SCHEMA_URL = (
    f"https://raw.githubusercontent.com/airflow-bqjobs/airflow-bqjobs/{__version__}/"
    "airflow_bqjobs/openlineage/BigQueryJobRunFacet.json#/$defs/BigQueryJobRunFacet"
)


@define
class BigQueryJobRunFacet(RunFacet):
    cached: bool
    billedBytes: int | None = field(default=None)  # noqa: N815 (OpenLineage field names)
    processedBytes: int | None = field(default=None)  # noqa: N815
    jobType: str | None = field(default=None)  # noqa: N815
    location: str | None = field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL
