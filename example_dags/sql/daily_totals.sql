-- Rendered by Jinja at run time: the run id lands in the table, so re-running the same DAG run
-- renders the same SQL and derives the same job ID.
CREATE OR REPLACE TABLE local.daily_totals AS
SELECT '{{ run_id }}' AS run_id, region, SUM(amount) AS total
FROM UNNEST([STRUCT('emea' AS region, 120 AS amount), ('emea', 30), ('apac', 75)])
GROUP BY region
