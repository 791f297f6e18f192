"""Retry vs clear, using the counters Airflow really moves (see airflow_bqjobs.context)."""

from types import SimpleNamespace

from airflow_bqjobs.context import run_identity


def ctx(try_number=1, max_tries=2, retries=2, clear_number=0, map_index=-1):
    task = SimpleNamespace(retries=retries)
    ti = SimpleNamespace(dag_id="d", task_id="t", map_index=map_index, try_number=try_number, max_tries=max_tries, task=task)
    return {"ti": ti, "task": task, "run_id": "r", "dag_run": SimpleNamespace(clear_number=clear_number)}


def test_retries_keep_the_identity():
    first = run_identity(ctx(try_number=1))
    assert first.rerun_key is None
    assert run_identity(ctx(try_number=2)) == first
    assert run_identity(ctx(try_number=3)) == first


def test_task_clear_changes_it_and_its_retries_keep_the_new_one():
    first = run_identity(ctx(try_number=1))
    # Airflow on clear after try 3: max_tries = try_number + retries
    cleared = run_identity(ctx(try_number=4, max_tries=3 + 2))
    assert cleared != first
    assert run_identity(ctx(try_number=5, max_tries=3 + 2)) == cleared


def test_dag_run_clear_changes_it_only_for_the_cleared_task_instances():
    # Airflow bumps clear_number for every task instance of a reset run, max_tries only on the cleared ones
    assert run_identity(ctx(clear_number=1, max_tries=1 + 2)) != run_identity(ctx())
    assert run_identity(ctx(clear_number=1)) == run_identity(ctx())


def test_reattach_on_clear_ignores_clears_and_keeps_first_run_id():
    first = run_identity(ctx(), reattach_on_clear=True)
    assert run_identity(ctx(try_number=4, max_tries=5, clear_number=2), reattach_on_clear=True) == first
    assert first == run_identity(ctx())


def test_map_index():
    assert run_identity(ctx(map_index=3)).map_index == 3


def test_tries_this_cycle_counts_tries_since_the_ids_last_change():
    from airflow_bqjobs.context import tries_this_cycle

    assert tries_this_cycle(ctx(try_number=1)) == 1
    assert tries_this_cycle(ctx(try_number=4)) == 4  # never cleared: max_tries == retries
    # cleared after try 3 (max_tries = 3 + 2): try 4 is the first of the new cycle
    assert tries_this_cycle(ctx(try_number=4, max_tries=5)) == 1
    assert tries_this_cycle(ctx(try_number=6, max_tries=5)) == 3
    assert tries_this_cycle(ctx(try_number=6, max_tries=5), reattach_on_clear=True) == 6


def test_run_created_not_before_is_the_earliest_run_date_minus_clock_skew():
    from datetime import datetime, timezone

    from airflow_bqjobs.context import CLOCK_SKEW, run_created_not_before

    context = ctx()
    assert run_created_not_before(context) is None
    after = datetime(2026, 3, 2, tzinfo=timezone.utc)
    logical = datetime(2026, 3, 1, tzinfo=timezone.utc)
    context["dag_run"] = SimpleNamespace(clear_number=0, run_after=after, logical_date=logical)
    assert run_created_not_before(context) == logical - CLOCK_SKEW
