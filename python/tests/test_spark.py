"""The same models on Spark with Iceberg (spark_local): same mart contents as DuckDB.

One Spark session serves the whole module (dbt-spark's session method reuses it), so the
JVM starts once. Exact comparison: integers, decimals, dates and strings must be equal.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from conftest import MARTS, Warehouse, make_landing, make_settings
from pipeline import generator

pytestmark = pytest.mark.spark

KEYS = {
    "dim_customers": "customer_id",
    "dim_products": "product_id",
    "fct_orders": "order_id",
    "fct_order_items": "order_item_id",
    "fct_payments": "payment_id",
    "fct_sessions": "session_id",
    "fct_daily_revenue": "revenue_date",
}


class SparkWarehouse(Warehouse):
    """A warehouse on the spark_local target; queries go through the live Spark session."""

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        from pyspark.sql import SparkSession

        # dbt started the session in its worker threads; the builder returns that same one.
        session = SparkSession.builder.getOrCreate()
        return [tuple(row) for row in session.sql(sql, args=params or None).collect()]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Warehouse, SparkWarehouse, Path]:
    root = tmp_path_factory.mktemp("engines")
    landing = make_landing(root / "landing", days=6, scale=0.01, end_date=dt.date(2026, 3, 20))
    duck = Warehouse(make_settings(root / "duckdb", landing))
    spark = SparkWarehouse(
        make_settings(
            root / "spark", landing, target="spark_local", spark_dir=root / "spark" / "engine"
        )
    )
    return duck, spark, landing


def _contents(warehouse: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    return {
        mart: warehouse.query(f"select * from marts.{mart} order by {KEYS[mart]}") for mart in MARTS
    }


def test_spark_builds_everything_and_agrees_with_duckdb(
    engines: tuple[Warehouse, SparkWarehouse, Path],
) -> None:
    duck, spark, _ = engines
    duck.build()
    outcome = spark.build()
    kinds = {node.resource_type for node in outcome.results}
    assert {"model", "seed", "snapshot", "test", "unit_test"} <= kinds
    duck_marts, spark_marts = _contents(duck), _contents(spark)
    for mart in MARTS:
        assert len(spark_marts[mart]) == len(duck_marts[mart]) > 0, mart
        assert spark_marts[mart] == duck_marts[mart], f"{mart} differs between DuckDB and Spark"


def test_spark_merges_update_rows_and_equal_a_full_refresh(
    engines: tuple[Warehouse, SparkWarehouse, Path],
) -> None:
    duck, spark, landing = engines
    before = dict(spark.query("select order_id, order_status from marts.fct_orders"))
    generator.append_day(landing)
    spark.build()
    after = dict(spark.query("select order_id, order_status from marts.fct_orders"))
    updated = [order_id for order_id, status in before.items() if after[order_id] != status]
    assert updated, "the merge changed the status of orders that already existed"
    assert len(after) > len(before), "the merge inserted the new day's orders"

    incremental = _contents(spark)
    duck.build()
    assert incremental == _contents(duck), (
        "Spark incremental differs from DuckDB after the same loads"
    )
    spark.build("--full-refresh")
    assert _contents(spark) == incremental, "Spark incremental differs from a Spark full refresh"


def test_spark_tables_are_iceberg_partitioned_and_compressed(
    engines: tuple[Warehouse, SparkWarehouse, Path],
) -> None:
    _, spark, _ = engines
    rows = [(row[0], row[1]) for row in spark.query("describe table extended marts.fct_orders")]
    details = dict(rows)
    assert details["Provider"] == "iceberg"
    header = rows.index(("# Partition Information", ""))
    assert rows[header + 2] == ("order_date", "date"), "fct_orders is partitioned by order_date"
    data_files = sorted(
        (spark.settings.spark_dir / "warehouse" / "marts.db" / "fct_orders" / "data").rglob(
            "*.parquet"
        )
    )
    assert data_files and all(f.parent.name.startswith("order_date=") for f in data_files)
    codec = pq.ParquetFile(data_files[0]).metadata.row_group(0).column(0).compression
    assert codec == "ZSTD"


def test_pipeline_run_on_spark_gates_builds_and_records(
    engines: tuple[Warehouse, SparkWarehouse, Path], tmp_path: Path
) -> None:
    """The runner on spark_local: gates ask Spark through `dbt show`, nodes get row counts.

    The module's Spark catalog already holds marts built from other data, so this run is a
    --full-refresh, the documented way to point a warehouse at a different landing zone.
    """
    from pipeline.history import History
    from pipeline.observability import configure_logging
    from pipeline.runner import Runner, RunOptions

    _, spark, _ = engines
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    landing = make_landing(tmp_path / "landing", days=5, scale=0.01, end_date=yesterday)
    # The module's Spark session and catalog, everything else of the run under tmp_path.
    settings = make_settings(
        tmp_path, landing, target="spark_local", spark_dir=spark.settings.spark_dir
    )
    code = Runner(settings, RunOptions(full_refresh=True), configure_logging("text")).execute()
    assert code == 0
    history = History(settings.history_path)
    run = history.runs(1)[0]
    assert (run.target, run.status) == ("spark_local", "success")
    nodes = {node.name: node for node in history.nodes(run.run_id)}
    assert (
        nodes["fct_orders"].row_count
        == spark.query("select count(*) from marts.fct_orders")[0][0]
        > 0
    )
    landed = spark.query("select count(*) from landing.orders where load_date = ?", [yesterday])[0][
        0
    ]
    assert landed > 0
