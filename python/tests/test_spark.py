"""The same models on Spark with Iceberg (spark_local): same mart contents as DuckDB.

One Spark session serves the whole module (dbt-spark's session method reuses it), so the
JVM starts once. Exact comparison: integers, decimals, dates and strings must be equal.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import MARTS, Warehouse, make_landing, make_settings
from pipeline import generator
from pipeline.iceberg import IcebergPublisher, branch_name

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


# Write-audit-publish on Iceberg (issue 16): the publisher driven around dbt builds the way
# the runner drives it (begin, the run's dbt phases, then publish or discard).

BAD_CUSTOMER = 999_999_999  # a customer id no load ever carries


@dataclass
class WapRun:
    """What one run did: its id, whether every phase passed, and what it published."""

    run_id: str
    success: bool
    published: dict[str, Any] | None
    during: dict[str, list[tuple[Any, ...]]]  # the marts as another session saw them mid-run


@pytest.fixture(scope="module")
def wap(
    engines: tuple[Warehouse, SparkWarehouse, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[SparkWarehouse, IcebergPublisher]:
    """The module's Spark catalog, emptied, and a landing zone of its own."""
    _, spark, _ = engines
    root = tmp_path_factory.mktemp("wap")
    landing = make_landing(root / "landing", days=5, scale=0.01, end_date=dt.date(2026, 3, 20))
    settings = make_settings(
        root, landing, target="spark_local", spark_dir=spark.settings.spark_dir
    )
    warehouse = SparkWarehouse(settings)
    publisher = IcebergPublisher(settings)
    for table in publisher.catalog.tables():  # built by the tests above, without WAP
        publisher.catalog.drop(table)
    return warehouse, publisher


def _consumer_marts() -> dict[str, list[tuple[Any, ...]]]:
    """The marts as another Spark session reads them: `main`, whatever the run's session does."""
    from pyspark.sql import SparkSession

    consumer = SparkSession.builder.getOrCreate().newSession()
    return {
        mart: [
            tuple(row)
            for row in consumer.sql(f"select * from marts.{mart} order by {KEYS[mart]}").collect()
        ]
        for mart in MARTS
        if consumer.catalog.tableExists(f"marts.{mart}")
    }


def _wap_run(
    warehouse: SparkWarehouse,
    publisher: IcebergPublisher,
    *phases: list[str],
    dbt_vars: list[dict[str, Any] | None] | None = None,
) -> WapRun:
    run_id = str(uuid.uuid4())
    publisher.begin(run_id, None)
    success = True
    for index, args in enumerate(phases):
        outcome = warehouse.dbt(*args, dbt_vars=(dbt_vars or [None] * len(phases))[index])
        if not outcome.success:
            success = False
            break
    during = _consumer_marts()
    if success:
        return WapRun(run_id, True, publisher.publish(run_id), during)
    publisher.discard(run_id, keep_for_retry=False)
    return WapRun(run_id, False, None, during)


def _mains(publisher: IcebergPublisher) -> dict[str, int | None]:
    catalog = publisher.catalog
    return {table: catalog.main_snapshot(table) for table in catalog.tables()}


def _refs_and_history(warehouse: SparkWarehouse, table: str) -> tuple[Any, ...]:
    """Iceberg's own metadata tables: every ref of the table and main's snapshot log."""
    refs = sorted(warehouse.query(f"select name, snapshot_id from spark_catalog.{table}.refs"))
    log = warehouse.query(f"select snapshot_id from spark_catalog.{table}.history")
    return tuple(refs), tuple(sorted(row[0] for row in log))


def _new_day_with_unknown_customer(landing: Path) -> tuple[Path, Path]:
    """The next load, with one order for a customer that never lands; returns the damaged
    file and a copy of the original (the upstream's fix)."""
    day, _ = generator.append_day(landing)
    path = landing / "orders" / f"load_date={day}" / "part-0000.parquet"
    # Outside the landing zone: Spark reads every file of a partition folder, whatever its name.
    original = landing.parent / f"orders-{day}.parquet"
    shutil.copy(path, original)
    table = pq.read_table(path)
    index = table.schema.get_field_index("customer_id")
    values = table.column(index).to_pylist()
    values[0] = BAD_CUSTOMER
    pq.write_table(
        table.set_column(index, "customer_id", pa.array(values, table.schema.field(index).type)),
        path,
    )
    return path, original


def test_iceberg_first_run_failure_publishes_nothing_then_a_run_publishes_all(
    wap: tuple[SparkWarehouse, IcebergPublisher],
) -> None:
    warehouse, publisher = wap
    landing = warehouse.settings.landing_root
    damaged, original = _new_day_with_unknown_customer(landing)

    failed = _wap_run(warehouse, publisher, ["build"])
    assert not failed.success, "the order of a customer that never lands fails a mart test"
    assert all(not rows for rows in failed.during.values()), "nothing published mid-run"
    assert all(main is None for main in _mains(publisher).values()), "no main on any table"
    assert _consumer_marts() == {} or all(not rows for rows in _consumer_marts().values())

    shutil.move(original, damaged)  # the upstream repairs its file
    first = _wap_run(warehouse, publisher, ["build"])
    assert first.success and first.published is not None
    assert first.during == {} or all(not rows for rows in first.during.values())
    mains = _mains(publisher)
    assert first.published == {"engine": "iceberg", "snapshots": mains}
    assert set(mains) >= {f"marts.{mart}" for mart in MARTS} | {"snapshots.snap_customers"}
    assert all(main is not None for main in mains.values())
    published = _consumer_marts()
    assert all(published[mart] for mart in MARTS), "every mart published, in the same step"
    assert published == _contents(warehouse)
    for table in mains:
        refs, _ = _refs_and_history(warehouse, table)
        assert [name for name, _ in refs] == ["main"], f"{table} keeps no branch"


def test_iceberg_failed_runs_leave_main_untouched_and_the_next_equals_a_full_refresh(
    wap: tuple[SparkWarehouse, IcebergPublisher],
) -> None:
    warehouse, publisher = wap
    landing = warehouse.settings.landing_root
    before_mains = _mains(publisher)
    before_marts = _consumer_marts()
    before_meta = {table: _refs_and_history(warehouse, table) for table in before_mains}
    assert all(before_mains.values()), "the test above published a first state"

    damaged, original = _new_day_with_unknown_customer(landing)
    failed = _wap_run(warehouse, publisher, ["build"])
    assert not failed.success
    assert failed.during == before_marts, "mid-run, other sessions read the published state"
    assert _mains(publisher) == before_mains, "a failed mart test moved no main"
    assert _consumer_marts() == _contents(warehouse) == before_marts
    assert {t: _refs_and_history(warehouse, t) for t in before_mains} == before_meta

    # A model error after staging was written on the branch: the runner's phases, staging
    # first, then everything downstream (seeds and the snapshot too) where one model fails.
    shutil.move(original, damaged)
    broken = _wap_run(
        warehouse,
        publisher,
        ["build", "--select", "staging"],
        ["build", "--exclude", "staging"],
        dbt_vars=[None, {"lookback_days": "not_a_number"}],
    )
    assert not broken.success
    assert _mains(publisher) == before_mains, "a model error moved no main"
    assert _consumer_marts() == before_marts
    assert {t: _refs_and_history(warehouse, t) for t in before_mains} == before_meta

    clean = _wap_run(warehouse, publisher, ["build"])
    assert clean.success and clean.published is not None
    assert clean.during == before_marts
    incremental = _consumer_marts()
    assert incremental != before_marts, "the repaired load is published"
    moved = _mains(publisher)
    assert all(moved[table] != before_mains[table] for table in (f"marts.{m}" for m in MARTS))

    refreshed = _wap_run(warehouse, publisher, ["build", "--full-refresh"])
    assert refreshed.success, "a full refresh rebuilds existing tables on the branch"
    assert refreshed.during == incremental, "a full refresh is isolated too"
    assert _consumer_marts() == incremental, "the incremental runs equal a full refresh"

    # pipeline rollback --to <clean run>: every main back at the recorded snapshot.
    publisher.restore(before_published := {"engine": "iceberg", "snapshots": before_mains})
    assert _mains(publisher) == before_published["snapshots"]
    assert _consumer_marts() == before_marts
    publisher.restore(clean.published)
    assert _consumer_marts() == incremental


def test_pipeline_run_on_spark_publishes_through_iceberg_and_a_failed_run_publishes_nothing(
    wap: tuple[SparkWarehouse, IcebergPublisher], tmp_path: Path
) -> None:
    """The runner drives the IcebergPublisher: the run history records every table's snapshot
    id, and a run failing a mart test exits 1 with every main where the last run left it."""
    from pipeline.history import History
    from pipeline.observability import configure_logging
    from pipeline.runner import Runner, RunOptions

    warehouse, publisher = wap
    today = dt.datetime.now(dt.UTC).date()
    landing = make_landing(
        tmp_path / "landing", days=5, scale=0.01, end_date=today - dt.timedelta(2)
    )
    settings = make_settings(
        tmp_path, landing, target="spark_local", spark_dir=warehouse.settings.spark_dir
    )
    history = History(settings.history_path)
    logger = configure_logging("text")
    assert Runner(settings, RunOptions(full_refresh=True), logger).execute() == 0
    good = history.runs(1)[0]
    mains = _mains(publisher)
    assert history.published_state(good.run_id) == {"engine": "iceberg", "snapshots": mains}
    before = _consumer_marts()

    _new_day_with_unknown_customer(landing)
    assert Runner(settings, RunOptions(), logger).execute() == 1
    failed = history.runs(1)[0]
    assert failed.run_id != good.run_id and history.published_state(failed.run_id) is None
    assert _mains(publisher) == mains, "the failed run moved no main"
    assert _consumer_marts() == before
    # The runner keeps a run that failed in a dbt phase for `--retry`: its branch stays,
    # unpublished, until a retry publishes it or the next run removes it.
    kept = {"main", branch_name(failed.run_id)}
    for table in mains:
        assert {name for name, _ in _refs_and_history(warehouse, table)[0]} <= kept, table
