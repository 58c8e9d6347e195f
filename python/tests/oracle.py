"""An independent model of the marts, computed in plain Python from the landing Parquet files.

Nothing here reads the warehouse or reuses its SQL: deduplication, currency conversion,
rounding (half up, to cents) and the revenue rules are re-implemented from DESIGN.md's text,
so a wrong model and a wrong oracle would have to be wrong in the same way to agree.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from pipeline import PROJECT_DIR

CENT = Decimal("0.01")
REVENUE_STATUSES = {"placed", "shipped", "delivered"}


Row = dict[str, Any]


def _rows(landing: Path, entity: str) -> list[Row]:
    dataset = ds.dataset(landing / entity, format="parquet", partitioning="hive")
    rows: list[Row] = dataset.to_table().to_pylist()
    return rows


def _latest(rows: list[Row], key: str, order: tuple[str, ...]) -> dict[Any, Row]:
    latest: dict[Any, Row] = {}
    for row in rows:
        current = latest.get(row[key])
        if current is None or tuple(row[o] for o in order) > tuple(current[o] for o in order):
            latest[row[key]] = row
    return latest


def rates() -> dict[str, Decimal]:
    with (PROJECT_DIR / "seeds" / "currency_rates.csv").open(newline="") as handle:
        return {row["currency"]: Decimal(row["usd_rate"]) for row in csv.DictReader(handle)}


@dataclass
class Oracle:
    order_total_usd: dict[int, Decimal] = field(default_factory=dict)
    paid_usd: dict[int, Decimal] = field(default_factory=dict)
    order_status: dict[int, str] = field(default_factory=dict)
    daily_revenue: dict[dt.date, tuple[int, Decimal, int]] = field(default_factory=dict)
    customers: dict[int, tuple[dt.date | None, int, Decimal]] = field(default_factory=dict)
    sessions: dict[str, tuple[int, bool, dt.date]] = field(default_factory=dict)
    emails: dict[int, str] = field(default_factory=dict)  # masked: sha256 of the latest email


def mask(value: str) -> str:
    """PII as every relation below staging holds it: SHA-256 of the UTF-8 bytes, hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def compute(landing: Path) -> Oracle:
    usd = rates()
    result = Oracle()
    orders = _latest(_rows(landing, "orders"), "order_id", ("updated_at", "_loaded_at"))
    items = _latest(_rows(landing, "order_items"), "order_item_id", ("_loaded_at",))
    payments = _latest(_rows(landing, "payments"), "payment_id", ("_loaded_at",))
    customers = _latest(_rows(landing, "customers"), "customer_id", ("updated_at", "_loaded_at"))

    exact: dict[int, Decimal] = defaultdict(Decimal)
    for item in items.values():
        rate = usd[orders[item["order_id"]]["currency"]]
        exact[item["order_id"]] += (item["quantity"] * item["unit_price"] - item["discount"]) * rate
    for order_id, order in orders.items():
        result.order_total_usd[order_id] = exact[order_id].quantize(CENT, ROUND_HALF_UP)
        result.order_status[order_id] = order["order_status"]
        result.paid_usd[order_id] = Decimal("0.00")
    for payment in payments.values():
        if payment["payment_status"] == "completed":
            amount = Decimal(payment["amount_cents"]) / 100 * usd[payment["currency"]]
            result.paid_usd[payment["order_id"]] += amount.quantize(CENT, ROUND_HALF_UP)

    daily: dict[dt.date, list[Any]] = {}
    per_customer: dict[int, list[Any]] = {cid: [None, 0, Decimal("0.00")] for cid in customers}
    for order_id, order in orders.items():
        day = order["ordered_at"].date()
        bucket = daily.setdefault(day, [0, Decimal("0.00"), set()])
        stats = per_customer[order["customer_id"]]
        stats[0] = day if stats[0] is None else min(stats[0], day)
        if order["order_status"] in REVENUE_STATUSES:
            total = result.order_total_usd[order_id]
            bucket[0] += 1
            bucket[1] += total
            bucket[2].add(order["customer_id"])
            stats[1] += 1
            stats[2] += total
    result.daily_revenue = {
        day: (n, revenue, len(buyers)) for day, (n, revenue, buyers) in daily.items()
    }
    result.customers = {
        cid: (first, n, revenue) for cid, (first, n, revenue) in per_customer.items()
    }
    result.emails = {cid: mask(customer["email"]) for cid, customer in customers.items()}

    events = _latest(_rows(landing, "events"), "event_id", ("_loaded_at",))
    per_session: dict[str, list[Any]] = {}
    for event in events.values():
        stats = per_session.setdefault(event["session_id"], [0, False, event["event_at"]])
        stats[0] += 1
        stats[1] = stats[1] or event["event_type"] == "purchase"
        stats[2] = min(stats[2], event["event_at"])
    result.sessions = {
        sid: (n, purchase, first.date()) for sid, (n, purchase, first) in per_session.items()
    }
    return result
