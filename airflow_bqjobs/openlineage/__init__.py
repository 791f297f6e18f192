"""OpenLineage support, imported only when Airflow's OpenLineage provider asks for lineage.

Nothing here is imported when a DAG file imports an operator: the operators' lineage methods
(:class:`airflow_bqjobs.operators._lineage.JobLineageMixin`) import :mod:`.facets` inside the call,
and Airflow calls them only when ``apache-airflow-providers-openlineage`` is installed and enabled.
"""
