"""The generator: deterministic, shaped like DESIGN.md's landing zone, at the documented rates."""

from __future__ import annotations

import datetime as dt
import filecmp
import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import END_DATE, make_landing
from pipeline import generator

EXPECTED_SCHEMAS = {
    "customers": {
        "customer_id": "int64",
        "email": "string",
        "first_name": "string",
        "last_name": "string",
        "country_code": "string",
        "created_at": "timestamp[us]",
        "updated_at": "timestamp[us]",
        "_loaded_at": "timestamp[us]",
    },
    "products": {
        "product_id": "int64",
        "sku": "string",
        "product_name": "string",
        "category": "string",
        "unit_price": "decimal128(12, 2)",
        "currency": "string",
        "is_active": "bool",
        "updated_at": "timestamp[us]",
        "_loaded_at": "timestamp[us]",
    },
    "orders": {
        "order_id": "int64",
        "customer_id": "int64",
        "order_status": "string",
        "currency": "string",
        "ordered_at": "timestamp[us]",
        "updated_at": "timestamp[us]",
        "_loaded_at": "timestamp[us]",
    },
    "order_items": {
        "order_item_id": "int64",
        "order_id": "int64",
        "product_id": "int64",
        "quantity": "int32",
        "unit_price": "decimal128(12, 2)",
        "discount": "decimal128(12, 2)",
        "_loaded_at": "timestamp[us]",
    },
    "payments": {
        "payment_id": "int64",
        "order_id": "int64",
        "payment_method": "string",
        "payment_status": "string",
        "amount_cents": "int64",
        "currency": "string",
        "created_at": "timestamp[us]",
        "_loaded_at": "timestamp[us]",
    },
    "events": {
        "event_id": "string",
        "session_id": "string",
        "customer_id": "int64",
        "event_type": "string",
        "event_at": "timestamp[us]",
        "page": "string",
        "_loaded_at": "timestamp[us]",
    },
}


def _files(root: Path) -> list[Path]:
    return sorted(path.relative_to(root) for path in root.rglob("*") if path.is_file())


def _sql(landing: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as con:
        for entity in generator.ENTITIES:
            con.execute(
                f"create view {entity} as select * from "
                f"read_parquet('{landing}/{entity}/*/*.parquet', "
                "hive_partitioning = true, hive_types = {'load_date': date})"
            )
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_landing(tmp_path_factory.mktemp("gen") / "landing", days=12, scale=0.05)


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    first = make_landing(tmp_path / "a", days=4, seed=3)
    second = make_landing(tmp_path / "b", days=4, seed=3)
    assert _files(first) == _files(second)
    mismatched = filecmp.cmpfiles(first, second, [str(p) for p in _files(first)], shallow=False)[1]
    assert mismatched == []


def test_another_seed_writes_other_data(tmp_path: Path) -> None:
    first = make_landing(tmp_path / "a", days=2, seed=3)
    second = make_landing(tmp_path / "b", days=2, seed=4)
    path = Path("orders/load_date=2026-03-31/part-0000.parquet")
    assert (first / path).read_bytes() != (second / path).read_bytes()


def test_append_day_writes_what_a_longer_generation_writes(tmp_path: Path) -> None:
    appended = make_landing(
        tmp_path / "appended", days=4, seed=5, end_date=END_DATE - dt.timedelta(days=1)
    )
    load_date, rows = generator.append_day(appended)
    assert load_date == END_DATE and rows["orders"] > 0
    longer = make_landing(tmp_path / "longer", days=5, seed=5)
    files = [str(p) for p in _files(longer)]
    assert _files(appended) == _files(longer)
    assert filecmp.cmpfiles(appended, longer, files, shallow=False)[1] == []
    assert json.loads((appended / generator.MANIFEST).read_text())["days"] == 5


def test_append_day_without_a_landing_zone_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pipeline generate"):
        generator.append_day(tmp_path)


def test_layout_and_column_types_match_the_design(landing: Path) -> None:
    for entity, expected in EXPECTED_SCHEMAS.items():
        partitions = sorted(p.name for p in (landing / entity).iterdir())
        assert partitions == [
            f"load_date={END_DATE - dt.timedelta(days=d)}" for d in range(11, -1, -1)
        ]
        schema = pq.read_schema(landing / entity / partitions[0] / "part-0000.parquet")
        assert {field.name: str(field.type) for field in schema} == expected, entity


def test_orders_per_day_follow_the_scale(landing: Path) -> None:
    placed = _sql(
        landing, "select load_date, count(*) from orders where order_status = 'placed' group by 1"
    )
    expected = generator.ORDERS_PER_DAY_AT_SCALE_1 * 0.05
    assert len(placed) == 12
    assert all(0.9 * expected <= count <= 1.1 * expected for _, count in placed)
    ratios = _sql(
        landing,
        """
        select
            (select count(*) from order_items) / (select count(distinct order_id) from orders),
            (select count(*) from payments where payment_status != 'refunded')
                / (select count(distinct order_id) from orders),
            (select count(distinct event_id) from events)
            / (select count(distinct order_id) from orders)
    """,
    )[0]
    assert 2.3 <= ratios[0] <= 2.7, "about 2.5 lines per order"
    assert 1.0 <= ratios[1] <= 1.2, "about 1.1 payments per order"
    assert 8.5 <= ratios[2] <= 11.5, "about 10 web events per order"


def test_events_arrive_at_least_once_and_some_late(landing: Path) -> None:
    rows, distinct, late, max_lateness = _sql(
        landing,
        """
        select count(*), count(distinct event_id),
               count(*) filter (where cast(event_at as date) < load_date),
               max(load_date - cast(event_at as date))
        from events
    """,
    )[0]
    duplicate_rate = (rows - distinct) / distinct
    assert 0.007 <= duplicate_rate <= 0.013, duplicate_rate
    assert 0.01 <= late / rows <= 0.035, late / rows
    assert max_lateness <= generator.MAX_EVENT_LATENESS_DAYS + 1


def test_orders_come_back_as_new_versions_with_later_status(landing: Path) -> None:
    statuses = dict(_sql(landing, "select order_status, count(*) from orders group by 1"))
    assert set(statuses) == {"placed", "shipped", "delivered", "cancelled", "returned"}
    regressions = _sql(
        landing,
        """
        select count(*) from (
            select order_id, updated_at, load_date,
                   lag(updated_at) over (partition by order_id order by load_date) as previous
            from orders
        ) where updated_at <= previous
    """,
    )[0][0]
    assert regressions == 0, "a later load always carries a later version"


def test_some_customers_change_email_or_country(landing: Path) -> None:
    changed = _sql(
        landing,
        """
        select count(distinct customer_id) filter (where emails > 1),
               count(distinct customer_id) filter (where countries > 1)
        from (select customer_id, count(distinct email) as emails,
                     count(distinct country_code) as countries
              from customers group by 1)
    """,
    )[0]
    assert changed[0] > 0 and changed[1] > 0


def test_refunds_follow_cancellations_and_returns(landing: Path) -> None:
    orphans = _sql(
        landing,
        """
        select count(*) from payments as p
        where p.payment_status = 'refunded' and not exists (
            select 1 from orders as o
            where o.order_id = p.order_id and o.order_status in ('cancelled', 'returned')
              and o.load_date = p.load_date)
    """,
    )[0][0]
    assert orphans == 0
