"""`pipeline run --target spark` against a real Spark standalone cluster through its Thrift server.

One cluster (a Master, two Workers, a Thrift server with the spark_local target's Iceberg
catalog; pipeline.cluster) serves the whole module and is stopped however the module ends.
The runner reaches it only as production would: the `spark` target, PyHive, the
COMMERCE_SPARK_* environment. The expectations are independent: the marts DuckDB builds from
the same landing zone (dbt, no runner), compared row by row.

The tests run in file order and share the cluster's warehouse: a first run; the lock; an
exploded daily load the volume gate stops, then the repaired load merged incrementally.
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
from pipeline.history import History
from pipeline.lease import LOCK_TABLE, WarehouseLock
from pipeline.lock import LockBusy
from pipeline.thrift import connect_from_environment

pytestmark = pytest.mark.cluster

TODAY = dt.datetime.now(dt.UTC).date()


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


def _append_day(landing: Path) -> dt.date:
    """The next daily load, dated at most yesterday (a load dated today would be fresh too,
    but the contract gate refuses any partition after the run's clock)."""
    day, _ = generator.append_day(landing)
    assert day < TODAY
    return day


def test_pipeline_run_on_the_cluster_builds_marts_equal_to_duckdb(project: ClusterProject) -> None:
    code, stdout, stderr = project.pipeline("run")
    assert code == 0, stdout + stderr
    run = project.history.runs(1)[0]
    assert (run.target, run.status) == ("spark", "success")
    project.duck.build()
    _marts_agree(project.duck)
    described = dict((row[0], row[1]) for row in _query("describe table extended marts.fct_orders"))
    assert described["Provider"] == "iceberg"


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


def test_an_exploded_load_stops_at_the_volume_gate_then_the_repaired_load_merges(
    project: ClusterProject,
) -> None:
    """Yesterday's load, first exploded (exit 4, no mart changes), then as the upstream
    repairs it: merged incrementally into the marts, which still equal DuckDB's."""
    before = {mart: sorted(_query(f"select * from marts.{mart}"), key=repr) for mart in MARTS}
    orders_before = dict(_query("select order_id, order_status from marts.fct_orders"))
    day, _ = generator.append_day(project.landing)
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
    after = {mart: sorted(_query(f"select * from marts.{mart}"), key=repr) for mart in MARTS}
    assert after == before, "no mart may change after a failed volume gate"

    shutil.copy(original, path)
    code, stdout, stderr = project.pipeline("run")
    assert code == 0, stdout + stderr
    orders_after = dict(_query("select order_id, order_status from marts.fct_orders"))
    assert len(orders_after) > len(orders_before), f"the load of {day} added orders"
    assert any(orders_after[order] != status for order, status in orders_before.items()), (
        "and moved existing orders on (a merge, not only appends)"
    )
    project.duck.build()  # DuckDB's incremental build of the same loads
    _marts_agree(project.duck)
