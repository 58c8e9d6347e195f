"""The landing contract on hand-made Parquet files: no dbt, no warehouse."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.landing import (
    ColumnContract,
    EntityContract,
    check_landing,
    compatible,
    file_violations,
)

NOW = dt.datetime(2026, 3, 10, 12, 0, 0)
LIMIT = NOW + dt.timedelta(minutes=15)
DAY = dt.date(2026, 3, 9)
ORDERS = EntityContract(
    "orders",
    "order_id",
    (
        ColumnContract("order_id", "bigint", False),
        ColumnContract("discount", "decimal(12,2)", False),
        ColumnContract("note", "varchar", True),
        ColumnContract("updated_at", "timestamp", False),
    ),
)


def _table(**overrides: pa.Array) -> pa.Table:
    columns = {
        "order_id": pa.array([1, 2, 3], pa.int64()),
        "discount": pa.array(
            [Decimal("0.00"), Decimal("1.50"), Decimal("0.00")], pa.decimal128(12, 2)
        ),
        "note": pa.array([None, "gift", None], pa.string()),
        "updated_at": pa.array(
            [dt.datetime(2026, 3, 9, 8), dt.datetime(2026, 3, 9, 9), dt.datetime(2026, 3, 9, 10)],
            pa.timestamp("us"),
        ),
    }
    columns.update(overrides)
    return pa.table(columns)


def _write(tmp_path: Path, table: pa.Table) -> Path:
    path = tmp_path / "part-0000.parquet"
    pq.write_table(table, path)
    return path


def _rules(tmp_path: Path, table: pa.Table) -> list[tuple[str | None, str]]:
    violations = file_violations(ORDERS, _write(tmp_path, table), DAY, "orders/x.parquet", LIMIT)
    return [(violation.column, violation.rule) for violation in violations]


@pytest.mark.parametrize(
    "declared, actual, expected",
    [
        ("bigint", pa.int32(), True),  # safe widening
        ("bigint", pa.int64(), True),
        ("bigint", pa.uint64(), False),  # could overflow a signed 64-bit column
        ("integer", pa.int64(), False),  # narrowing
        ("bigint", pa.string(), False),
        ("varchar", pa.dictionary(pa.int32(), pa.string()), True),
        ("decimal(12,2)", pa.decimal128(10, 2), True),
        ("decimal(12,2)", pa.decimal128(14, 2), False),
        ("decimal(12,2)", pa.decimal128(12, 3), False),
        ("timestamp", pa.timestamp("ms"), True),
        ("timestamp", pa.timestamp("us", tz="Europe/Paris"), False),
        ("boolean", pa.bool_(), True),
    ],
)
def test_compatible_types(declared: str, actual: pa.DataType, expected: bool) -> None:
    assert compatible(declared, actual) is expected


def test_a_file_that_keeps_the_contract_passes_with_an_added_column(tmp_path: Path) -> None:
    table = _table().append_column("coupon", pa.array(["a", "b", "c"]))
    assert _rules(tmp_path, table) == []


def test_a_vanished_column_is_named(tmp_path: Path) -> None:
    rules = _rules(tmp_path, _table().drop_columns(["discount"]))
    assert [column for column, _ in rules] == ["discount"]
    assert rules[0][1].startswith("missing")


def test_a_retyped_column_is_named_with_both_types(tmp_path: Path) -> None:
    rules = _rules(tmp_path, _table(order_id=pa.array(["1", "2", "x"])))
    assert rules == [("order_id", "type string is not compatible with the declared bigint")]


def test_nulls_fail_only_where_the_contract_says_not_nullable(tmp_path: Path) -> None:
    rules = _rules(tmp_path, _table(order_id=pa.array([1, None, None], pa.int64())))
    assert rules == [("order_id", "2 null values in a column declared not nullable")]


def test_a_future_timestamp_names_the_row_key(tmp_path: Path) -> None:
    late = pa.array(
        [dt.datetime(2026, 3, 9, 8), dt.datetime(2099, 1, 1), dt.datetime(2026, 3, 9, 10)],
        pa.timestamp("us"),
    )
    rules = _rules(tmp_path, _table(updated_at=late))
    assert len(rules) == 1 and rules[0][0] == "updated_at"
    assert "order_id 2 has updated_at 2099-01-01 00:00:00" in rules[0][1]


def test_a_timestamp_within_the_tolerance_passes(tmp_path: Path) -> None:
    near = pa.array([NOW + dt.timedelta(minutes=10)] * 3, pa.timestamp("us"))
    assert _rules(tmp_path, _table(updated_at=near)) == []


def test_a_malformed_file_is_a_violation_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "part-0000.parquet"
    path.write_bytes(b"PAR1 not really")
    (violation,) = file_violations(ORDERS, path, DAY, "orders/x.parquet", LIMIT)
    assert violation.column is None and violation.rule.startswith("unreadable Parquet file")


def test_check_landing_reads_only_partitions_after_since_and_rejects_future_partitions(
    tmp_path: Path,
) -> None:
    for day in ("2026-03-07", "2026-03-08", "2099-01-01"):
        folder = tmp_path / "orders" / f"load_date={day}"
        folder.mkdir(parents=True)
        pq.write_table(
            _table(order_id=pa.array([None, 2, 3], pa.int64())), folder / "part-0000.parquet"
        )
    violations = check_landing(
        [ORDERS], tmp_path, {"orders": dt.date(2026, 3, 7)}, None, NOW, dt.timedelta(minutes=15)
    )
    assert [(v.load_date, v.column) for v in violations] == [
        (dt.date(2026, 3, 8), "order_id"),
        (dt.date(2099, 1, 1), None),
    ]
    assert "dated after the run's clock" in violations[1].rule
