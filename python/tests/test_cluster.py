"""`pipeline run --target spark` against a real Spark standalone cluster through its Thrift server.

One cluster (a Master, two Workers, a Thrift server with the spark_local target's Iceberg
catalog; pipeline.cluster) serves the whole module and is stopped however the module ends.
The runner reaches it only as production would: the `spark` target, PyHive, the
COMMERCE_SPARK_* environment. The expectations are independent: the marts DuckDB builds from
the same landing zone (dbt, no runner), compared row by row.

The tests run in file order and share the cluster's warehouse: a first run; the lock; an
exploded daily load the volume gate stops; the same day with a line whose mart test fails,
which publishes nothing either (write-audit-publish in SQL over Thrift); its repair merged
incrementally; a rollback and a roll forward; `pipeline maintain`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import MARTS, Warehouse, make_landing, make_settings, write_config
from pipeline import generator
from pipeline.cli import app
from pipeline.cluster import ClusterState, LocalCluster
from pipeline.config import Settings
from pipeline.dbt import invoke
from pipeline.history import History
from pipeline.iceberg import BRANCH_PREFIX, SqlIcebergCatalog
from pipeline.lease import LOCK_TABLE, WarehouseLock
from pipeline.lock import LockBusy
from pipeline.thrift import connect_from_environment

pytestmark = pytest.mark.cluster

TODAY = dt.datetime.now(dt.UTC).date()
SCHEMAS = Settings().warehouse_schemas


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    """The module's cluster, its Thrift server in the environment the `spark` target reads."""
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as state:
        saved = {key: os.environ.get(key) for key in state.env}
        os.environ.update(state.env)
        try:
            yield state
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@dataclass
class ClusterProject:
    """A landing zone, a pipeline.yml on the spark target, and DuckDB's build of the same data."""

    root: Path
    landing: Path
    config: Path
    duck: Warehouse

    def pipeline(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, [*args, "--config", str(self.config)])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    @property
    def history(self) -> History:
        return History(self.root / "history.duckdb")


@pytest.fixture(scope="module")
def project(cluster: ClusterState, tmp_path_factory: pytest.TempPathFactory) -> ClusterProject:
    root = tmp_path_factory.mktemp("cluster-project")
    landing = make_landing(
        root / "landing", days=5, scale=0.01, end_date=TODAY - dt.timedelta(days=2)
    )
    config = write_config(root / "pipeline.yml", make_settings(root, landing, target="spark"))
    # Four dbt threads: on a Thrift server most of a statement's time is waiting (scheduling,
    # round trips), which concurrent statements overlap even on 2 cores.
    config.write_text(config.read_text() + "threads: 4\n")
    return ClusterProject(root, landing, config, Warehouse(make_settings(root / "duck", landing)))


def _query(sql: str) -> list[tuple[Any, ...]]:
    cursor = connect_from_environment()
    cursor.execute(sql)
    return [tuple(row) for row in cursor.fetchall()]


def _like(value: Any, example: Any) -> Any:
    """A value read through Thrift (decimals, dates and timestamps arrive as text) in the type
    DuckDB gave the same column, so rows compare exactly."""
    if value is None or example is None or not isinstance(value, str):
        return value
    if isinstance(example, decimal.Decimal):
        return decimal.Decimal(value)
    if isinstance(example, dt.datetime):
        return dt.datetime.fromisoformat(value)
    if isinstance(example, dt.date):
        return dt.date.fromisoformat(value)
    return value


def _marts_agree(duck: Warehouse) -> None:
    """Every mart on the cluster equals DuckDB's, row by row (same rows, same values)."""
    for mart in MARTS:
        expected = sorted(duck.query(f"select * from marts.{mart}"), key=repr)
        got = _query(f"select * from marts.{mart}")
        assert len(got) == len(expected) > 0, mart
        examples = {
            index: next((row[index] for row in expected if row[index] is not None), None)
            for index in range(len(expected[0]))
        }
        normalised = sorted(
            (tuple(_like(value, examples[i]) for i, value in enumerate(row)) for row in got),
            key=repr,
        )
        assert normalised == expected, f"{mart} differs between the cluster and DuckDB"


def _mains() -> dict[str, int | None]:
    """Where `main` of every table of the warehouse points: what consumers read."""
    catalog = SqlIcebergCatalog(connect_from_environment, SCHEMAS)
    return {table: catalog.main_snapshot(table) for table in catalog.tables()}


def _marts() -> dict[str, list[tuple[Any, ...]]]:
    return {mart: sorted(_query(f"select * from marts.{mart}"), key=repr) for mart in MARTS}


def test_pipeline_run_on_the_cluster_builds_marts_equal_to_duckdb(project: ClusterProject) -> None:
    code, stdout, stderr = project.pipeline("run")
    assert code == 0, stdout + stderr
    run = project.history.runs(1)[0]
    assert (run.target, run.status) == ("spark", "success")
    project.duck.build()
    _marts_agree(project.duck)
    described = dict((row[0], row[1]) for row in _query("describe table extended marts.fct_orders"))
    assert described["Provider"] == "iceberg"


def test_the_thrift_server_kept_one_metastore_connection_pool_through_the_run(
    cluster: ClusterState,
) -> None:
    """The run above opened about 250 Thrift sessions; the embedded metastore's DataNucleus
    factory must have served them all. When clients' Hive settings disagreed, it was closed
    (its Derby pool shut down, a full GC at its finalization) and rebuilt some 300 times in
    one run, about 40% of the run's time (docs/design.md)."""
    log = Path(cluster.logs["thrift"]).read_text(errors="replace")
    # The metastore logs at INFO: its lines are there, so an absent shutdown means something.
    assert log.count("Initialized ObjectStore") > 10
    assert log.count("BoneCP: Shutting down connection pool") == 0


def _holder(run_id: str, host: str) -> dict[str, Any]:
    return {"run_id": run_id, "pid": 1, "host": host, "since": "2026-01-01T00:00:00+00:00"}


def test_the_warehouse_lock_is_one_lease_for_runners_on_every_host(
    project: ClusterProject,
) -> None:
    first = WarehouseLock(connect_from_environment, "run-a", 60, holder=_holder("run-a", "host-a"))
    with first:
        # A second runner (here the real CLI, on "another host" as far as the lock can tell:
        # it shares nothing with the first but the warehouse) is refused with exit 5.
        code, _, stderr = project.pipeline("run")
        assert code == 5, stderr
        assert "run-a" in stderr and "host-a" in stderr
        second = WarehouseLock(
            connect_from_environment, "run-b", 60, holder=_holder("run-b", "host-b")
        )
        with pytest.raises(LockBusy, match="run-a"), second:
            pass
    with WarehouseLock(connect_from_environment, "run-b", 60) as taken:
        assert taken.stale_holder is None, "a released lock leaves no holder behind"
        assert _query(f"select run_id from {LOCK_TABLE}") == [("run-b",)]
    assert _query(f"select run_id from {LOCK_TABLE}") == []

    # A runner that died holding the lock: its lease expires and the next runner takes over.
    _query(
        f"insert into {LOCK_TABLE} values ('warehouse', 'dead-run', "
        '\'{"run_id": "dead-run", "host": "host-dead"}\', '
        "current_timestamp() - interval 2 hours, current_timestamp() - interval 1 hours)"
    )
    with WarehouseLock(connect_from_environment, "run-c", 60) as taken:
        assert taken.stale_holder is not None and taken.stale_holder["run_id"] == "dead-run"

    # Two runners at the same moment: exactly one holds the lease.
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}
    held = threading.Event()

    def contend(run_id: str) -> None:
        lock = WarehouseLock(connect_from_environment, run_id, 60)
        start.wait()
        try:
            with lock:
                outcomes[run_id] = "held"
                held.wait(timeout=20)  # hold until both have tried
        except LockBusy:
            outcomes[run_id] = "busy"
            held.set()

    threads = [threading.Thread(target=contend, args=(name,)) for name in ("run-x", "run-y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes.values()) == ["busy", "held"], outcomes


def _newest_day(landing: Path) -> dt.date:
    return max(
        dt.date.fromisoformat(folder.name.removeprefix("load_date="))
        for folder in (landing / "orders").glob("load_date=*")
    )


def test_an_exploded_load_stops_at_the_volume_gate_and_moves_no_table(
    project: ClusterProject,
) -> None:
    """Yesterday's load, exploded: exit 4, no mart and no table's `main` changes (the staging
    merges the gate judged went to the run's branch). The upstream then repairs the file;
    the next test loads the same day."""
    before = _marts()
    mains_before = _mains()
    day, _ = generator.append_day(project.landing)
    assert day < TODAY
    path = project.landing / "orders" / f"load_date={day}" / "part-0000.parquet"
    original = project.root / "orders-original.parquet"  # outside the landing zone
    shutil.copy(path, original)
    # Twenty copies of the load: five loads of a young shop grow fast, so the band the gate
    # learned from them is wide below (a load a twentieth of the usual passes it) but not
    # above.
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table] * 20), path)

    code, _, stderr = project.pipeline("run")
    assert code == 4, stderr
    assert "stg_landing__orders" in stderr and str(day) in stderr
    assert _marts() == before, "no mart may change after a failed volume gate"
    assert _mains() == mains_before, "no table's main may move: the staging merges neither"
    shutil.copy(original, path)


def test_a_failed_mart_test_publishes_nothing_the_repair_merges_and_rollback_restores(
    project: ClusterProject,
) -> None:
    """The same day, now with a line for an order that never lands: it passes staging and
    the gates, and a test of the joined layers fails. Every table's `main` and every mart
    stay as published (the run wrote its branches only). The repaired load merges: marts
    equal to DuckDB's. `pipeline rollback --to` the run before puts its marts back, and
    rolling forward again to the repaired run works too."""
    published_before = next(  # the module's first run: the stopped run published nothing
        run.run_id
        for run in project.history.runs(20)
        if project.history.published_state(run.run_id) is not None
    )
    before, mains_before = _marts(), _mains()
    orders_before = dict(_query("select order_id, order_status from marts.fct_orders"))
    day = _newest_day(project.landing)
    path = project.landing / "order_items" / f"load_date={day}" / "part-0000.parquet"
    original = project.root / "order-items-original.parquet"
    shutil.copy(path, original)
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["order_id"] = 99_999_999  # no generated order has this id
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)

    code, stdout, stderr = project.pipeline("run")
    assert code == 1, stdout + stderr
    assert "not_null_int_order_items_priced_currency_code" in stdout + stderr
    assert _mains() == mains_before, "a failed run moves no table's main"
    assert _marts() == before, "consumers read the last published marts"
    kept = SqlIcebergCatalog(connect_from_environment, SCHEMAS).branches("marts.fct_orders")
    assert any(name.startswith(BRANCH_PREFIX) for name in kept), "kept for --retry"

    shutil.copy(original, path)
    code, stdout, stderr = project.pipeline("run")
    assert code == 0, stdout + stderr
    repaired = project.history.runs(1)[0].run_id
    assert not SqlIcebergCatalog(connect_from_environment, SCHEMAS).branches("marts.fct_orders")
    orders_after = dict(_query("select order_id, order_status from marts.fct_orders"))
    assert len(orders_after) > len(orders_before), f"the load of {day} added orders"
    assert any(orders_after[order] != status for order, status in orders_before.items()), (
        "and moved existing orders on (a merge, not only appends)"
    )
    project.duck.build()  # DuckDB's incremental build of the same loads
    _marts_agree(project.duck)
    repaired_marts = _marts()

    code, stdout, stderr = project.pipeline("rollback", "--to", published_before)
    assert code == 0, stdout + stderr
    assert _marts() == before
    assert {table: _mains()[table] for table in mains_before} == mains_before
    code, stdout, stderr = project.pipeline("rollback", "--to", repaired)
    assert code == 0, stdout + stderr
    assert _marts() == repaired_marts


def _snapshots(table: str) -> dict[int, int]:
    return {
        int(snapshot): int(millis)
        for snapshot, millis in _query(
            f"select snapshot_id, unix_millis(committed_at) from {table}.snapshots"
        )
    }


def test_maintain_on_the_cluster_compacts_and_expires_what_no_kept_publish_names(
    project: ClusterProject,
) -> None:
    """`pipeline maintain --target spark` through the Thrift server's Iceberg procedures.
    With `keep_generations: 1` only the last publish is kept (the test above rolled forward
    to the repaired run): every snapshot committed before the ones it names goes (the first
    run's), everything after stays."""
    runs = project.history.runs(50)
    last = runs[0].run_id  # the roll forward
    first = [run for run in runs if run.arguments.startswith("run") and run.status == "success"]
    kept = project.history.published_state(last)
    assert kept is not None
    config = project.config.with_name("keep-one.yml")
    config.write_text(project.config.read_text() + "keep_generations: 1\n")
    # Small files, as many small appends leave them: fct_orders written again in three.
    _query("create table default.fct_orders_copy using parquet as select * from marts.fct_orders")
    _query("delete from marts.fct_orders where true")
    for part in range(3):
        _query(
            "insert into marts.fct_orders select * from default.fct_orders_copy "
            f"where pmod(order_id, 3) = {part}"
        )
    _query("drop table default.fct_orders_copy")
    marts, mains = _marts(), _mains()
    files = _query("select count(*) from marts.fct_orders.data_files")[0][0]
    snapshots = {table: _snapshots(table) for table in mains}

    result = CliRunner().invoke(app, ["maintain", "--config", str(config)])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "marts.fct_orders" in result.stdout
    recorded = project.history.runs(1)[0]
    assert (recorded.arguments, recorded.status) == ("maintain", "success")

    assert _marts() == marts, "maintenance changed what consumers read"
    assert _query("select count(*) from marts.fct_orders.data_files")[0][0] < files
    expired = 0
    for table, before in snapshots.items():
        named = kept["snapshots"][table]
        survivors = {s for s, millis in before.items() if millis >= before[named]}
        main = mains[table]
        assert main is not None, table
        survivors.add(main)
        assert set(_snapshots(table)) & set(before) == survivors, table
        expired += len(before) - len(survivors)
    assert expired > 0, "nothing was old enough to expire: the check proved nothing"

    code, stdout, stderr = project.pipeline("rollback", "--to", first[-1].run_id)
    assert code == 2, stdout + stderr
    code, stdout, stderr = project.pipeline("rollback", "--to", last)
    assert code == 0, stdout + stderr
    assert _marts() == marts


def test_views_are_replaced_although_the_sql_extensions_keep_a_replaced_view(
    project: ClusterProject,
) -> None:
    """With Iceberg's SQL extensions on the server, views are Iceberg views and `create or
    replace view` over one silently keeps the old definition (seen here: a merge through the
    "replaced" view read the old rows). So every view the project creates is dropped first
    (macros/spark/views.sql). Here a landing view and an intermediate view are left with a
    wrong definition; one dbt invocation (its on-run-start registers the landing views) must
    put both right: their rows are the landing file's and DuckDB's view's again."""
    for view in ("landing.orders", "intermediate.int_payments_converted"):
        _query(f"drop view if exists {view}")
        _query(f"create view {view} as select 1 as wrong")
    settings = make_settings(project.root, project.landing, target="spark")
    built = invoke(
        settings,
        ["run", "--select", "int_payments_converted"],
        target_path=project.root / "views-target",
        quiet=True,
    )
    assert built.success, built.error
    landing_rows = sum(
        pq.ParquetFile(path).metadata.num_rows
        for path in project.landing.glob("orders/*/*.parquet")
    )
    assert _query("select count(*) from landing.orders") == [(landing_rows,)]
    expected = project.duck.query("select count(*) from intermediate.int_payments_converted")
    assert _query("select count(*) from intermediate.int_payments_converted") == [(expected[0][0],)]
