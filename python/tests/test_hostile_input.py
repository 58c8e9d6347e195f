"""No wrong number with exit 0: upstream accidents tried as a hostile upstream would (issue 10).

A warehouse is built once from normal loads; each case copies it, lands the next daily load,
damages it the way an upstream does by accident, and runs the real CLI. Where the run must
stop, the exit code and the message name the thing and no mart changes; where it must go on,
the marts equal what a full refresh of the same landing zone gives. Each case is tried on
every entity it applies to: the class is closed, not the one example.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import NEW_DAY, Checksums, Project, Warehouse, copy_project, make_settings
from pipeline import generator

FUTURE = dt.datetime(2099, 1, 1)

# Every entity, a column the contract requires, and its key (named in the messages).
REQUIRED = {
    "customers": ("email", "customer_id"),
    "products": ("unit_price", "product_id"),
    "orders": ("updated_at", "order_id"),
    "order_items": ("discount", "order_item_id"),
    "payments": ("amount_cents", "payment_id"),
    "events": ("event_at", "event_id"),
}
# Every entity's timestamp that orders versions or feeds a watermark.
TIMESTAMPS = {
    "customers": "updated_at",
    "products": "updated_at",
    "orders": "updated_at",
    "order_items": "_loaded_at",
    "payments": "created_at",
    "events": "_loaded_at",
}


def _new_load(project: Project, entity: str) -> Path:
    assert generator.append_day(project.settings.landing_root)[0] == NEW_DAY
    return project.settings.landing_root / entity / f"load_date={NEW_DAY}" / "part-0000.parquet"


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> Path:
    """Rewrites one landing file and returns a copy of the original, for the upstream's fix."""
    original = path.with_name("original.bak")
    shutil.copy(path, original)
    pq.write_table(change(pq.read_table(path)), path)
    return original


def _set_first(table: pa.Table, column: str, value: object) -> pa.Table:
    index = table.schema.get_field_index(column)
    values = table.column(index).to_pylist()
    values[0] = value
    return table.set_column(index, column, pa.array(values, table.schema.field(index).type))


def _full_refresh_checksums(project: Project, tmp_path: Path) -> Checksums:
    """What a fresh warehouse built from the same landing zone holds."""
    fresh = Warehouse(make_settings(tmp_path / "reference", project.settings.landing_root))
    fresh.build("--full-refresh")
    return fresh.checksums()


def _assert_stopped(
    project: Project,
    code: int,
    stderr: str,
    expected_code: int,
    named: list[str],
    before: Checksums,
) -> None:
    assert code == expected_code, stderr
    for text in named:
        assert text in stderr, f"stderr does not name {text!r}:\n{stderr}"
    assert project.warehouse.checksums() == before, "a mart changed after a failed run"
    run = project.history.runs(1)[0]
    assert run.exit_code == expected_code and named[0] in (run.message or "")


@pytest.mark.parametrize("entity", sorted(REQUIRED))
def test_a_vanished_column_stops_the_run_and_the_restored_file_is_taken(
    baseline: tuple[Path, Checksums],
    tmp_path: Path,
    reference: Checksums,
    entity: str,
) -> None:
    project = copy_project(baseline, tmp_path)
    column, _ = REQUIRED[entity]
    path = _new_load(project, entity)
    original = _rewrite(path, lambda table: table.drop_columns([column]))

    code, _, stderr = project.pipeline("run")
    _assert_stopped(
        project,
        code,
        stderr,
        4,
        [f"landing contract: {entity} load {NEW_DAY}", f"column {column}: missing"],
        baseline[1],
    )

    shutil.copy(original, path)  # the upstream restores the file
    original.unlink()
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert project.warehouse.checksums() == reference


@pytest.mark.parametrize("entity", sorted(TIMESTAMPS))
def test_a_timestamp_in_the_future_stops_the_run_naming_the_row(
    baseline: tuple[Path, Checksums],
    tmp_path: Path,
    reference: Checksums,
    entity: str,
) -> None:
    project = copy_project(baseline, tmp_path)
    column = TIMESTAMPS[entity]
    key = REQUIRED[entity][1]
    path = _new_load(project, entity)
    first_key = pq.read_table(path, columns=[key]).column(0)[0].as_py()
    original = _rewrite(path, lambda table: _set_first(table, column, FUTURE))

    code, _, stderr = project.pipeline("run")
    _assert_stopped(
        project,
        code,
        stderr,
        4,
        [
            f"landing contract: {entity} load {NEW_DAY}",
            f"{key} {first_key} has {column} 2099-01-01",
        ],
        baseline[1],
    )

    shutil.copy(original, path)
    original.unlink()
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert project.warehouse.checksums() == reference


def test_a_value_corrected_in_place_is_taken_by_the_next_run(
    baseline: tuple[Path, Checksums],
    tmp_path: Path,
    reference: Checksums,
) -> None:
    """A bad value fails the run; the upstream fixes the file in place with the same
    _loaded_at and updated_at; the next run takes the fix and equals a full refresh."""
    project = copy_project(baseline, tmp_path)
    path = _new_load(project, "orders")
    original = _rewrite(path, lambda table: _set_first(table, "currency", "XXX"))

    code, _, stderr = project.pipeline("run")
    assert code == 1, stderr
    assert "relationships_stg_landing__orders_currency_code" in stderr

    shutil.copy(original, path)
    original.unlink()
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert project.warehouse.checksums() == reference


def test_an_old_copy_never_undoes_a_refund_or_a_delivery(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    """Copies delivered again in a later load with their old status: the refund and the
    delivery stand, and every mart equals a full refresh that saw the same copies."""
    project = copy_project(baseline, tmp_path)
    landing = project.settings.landing_root
    refunded = project.warehouse.query(
        "select payment_id, order_id from staging.stg_landing__payments "
        "where payment_status = 'refunded' order by payment_id limit 1"
    )[0]
    delivered = project.warehouse.query(
        "select order_id from staging.stg_landing__orders where order_status = 'delivered' "
        "order by order_id limit 1"
    )[0][0]
    paid_before = project.warehouse.query(
        "select paid_usd from marts.fct_orders where order_id = ?", [refunded[1]]
    )[0][0]

    payments = _new_load(project, "payments")
    old_payments = pa.concat_tables(
        [
            pq.read_table(p)
            for p in sorted((landing / "payments").glob("load_date=*/part-*.parquet"))
            if p.parent.name != f"load_date={NEW_DAY}"
        ]
    )
    completed = old_payments.filter(
        pc.and_(
            pc.equal(old_payments["payment_id"], refunded[0]),
            pc.equal(old_payments["payment_status"], "completed"),
        )
    )
    assert completed.num_rows == 1, "the refunded payment had a completed copy before"
    stale = completed.set_column(
        completed.schema.get_field_index("_loaded_at"),
        "_loaded_at",
        pq.read_table(payments).slice(0, 1).column("_loaded_at"),
    )
    pq.write_table(stale, payments.with_name("part-0001.parquet"))

    orders = landing / "orders" / f"load_date={NEW_DAY}" / "part-0000.parquet"
    old_orders = pa.concat_tables(
        [
            pq.read_table(p)
            for p in sorted((landing / "orders").glob("load_date=*/part-*.parquet"))
            if p.parent.name != f"load_date={NEW_DAY}"
        ]
    )
    placed = old_orders.filter(
        pc.and_(
            pc.equal(old_orders["order_id"], delivered),
            pc.equal(old_orders["order_status"], "placed"),
        )
    )
    new_orders = pq.read_table(orders)
    late = placed.set_column(
        placed.schema.get_field_index("_loaded_at"),
        "_loaded_at",
        new_orders.slice(0, 1).column("_loaded_at"),
    )
    late = late.set_column(
        late.schema.get_field_index("updated_at"),
        "updated_at",
        pa.array([dt.datetime.combine(NEW_DAY, dt.time(22, 0))], pa.timestamp("us")),
    )
    pq.write_table(late, orders.with_name("part-0001.parquet"))

    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    status = project.warehouse.query(
        "select payment_status from staging.stg_landing__payments where payment_id = ?",
        [refunded[0]],
    )[0][0]
    assert status == "refunded"
    assert (
        project.warehouse.query(
            "select paid_usd from marts.fct_orders where order_id = ?", [refunded[1]]
        )[0][0]
        == paid_before
    )
    assert (
        project.warehouse.query(
            "select order_status from marts.fct_orders where order_id = ?", [delivered]
        )[0][0]
        == "delivered"
    )
    assert project.warehouse.checksums() == _full_refresh_checksums(project, tmp_path)


def test_retention_of_old_landing_partitions_changes_no_mart(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    project = copy_project(baseline, tmp_path)
    for entity in REQUIRED:
        for folder in sorted((project.settings.landing_root / entity).glob("load_date=*"))[:10]:
            shutil.rmtree(folder)
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert project.warehouse.checksums() == baseline[1]


def test_an_operator_accepts_a_real_anomaly_and_the_next_run_passes(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    """A sale: half again the usual orders. The gate stops it (exit 4); an operator accepts
    the load with a reason; `pipeline gates` shows it; the next run passes and records it."""
    project = copy_project(baseline, tmp_path)
    path = _new_load(project, "orders")
    orders = pq.read_table(path)
    extra = orders.slice(0, orders.num_rows // 2)
    extra = extra.set_column(0, "order_id", pc.add(extra.column("order_id"), 10_000_000))
    pq.write_table(pa.concat_tables([orders, extra]), path)

    code, _, stderr = project.pipeline("run")
    assert code == 4 and "volume ANOMALY: stg_landing__orders" in stderr, stderr
    code, _, stderr = project.pipeline(
        "accept",
        "--entity",
        "orders",
        "--load-date",
        str(NEW_DAY),
        "--reason",
        "black friday sale",
        "--by",
        "ana",
    )
    assert code == 0, stderr
    code, _, stderr = project.pipeline("gates")
    assert (
        code == 0
        and "volume accepted: stg_landing__orders" in stderr
        and "black friday sale" in stderr
    )
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert (
        project.warehouse.query("select count(*) from marts.fct_orders where order_id > 10000000")[
            0
        ][0]
        == extra.num_rows
    )
