"""The warehouse on DuckDB: every mart against an independent oracle, plus the invariants.

The invariants are docs/design.md's: idempotent, incremental equals full refresh.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pytest

import oracle
from conftest import MARTS, Warehouse, make_landing, make_settings
from pipeline import generator
from pipeline.gates import LoadNullCounts
from pipeline.manifest import Manifest
from pipeline.warehouse import load_null_counts


@pytest.fixture(scope="module")
def expected(built_warehouse: Warehouse) -> oracle.Oracle:
    return oracle.compute(built_warehouse.landing)


def test_build_runs_every_model_test_and_unit_test(built_warehouse: Warehouse) -> None:
    outcome = built_warehouse.build()
    kinds = {node.resource_type for node in outcome.results}
    assert {"model", "test", "unit_test", "seed", "snapshot"} <= kinds
    # Exposures (consumers of the marts) are in the graph but have nothing to run.
    assert {n.name for n in outcome.results if n.resource_type == "exposure"} == {
        "revenue_dashboard",
        "pipeline_report",
    }
    assert all(
        node.status in ({"no-op"} if node.resource_type == "exposure" else {"success", "pass"})
        for node in outcome.results
    )


def test_staging_keeps_one_latest_version_per_order(
    built_warehouse: Warehouse, expected: oracle.Oracle
) -> None:
    by_status = dict(
        built_warehouse.query(
            "select order_status, count(*) from staging.stg_landing__orders group by 1"
        )
    )
    oracle_by_status: dict[str, int] = {}
    for status in expected.order_status.values():
        oracle_by_status[status] = oracle_by_status.get(status, 0) + 1
    assert by_status == oracle_by_status


def test_fct_orders_totals_and_payments_match_the_oracle(
    built_warehouse: Warehouse, expected: oracle.Oracle
) -> None:
    rows = built_warehouse.query(
        "select order_id, order_total_usd, paid_usd, is_fully_paid from marts.fct_orders"
    )
    assert {r[0]: r[1] for r in rows} == expected.order_total_usd
    assert {r[0]: r[2] for r in rows} == expected.paid_usd
    assert all(r[3] == (r[1] > 0 and r[2] >= r[1]) for r in rows)
    assert any(r[3] for r in rows) and not all(r[3] for r in rows)


def test_fct_daily_revenue_matches_the_oracle(
    built_warehouse: Warehouse, expected: oracle.Oracle
) -> None:
    rows = built_warehouse.query(
        "select revenue_date, orders, revenue_usd, customers from marts.fct_daily_revenue"
    )
    assert {r[0]: (r[1], r[2], r[3]) for r in rows} == expected.daily_revenue
    assert sum(r[2] for r in rows) > Decimal("1000")


def test_dim_customers_lifetime_figures_match_the_oracle(
    built_warehouse: Warehouse, expected: oracle.Oracle
) -> None:
    rows = built_warehouse.query(
        "select customer_id, first_order_date, lifetime_orders, lifetime_revenue_usd from "
        "marts.dim_customers"
    )
    assert {r[0]: (r[1], r[2], r[3]) for r in rows} == expected.customers
    assert any(r[2] == 0 for r in rows), "customers without revenue orders are kept with 0"


def test_dim_customers_email_is_the_hash_of_the_latest_email(
    built_warehouse: Warehouse, expected: oracle.Oracle
) -> None:
    for relation in ("marts.dim_customers", "marts.dim_customers_v1"):
        rows = built_warehouse.query(f"select customer_id, email from {relation}")
        assert dict(rows) == expected.emails, relation


def test_no_raw_email_is_stored_below_staging(built_warehouse: Warehouse) -> None:
    """Every text column of every relation built from staging (intermediate, snapshot, marts),
    against every email the landing files ever delivered, versions included."""
    raw = {
        row["email"]
        for row in ds.dataset(
            built_warehouse.landing / "customers", format="parquet", partitioning="hive"
        )
        .to_table(columns=["email"])
        .to_pylist()
    }
    assert len(raw) > 100 and all("@" in email for email in raw)
    columns = built_warehouse.query(
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_schema in ('intermediate', 'snapshots', 'marts') and data_type = 'VARCHAR'"
    )
    seen = {(schema, table) for schema, table, _ in columns}
    assert ("marts", "dim_customers") in seen and ("snapshots", "snap_customers") in seen
    for schema, table, column in columns:
        leaked = built_warehouse.query(
            f'select count(*) from {schema}.{table} where "{column}" in '
            "(select unnest(?::varchar[]))",
            [sorted(raw)],
        )[0][0]
        assert leaked == 0, f"{schema}.{table}.{column} holds {leaked} raw emails"
    # Staging keeps the landing value: the check above would have found it there.
    assert (
        built_warehouse.query(
            "select count(*) from staging.stg_landing__customers where email in "
            "(select unnest(?::varchar[]))",
            [sorted(raw)],
        )[0][0]
        > 0
    )


def test_fct_sessions_match_the_oracle(built_warehouse: Warehouse, expected: oracle.Oracle) -> None:
    rows = built_warehouse.query(
        "select session_id, event_count, has_purchase, session_date from marts.fct_sessions"
    )
    assert {r[0]: (r[1], r[2], r[3]) for r in rows} == expected.sessions


def _stored_checksums(warehouse: Warehouse) -> dict[str, tuple[Any, ...]]:
    """Row count and row hash of every table below the marts (what the next runs build on)."""
    tables = warehouse.query(
        "select table_schema, table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_schema in ('staging', 'intermediate') "
        "order by 1, 2"
    )
    return {
        f"{schema}.{table}": warehouse.checksum(f"{schema}.{table}") for schema, table in tables
    }


def test_full_builds_of_incremental_models_are_stored_in_load_order(
    built_warehouse: Warehouse,
) -> None:
    """DuckDB skips row groups on their min/max only if a table is laid out in the order the
    daily runs filter on; a full build in the hash order of its dedupe made every daily read
    scan the history (issue 15). Read in storage order, no table steps back in _loaded_at."""
    manifest = Manifest.load(built_warehouse.settings.target_path / "manifest.json")
    incremental = {
        node.name: relation
        for uid, node in manifest.nodes.items()
        if node.materialized == "incremental" and (relation := manifest.relation(uid))
    }
    assert {"stg_landing__events", "int_events_sessionized", "fct_orders"} <= set(incremental)
    backwards = {
        name: built_warehouse.query(
            f"select count(*) from (select _loaded_at < lag(_loaded_at) over (order by rowid) "
            f"as back from {relation}) where back"
        )[0][0]
        for name, relation in incremental.items()
    }
    assert backwards == dict.fromkeys(incremental, 0)


def test_a_second_build_changes_no_mart(built_warehouse: Warehouse) -> None:
    before = built_warehouse.checksums()
    built_warehouse.build()
    assert built_warehouse.checksums() == before
    assert all(count > 0 for count, _ in before.values())


def test_incremental_loads_equal_a_full_refresh(tmp_path: Path) -> None:
    """Daily loads merged one by one (late events, old orders changing status) end where a
    full build of the same landing zone ends, and the snapshot records customer changes."""
    landing = make_landing(tmp_path / "landing", days=16, end_date=dt.date(2026, 3, 20))
    daily = Warehouse(make_settings(tmp_path / "daily", landing))
    daily.build()
    emails_before = dict(
        daily.query("select customer_id, email from staging.stg_landing__customers")
    )
    for _ in range(3):
        generator.append_day(landing)
        daily.build()

    appended = daily.query("""
        select
            count(*) filter (where _load_date > date '2026-03-20' and event_date < _load_date),
            (select count(*) from staging.stg_landing__orders
             where _load_date > date '2026-03-20' and ordered_at < _load_date - interval 3 day
               and order_status in ('cancelled', 'returned', 'delivered'))
        from staging.stg_landing__events
    """)[0]
    assert appended[0] > 0, "the appended loads carry late events"
    assert appended[1] > 0, "the appended loads change orders older than the lookback window"

    full = Warehouse(make_settings(tmp_path / "full", landing))
    full.build("--full-refresh")
    assert daily.checksums() == full.checksums()
    # Below the marts too: staging sets aside re-read copies equal to their stored row, and
    # every later run builds on these tables.
    assert _stored_checksums(daily) == _stored_checksums(full)
    daily.build()
    assert daily.checksums() == full.checksums(), "a rebuild with nothing new moved a mart"

    changed = [
        cid
        for cid, email in daily.query(
            "select customer_id, email from staging.stg_landing__customers"
        )
        if cid in emails_before and emails_before[cid] != email
    ]
    assert changed, "some customer changed email in the appended loads"
    versions = daily.query(
        "select email, dbt_valid_from, dbt_valid_to from snapshots.snap_customers "
        "where customer_id = ? order by dbt_valid_from",
        [changed[0]],
    )
    assert len(versions) == 2
    # The snapshot holds the email masked (PII below staging), one version per change.
    assert versions[0][0] == oracle.mask(emails_before[changed[0]])
    assert versions[0][2] == versions[1][1]
    assert versions[1][2] is None


def test_every_mart_is_built(built_warehouse: Warehouse) -> None:
    tables = {
        name
        for (name,) in built_warehouse.query(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        )
    }
    assert set(MARTS) <= tables


class _Memory:
    """The runner's Queries protocol over an in-memory table: the SQL, without dbt."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.sql: list[str] = []

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        self.sql.append(sql)
        return self.con.execute(sql).fetchall()


def test_null_counts_are_one_query_per_model_over_the_new_loads_only() -> None:
    con = duckdb.connect()
    con.execute("create table stg (id bigint, name varchar, note varchar, _load_date date)")
    con.execute(
        "insert into stg values (1, 'a', null, '2026-01-01'), (2, null, null, '2026-01-02'), "
        "(3, 'c', 'x', '2026-01-02'), (4, null, null, '2026-01-03'), (5, 'e', null, '2026-01-04')"
    )
    queries = _Memory(con)
    counts = load_null_counts(
        queries, "stg", ("id", "name", "note"), dt.date(2026, 1, 1), dt.date(2026, 1, 3)
    )
    # 01-01 is judged already, 01-04 is after the window's end
    assert counts == {
        dt.date(2026, 1, 2): LoadNullCounts(2, {"id": 0, "name": 1, "note": 1}),
        dt.date(2026, 1, 3): LoadNullCounts(1, {"id": 0, "name": 1, "note": 1}),
    }
    assert len(queries.sql) == 1
