"""Tests that scale with the day (issue 15), through the real CLI.

A daily `pipeline run` tests the rows it wrote (generic tests of incremental models read rows
loaded since the run's `tests_since`); `pipeline run --deep` tests whole tables. So a fault
in the new day stops the daily run, and a fault in old rows (which no run wrote: here a
published row changed by hand) is invisible to a daily run and stops the next --deep run.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import NEW_DAY, Checksums, Project, copy_project
from pipeline import generator

UNKNOWN_ID = 99_999_999


def _break_oldest_session(project: Project) -> str:
    """A published session, loaded long before the lookback window, with no events: what a
    hand-made update (or a bug long fixed) can leave. Returns its id."""
    with duckdb.connect(str(project.settings.warehouse_path)) as con:
        row = con.execute(
            "select session_id from marts.fct_sessions order by _loaded_at, session_id limit 1"
        ).fetchone()
        assert row is not None
        con.execute("update marts.fct_sessions set event_count = 0 where session_id = ?", [row[0]])
    return str(row[0])


def test_a_fault_in_old_rows_passes_a_daily_run_and_fails_the_deep_run(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    project = copy_project(baseline, tmp_path)
    session = _break_oldest_session(project)
    assert generator.append_day(project.settings.landing_root)[0] == NEW_DAY

    code, stdout, stderr = project.pipeline("run")
    assert code == 0, stdout + stderr  # the daily run reads only what it wrote

    code, stdout, stderr = project.pipeline("run", "--deep")
    assert code == 1, stdout + stderr
    assert "accepted_range_fct_sessions_event_count" in stdout + stderr
    # The deep run published nothing: the fault is still where it was, for a person to fix.
    count = project.warehouse.query(
        "select event_count from marts.fct_sessions where session_id = ?", [session]
    )
    assert count == [(0,)]


# Singular tests over incremental marts take the same scope (macro loaded_in_test_scope): a
# hand edit of the oldest order, which agrees with nothing but that only these tests compare.
OLD_ORDER_FAULTS = {
    "assert_order_totals_match_their_lines": "line_count = line_count + 1",
    "assert_payments_reconcile_with_orders": "paid_usd = paid_usd - 0.01",
    "assert_orders_never_paid_more_than_their_total": "paid_usd = order_total_usd + 100",
}


@pytest.mark.parametrize("singular", sorted(OLD_ORDER_FAULTS))
def test_an_old_order_a_singular_test_rejects_passes_daily_and_fails_deep(
    baseline: tuple[Path, Checksums], tmp_path: Path, singular: str
) -> None:
    project = copy_project(baseline, tmp_path)
    with duckdb.connect(str(project.settings.warehouse_path)) as con:
        con.execute(
            f"update marts.fct_orders set {OLD_ORDER_FAULTS[singular]} where order_id = ("
            "select order_id from marts.fct_orders where paid_usd > 1 and line_count > 0 "
            "order by _loaded_at, order_id limit 1)"
        )
    assert generator.append_day(project.settings.landing_root)[0] == NEW_DAY

    code, stdout, stderr = project.pipeline("run")
    assert code == 0, stdout + stderr
    code, stdout, stderr = project.pipeline("run", "--deep")
    assert code == 1, stdout + stderr
    assert singular in stdout + stderr


def test_a_payment_of_the_new_day_without_its_order_fails_the_reconciliation_daily(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    project = copy_project(baseline, tmp_path)
    assert generator.append_day(project.settings.landing_root)[0] == NEW_DAY
    path = next((project.settings.landing_root / "payments" / f"load_date={NEW_DAY}").glob("*"))
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["order_id"] = UNKNOWN_ID
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)

    code, stdout, stderr = project.pipeline("run")
    assert code == 1, stdout + stderr
    assert "assert_payments_reconcile_with_orders" in stdout + stderr


def test_a_fault_in_the_new_day_fails_the_daily_run(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    project = copy_project(baseline, tmp_path)
    assert generator.append_day(project.settings.landing_root)[0] == NEW_DAY
    part = project.settings.landing_root / "order_items" / f"load_date={NEW_DAY}"
    path = next(part.glob("*.parquet"))
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["order_id"] = UNKNOWN_ID  # a line whose order never lands
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)

    code, stdout, stderr = project.pipeline("run")
    assert code == 1, stdout + stderr
    assert "int_order_items_priced" in stdout + stderr


def test_a_clean_deep_run_passes_and_runs_the_unit_tests(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    project = copy_project(baseline, tmp_path)
    assert generator.append_day(project.settings.landing_root)[0] == NEW_DAY
    code, stdout, stderr = project.pipeline("run")
    assert code == 0, stdout + stderr
    daily = _node_kinds(project)
    code, stdout, stderr = project.pipeline("run", "--deep")
    assert code == 0, stdout + stderr
    deep = _node_kinds(project)
    assert "unit_test" not in daily  # unit tests prove code, not the day's data
    assert "unit_test" in deep
    assert deep["test"] == daily["test"]  # the same data tests, over whole tables


def _node_kinds(project: Project) -> dict[str, int]:
    """Nodes of each kind the last run recorded in its history."""
    with duckdb.connect(str(project.settings.history_path), read_only=True) as con:
        rows = con.execute(
            "select resource_type, count(*) from node_runs where run_id = "
            "(select run_id from runs order by started_at desc limit 1) group by all"
        ).fetchall()
    return {str(kind): int(count) for kind, count in rows}
