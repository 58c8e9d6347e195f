"""Deterministic landing-zone generator shaped like a CDC export of a shop's database.

Every load day is a pure function of (seed, scale, day index): the generator never keeps
state between days beyond the small `_generator.json` manifest, so `--append-day` writes
exactly the bytes a longer initial generation would have written for that day. Rows are
built column-wise with numpy and pyarrow (no Python loop per row), which keeps scale 1
(about 440k rows a day) in the seconds range.

Shape of the data (see DESIGN.md, "The domain"):
- orders are created as `placed` and come back in later loads as new versions when they are
  shipped, delivered, cancelled or returned;
- payments arrive with their order; a cancelled or returned order's completed payment comes
  back as a new version with status `refunded`;
- clickstream events arrive at least once (about 1% are delivered twice) and about 2% arrive
  one to three loads after the day they happened;
- a few customers change email or country every day (the SCD2 snapshot records them) and a
  few products change price or are retired.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ENTITIES = ("customers", "products", "orders", "order_items", "payments", "events")
MANIFEST = "_generator.json"

ORDERS_PER_DAY_AT_SCALE_1 = 30_000
INITIAL_CUSTOMERS_AT_SCALE_1 = 60_000
NEW_CUSTOMERS_PER_DAY_AT_SCALE_1 = 1_500
INITIAL_PRODUCTS_AT_SCALE_1 = 2_000
SESSIONS_PER_ORDER = 2.0  # half the sessions end in a purchase; ~5 events each -> ~10 per order
LATE_EVENT_RATE = 0.02  # share of events that arrive 1-3 loads after the day they happened
DUPLICATE_EVENT_RATE = 0.01  # share of events delivered twice (same load or the next)
MAX_EVENT_LATENESS_DAYS = 3
MAX_ORDER_LIFECYCLE_DAYS = 14  # placed -> shipped (<=3) -> delivered (<=4) -> returned (<=7)
ACTIVITY_SECONDS = 23 * 3600  # activity happens before 23:00; the batch loads at 23:30
LOAD_OFFSET = np.timedelta64(23 * 3600 + 30 * 60, "s")
EVENTS_PER_PART_FILE = 400_000

CURRENCIES = np.array(["USD", "EUR", "GBP", "CAD"])
CURRENCY_WEIGHTS = np.array([0.70, 0.18, 0.08, 0.04])
# Approximate USD per unit, only to quote prices in the order's currency; the warehouse
# converts with the `currency_rates` seed, which is the single source of truth for money.
APPROX_USD_RATE = np.array([1.0, 1.08, 1.27, 0.73])
COUNTRIES = np.array(["US", "GB", "DE", "FR", "CA", "NL", "ES", "IT", "AU", "SE"])
COUNTRY_WEIGHTS = np.array([0.40, 0.12, 0.11, 0.09, 0.08, 0.05, 0.05, 0.04, 0.04, 0.02])
FIRST_NAMES = np.array(
    [
        "ada",
        "alan",
        "grace",
        "linus",
        "margaret",
        "dennis",
        "barbara",
        "ken",
        "frances",
        "edsger",
        "radia",
        "donald",
        "sophie",
        "tim",
        "katherine",
        "guido",
        "hedy",
        "john",
        "lynn",
        "niklaus",
    ]
)
LAST_NAMES = np.array(
    [
        "lovelace",
        "turing",
        "hopper",
        "torvalds",
        "hamilton",
        "ritchie",
        "liskov",
        "thompson",
        "allen",
        "dijkstra",
        "perlman",
        "knuth",
        "wilson",
        "berners",
        "johnson",
        "rossum",
        "lamarr",
        "backus",
        "conway",
        "wirth",
    ]
)
CATEGORIES = np.array(
    ["apparel", "books", "electronics", "garden", "home", "sports", "toys", "beauty"]
)
EVENT_TYPES = np.array(["page_view", "add_to_cart", "checkout", "purchase"])
PAGES = np.array(
    [
        "/",
        "/search",
        "/category/apparel",
        "/category/books",
        "/category/electronics",
        "/category/home",
        "/product",
        "/product/reviews",
        "/cart",
        "/checkout",
        "/account",
        "/help",
    ]
)
PAYMENT_METHODS = np.array(["card", "paypal", "bank_transfer", "gift_card"])
PAYMENT_METHOD_WEIGHTS = np.array([0.68, 0.20, 0.09, 0.03])


@dataclass(frozen=True)
class LandingSpec:
    """What a landing zone was generated from; stored beside it so appends stay consistent."""

    seed: int
    scale: float
    start_date: dt.date
    days: int

    @property
    def end_date(self) -> dt.date:
        return self.start_date + dt.timedelta(days=self.days - 1)

    def to_json(self) -> str:
        data = asdict(self)
        data["start_date"] = self.start_date.isoformat()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LandingSpec:
        data = json.loads(text)
        return cls(
            seed=int(data["seed"]),
            scale=float(data["scale"]),
            start_date=dt.date.fromisoformat(data["start_date"]),
            days=int(data["days"]),
        )


def _rng(spec: LandingSpec, stream: int, day: int) -> np.random.Generator:
    """An independent random stream per (seed, entity stream, day): days never share state."""
    return np.random.default_rng([spec.seed, stream, day])


def _scaled(base: float, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(base * scale))


@functools.lru_cache(maxsize=65_536)
def _day_factor(spec: LandingSpec, stream: int, day: int, jitter: float) -> float:
    return float(_rng(spec, stream, day).uniform(1 - jitter, 1 + jitter))


def _daily_counts(
    spec: LandingSpec, stream: int, base: float, upto_day: int, jitter: float
) -> np.ndarray:
    """Per-day entity counts for days 0..upto_day (inclusive); one cached draw per day."""
    mean = _scaled(base, spec.scale)
    factors = np.array([_day_factor(spec, stream, day, jitter) for day in range(upto_day + 1)])
    return np.maximum(1, np.round(mean * factors)).astype(np.int64)


def orders_per_day(spec: LandingSpec, upto_day: int) -> np.ndarray:
    return _daily_counts(spec, 1, ORDERS_PER_DAY_AT_SCALE_1, upto_day, jitter=0.08)


def new_customers_per_day(spec: LandingSpec, upto_day: int) -> np.ndarray:
    counts = _daily_counts(spec, 2, NEW_CUSTOMERS_PER_DAY_AT_SCALE_1, upto_day, jitter=0.10)
    counts[0] += _scaled(INITIAL_CUSTOMERS_AT_SCALE_1, spec.scale, minimum=50)
    return counts


@functools.lru_cache(maxsize=65_536)
def _new_products_on(spec: LandingSpec, day: int) -> int:
    return int(_rng(spec, 3, day).poisson(max(0.3, 8 * spec.scale)))


def new_products_per_day(spec: LandingSpec, upto_day: int) -> np.ndarray:
    counts = np.array([_new_products_on(spec, day) for day in range(upto_day + 1)], dtype=np.int64)
    counts[0] += _scaled(INITIAL_PRODUCTS_AT_SCALE_1, spec.scale, minimum=20)
    return counts


# ---------------------------------------------------------------------------------------------
# Column helpers


def _mix(ids: np.ndarray, salt: int) -> np.ndarray:
    """A stateless integer hash of ids: stable per-entity attributes without storing them."""
    x = (ids.astype(np.uint64) + np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(29)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(32)
    return x


def _decimal(cents: np.ndarray, precision: int = 12) -> pa.Array:
    """Exact DECIMAL(p,2) from integer cents, built from the 128-bit little-endian buffer."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    words = np.empty((cents.size, 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    return pa.Array.from_buffers(
        pa.decimal128(precision, 2), cents.size, [None, pa.py_buffer(words)]
    )


def _timestamps(day: dt.date, seconds: np.ndarray) -> pa.Array:
    """Naive UTC timestamps (microseconds) for offsets in seconds from the day's midnight."""
    base = np.datetime64(day.isoformat(), "s")
    return pa.array((base + seconds.astype("timedelta64[s]")).astype("datetime64[us]"))


def _prefixed(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def _labels(values: np.ndarray, codes: np.ndarray) -> pa.Array:
    """Strings by code, gathered in Arrow's C++ kernels: far faster than numpy unicode arrays."""
    return pc.take(pa.array(values), pa.array(codes, pa.int64()))


def _choice(
    rng: np.random.Generator, values: np.ndarray, size: int, weights: np.ndarray | None = None
) -> np.ndarray:
    return values[rng.choice(values.size, size=size, p=weights)]


# ---------------------------------------------------------------------------------------------
# Entities. Each builder returns the rows of one load day (without `load_date`, which is the
# hive partition) as a pyarrow Table with the exact column types of DESIGN.md.


def _customer_rows(
    spec: LandingSpec,
    ids: np.ndarray,
    updated_seconds: np.ndarray,
    day: int,
    new_email: np.ndarray,
    new_country: np.ndarray,
) -> dict[str, pa.Array]:
    counts = new_customers_per_day(spec, day)
    first_id_of_day = np.concatenate([[1], np.cumsum(counts)[:-1] + 1])
    created_day = np.searchsorted(first_id_of_day, ids, side="right") - 1
    created_seconds = (_mix(ids, 11) % np.uint64(ACTIVITY_SECONDS)).astype(np.int64)
    first = FIRST_NAMES[(_mix(ids, 12) % np.uint64(FIRST_NAMES.size)).astype(np.int64)]
    last = LAST_NAMES[(_mix(ids, 13) % np.uint64(LAST_NAMES.size)).astype(np.int64)]
    country_idx = np.searchsorted(
        np.cumsum(COUNTRY_WEIGHTS), (_mix(ids, 14) % np.uint64(10_000)) / 10_000.0
    )
    country = COUNTRIES[np.minimum(country_idx, COUNTRIES.size - 1)]
    country = np.where(new_country != "", new_country, country)
    local_part = pc.binary_join_element_wise(
        pa.array(first), pa.array(last), _prefixed("", ids), "."
    )
    local_part = pc.binary_join_element_wise(local_part, pa.array(new_email), "")
    start = np.datetime64(spec.start_date.isoformat(), "s")
    created_at = start + (created_day * 86_400 + created_seconds).astype("timedelta64[s]")
    updated_at = np.datetime64(
        (spec.start_date + dt.timedelta(days=day)).isoformat(), "s"
    ) + updated_seconds.astype("timedelta64[s]")
    return {
        "customer_id": pa.array(ids, pa.int64()),
        "email": pc.binary_join_element_wise(local_part, "@example.com", ""),
        "first_name": pa.array(np.char.capitalize(first)),
        "last_name": pa.array(np.char.capitalize(last)),
        "country_code": pa.array(country),
        "created_at": pa.array(created_at.astype("datetime64[us]")),
        "updated_at": pa.array(np.maximum(created_at, updated_at).astype("datetime64[us]")),
    }


def customers_for_day(spec: LandingSpec, day: int) -> pa.Table:
    counts = new_customers_per_day(spec, day)
    existing = int(counts[:day].sum())
    new_ids = np.arange(existing + 1, existing + counts[day] + 1, dtype=np.int64)
    rng = _rng(spec, 20, day)
    n_updates = 0 if day == 0 else max(1, round(existing * 0.002))
    upd_ids = (
        np.unique(rng.integers(1, existing + 1, size=n_updates))
        if n_updates
        else np.empty(0, np.int64)
    )
    change_email = rng.random(upd_ids.size) < 0.5
    new_email = np.concatenate([np.full(new_ids.size, ""), np.where(change_email, f"+d{day}", "")])
    new_country = np.concatenate(
        [
            np.full(new_ids.size, ""),
            np.where(change_email, "", _choice(rng, COUNTRIES, upd_ids.size, COUNTRY_WEIGHTS)),
        ]
    )
    ids = np.concatenate([new_ids, upd_ids])
    # A brand-new customer's updated_at equals created_at (clamped below); updates happen today.
    updated_seconds = np.concatenate(
        [np.zeros(new_ids.size, np.int64), rng.integers(0, ACTIVITY_SECONDS, upd_ids.size)]
    )
    cols = _customer_rows(spec, ids, updated_seconds, day, new_email, new_country)
    return pa.table(cols)


def product_prices_usd_cents(ids: np.ndarray) -> np.ndarray:
    return 299 + (_mix(ids, 31) % np.uint64(24_700)).astype(np.int64)


def products_for_day(spec: LandingSpec, day: int) -> pa.Table:
    counts = new_products_per_day(spec, day)
    existing = int(counts[:day].sum())
    new_ids = np.arange(existing + 1, existing + counts[day] + 1, dtype=np.int64)
    rng = _rng(spec, 30, day)
    n_changes = 0 if day == 0 else max(1, round(existing * 0.003))
    changed = (
        np.unique(rng.integers(1, existing + 1, size=n_changes))
        if n_changes
        else np.empty(0, np.int64)
    )
    ids = np.concatenate([new_ids, changed])
    price_factor = np.concatenate([np.ones(new_ids.size), rng.uniform(0.85, 1.15, changed.size)])
    is_active = np.concatenate([np.ones(new_ids.size, bool), rng.random(changed.size) > 0.1])
    currency = np.where(
        (_mix(ids, 32) % np.uint64(10)) < 8,
        "USD",
        np.where((_mix(ids, 33) % np.uint64(2)) == 0, "EUR", "GBP"),
    )
    rate = np.where(currency == "USD", 1.0, np.where(currency == "EUR", 1.08, 1.27))
    cents = np.round(product_prices_usd_cents(ids) * price_factor / rate).astype(np.int64)
    seconds = np.concatenate(
        [np.zeros(new_ids.size, np.int64), rng.integers(0, ACTIVITY_SECONDS, changed.size)]
    )
    category = CATEGORIES[(_mix(ids, 34) % np.uint64(CATEGORIES.size)).astype(np.int64)]
    return pa.table(
        {
            "product_id": pa.array(ids, pa.int64()),
            "sku": _prefixed("SKU-", 100_000 + ids),
            "product_name": pc.binary_join_element_wise(
                pa.array(np.char.capitalize(category)), _prefixed("item ", ids), " "
            ),
            "category": pa.array(category),
            "unit_price": _decimal(cents),
            "currency": pa.array(currency),
            "is_active": pa.array(is_active),
            "updated_at": _timestamps(spec.start_date + dt.timedelta(days=day), seconds),
        }
    )


@dataclass
class _OrderPlan:
    """Everything about the orders created on one day, including their future lifecycle."""

    order_ids: np.ndarray
    customer_ids: np.ndarray
    currency_idx: np.ndarray
    ordered_seconds: np.ndarray
    shipped_day: np.ndarray  # day index, -1 if never
    delivered_day: np.ndarray
    cancelled_day: np.ndarray
    returned_day: np.ndarray
    line_order_idx: np.ndarray  # per line: index into the order arrays
    line_no: np.ndarray
    product_ids: np.ndarray
    quantity: np.ndarray
    unit_price_cents: np.ndarray
    discount_cents: np.ndarray
    pay_kind: np.ndarray  # 0 = paid, 1 = failed then paid, 2 = never paid
    pay_method_idx: np.ndarray


@functools.lru_cache(maxsize=MAX_ORDER_LIFECYCLE_DAYS + 2)
def _order_plan(spec: LandingSpec, day: int) -> _OrderPlan:
    counts = orders_per_day(spec, day)
    first_id = int(counts[:day].sum()) + 1
    n = int(counts[day])
    rng = _rng(spec, 40, day)
    customers_known = int(new_customers_per_day(spec, day).sum())
    products_known = int(new_products_per_day(spec, day).sum())
    order_ids = np.arange(first_id, first_id + n, dtype=np.int64)
    customer_ids = rng.integers(1, customers_known + 1, n)
    currency_idx = rng.choice(CURRENCIES.size, n, p=CURRENCY_WEIGHTS)
    ordered_seconds = rng.integers(0, ACTIVITY_SECONDS - 3600, n)
    fate = rng.random(n)
    cancelled = fate < 0.05
    shipped_day = np.where(cancelled, -1, day + rng.integers(1, 4, n))
    delivered_day = np.where(cancelled, -1, shipped_day + rng.integers(1, 5, n))
    returned = (~cancelled) & (fate > 0.96)
    returned_day = np.where(returned, delivered_day + rng.integers(2, 8, n), -1)
    cancelled_day = np.where(cancelled, day + rng.integers(1, 3, n), -1)
    lines_per_order = 1 + rng.poisson(1.5, n)
    line_order_idx = np.repeat(np.arange(n), lines_per_order)
    starts = np.repeat(np.cumsum(lines_per_order) - lines_per_order, lines_per_order)
    line_no = np.arange(line_order_idx.size) - starts + 1
    product_ids = rng.integers(1, products_known + 1, line_order_idx.size)
    quantity = 1 + rng.poisson(0.6, line_order_idx.size)
    rate = APPROX_USD_RATE[currency_idx[line_order_idx]]
    unit_price_cents = np.round(product_prices_usd_cents(product_ids) / rate).astype(np.int64)
    discounted = rng.random(line_order_idx.size) < 0.2
    discount_cents = np.where(
        discounted,
        np.round(unit_price_cents * quantity * rng.uniform(0.05, 0.2, line_order_idx.size)),
        0,
    ).astype(np.int64)
    pay_fate = rng.random(n)
    pay_kind = np.where(pay_fate < 0.02, 2, np.where(pay_fate < 0.12, 1, 0))
    pay_method_idx = rng.choice(PAYMENT_METHODS.size, n, p=PAYMENT_METHOD_WEIGHTS)
    return _OrderPlan(
        order_ids,
        customer_ids,
        currency_idx,
        ordered_seconds,
        shipped_day,
        delivered_day,
        cancelled_day,
        returned_day,
        line_order_idx,
        line_no,
        product_ids,
        quantity,
        unit_price_cents,
        discount_cents,
        pay_kind,
        pay_method_idx,
    )


def _seconds_in_day(ids: np.ndarray, salt: int) -> np.ndarray:
    """A stable time of day per id: a status change always lands at the same second."""
    return (_mix(ids, salt) % np.uint64(ACTIVITY_SECONDS)).astype(np.int64)


def orders_items_payments_for_day(
    spec: LandingSpec, day: int
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Orders, order items and payments of one load: today's new orders plus new versions."""
    load_date = spec.start_date + dt.timedelta(days=day)
    order_parts: list[dict[str, Any]] = []
    payment_parts: list[dict[str, Any]] = []
    items: pa.Table | None = None
    for origin in range(max(0, day - MAX_ORDER_LIFECYCLE_DAYS), day + 1):
        plan = _order_plan(spec, origin)
        origin_start = np.datetime64((spec.start_date + dt.timedelta(days=origin)).isoformat(), "s")
        ordered_at = origin_start + plan.ordered_seconds.astype("timedelta64[s]")
        day_start = np.datetime64(load_date.isoformat(), "s")
        totals = np.bincount(
            plan.line_order_idx,
            plan.unit_price_cents * plan.quantity - plan.discount_cents,
            minlength=plan.order_ids.size,
        ).astype(np.int64)
        if origin == day:
            idx = np.arange(plan.order_ids.size)
            order_parts.append(
                {
                    "idx": idx,
                    "status": np.full(idx.size, "placed"),
                    "updated_at": ordered_at,
                    "plan": plan,
                    "ordered_at": ordered_at,
                }
            )
            items = pa.table(
                {
                    "order_item_id": pa.array(
                        plan.order_ids[plan.line_order_idx] * 100 + plan.line_no, pa.int64()
                    ),
                    "order_id": pa.array(plan.order_ids[plan.line_order_idx], pa.int64()),
                    "product_id": pa.array(plan.product_ids, pa.int64()),
                    "quantity": pa.array(plan.quantity, pa.int32()),
                    "unit_price": _decimal(plan.unit_price_cents),
                    "discount": _decimal(plan.discount_cents),
                }
            )
            paying = np.flatnonzero(plan.pay_kind != 2)
            failed_first = np.flatnonzero(plan.pay_kind == 1)
            pay_idx = np.concatenate([failed_first, paying])
            seq = np.concatenate(
                [np.ones(failed_first.size, np.int64), np.where(plan.pay_kind[paying] == 1, 2, 1)]
            )
            status = np.concatenate(
                [np.full(failed_first.size, "failed"), np.full(paying.size, "completed")]
            )
            payment_parts.append(
                {
                    "idx": pay_idx,
                    "seq": seq,
                    "status": status,
                    "plan": plan,
                    "totals": totals,
                    "origin_start": origin_start,
                }
            )
        for change, when in (
            ("shipped", plan.shipped_day),
            ("delivered", plan.delivered_day),
            ("cancelled", plan.cancelled_day),
            ("returned", plan.returned_day),
        ):
            idx = np.flatnonzero(when == day)
            if idx.size:
                salt = {"shipped": 51, "delivered": 52, "cancelled": 53, "returned": 54}[change]
                updated_at = day_start + _seconds_in_day(plan.order_ids[idx], salt).astype(
                    "timedelta64[s]"
                )
                order_parts.append(
                    {
                        "idx": idx,
                        "status": np.full(idx.size, change),
                        "updated_at": updated_at,
                        "plan": plan,
                        "ordered_at": ordered_at[idx],
                    }
                )
                if change in ("cancelled", "returned"):
                    refunded = idx[plan.pay_kind[idx] != 2]
                    seq = np.where(plan.pay_kind[refunded] == 1, 2, 1)
                    payment_parts.append(
                        {
                            "idx": refunded,
                            "seq": seq,
                            "status": np.full(refunded.size, "refunded"),
                            "plan": plan,
                            "totals": totals,
                            "origin_start": origin_start,
                        }
                    )

    orders = pa.concat_tables([_orders_table(part) for part in order_parts])
    payments = pa.concat_tables([_payments_table(part) for part in payment_parts])
    assert items is not None
    return orders, items, payments


def _orders_table(part: dict[str, Any]) -> pa.Table:
    plan: _OrderPlan = part["plan"]
    idx = part["idx"]
    return pa.table(
        {
            "order_id": pa.array(plan.order_ids[idx], pa.int64()),
            "customer_id": pa.array(plan.customer_ids[idx], pa.int64()),
            "order_status": pa.array(part["status"]),
            "currency": _labels(CURRENCIES, plan.currency_idx[idx]),
            "ordered_at": pa.array(part["ordered_at"].astype("datetime64[us]")),
            "updated_at": pa.array(part["updated_at"].astype("datetime64[us]")),
        }
    )


def _payments_table(part: dict[str, Any]) -> pa.Table:
    plan: _OrderPlan = part["plan"]
    idx = part["idx"]
    created = part["origin_start"] + (plan.ordered_seconds[idx] + 60 * part["seq"]).astype(
        "timedelta64[s]"
    )
    return pa.table(
        {
            "payment_id": pa.array(plan.order_ids[idx] * 10 + part["seq"], pa.int64()),
            "order_id": pa.array(plan.order_ids[idx], pa.int64()),
            "payment_method": _labels(PAYMENT_METHODS, plan.pay_method_idx[idx]),
            "payment_status": pa.array(part["status"]),
            "amount_cents": pa.array(part["totals"][idx], pa.int64()),
            "currency": _labels(CURRENCIES, plan.currency_idx[idx]),
            "created_at": pa.array(created.astype("datetime64[us]")),
        }
    )


@functools.lru_cache(maxsize=MAX_EVENT_LATENESS_DAYS + 3)
def _session_events(spec: LandingSpec, origin: int) -> dict[str, np.ndarray]:
    """All events that happened on day `origin`, with the load day each copy arrives in."""
    rng = _rng(spec, 60, origin)
    n_orders = int(orders_per_day(spec, origin)[origin])
    n_sessions = max(1, round(n_orders * SESSIONS_PER_ORDER))
    customers_known = int(new_customers_per_day(spec, origin).sum())
    events_per_session = 1 + rng.poisson(4.0, n_sessions)
    is_purchase_session = np.arange(n_sessions) < n_orders
    session_customer = np.where(
        rng.random(n_sessions) < 0.65, rng.integers(1, customers_known + 1, n_sessions), 0
    )
    session_customer = np.where(
        is_purchase_session, np.maximum(session_customer, 1), session_customer
    )
    session_start = rng.integers(0, ACTIVITY_SECONDS - 1800, n_sessions)
    session_idx = np.repeat(np.arange(n_sessions), events_per_session)
    n = session_idx.size
    position = np.arange(n) - np.repeat(
        np.cumsum(events_per_session) - events_per_session, events_per_session
    )
    remaining = events_per_session[session_idx] - position - 1
    event_type = (rng.random(n) < 0.15).astype(np.int64)  # codes into EVENT_TYPES
    purchase = is_purchase_session[session_idx]
    event_type[purchase & (remaining == 1)] = 2
    event_type[purchase & (remaining == 0)] = 3
    seconds = session_start[session_idx] + position * 60 + rng.integers(0, 60, n)
    lateness = np.where(
        rng.random(n) < LATE_EVENT_RATE, rng.integers(1, MAX_EVENT_LATENESS_DAYS + 1, n), 0
    )
    duplicate = rng.random(n) < DUPLICATE_EVENT_RATE
    duplicate_delay = rng.integers(0, 2, n)
    return {
        "seq": np.arange(n, dtype=np.int64),
        "session_seq": session_idx.astype(np.int64),
        "customer_id": session_customer[session_idx],
        "event_type": event_type,
        "seconds": seconds,
        "page": rng.integers(0, PAGES.size, n),
        "arrival": origin + lateness,
        "duplicate": duplicate,
        "duplicate_arrival": origin + lateness + duplicate_delay,
    }


def events_for_day(spec: LandingSpec, day: int) -> pa.Table:
    tables = []
    for origin in range(max(0, day - MAX_EVENT_LATENESS_DAYS - 1), day + 1):
        ev = _session_events(spec, origin)
        first = ev["arrival"] == day
        again = ev["duplicate"] & (ev["duplicate_arrival"] == day)
        idx = np.concatenate([np.flatnonzero(first), np.flatnonzero(again)])
        if idx.size == 0:
            continue
        origin_date = spec.start_date + dt.timedelta(days=origin)
        prefix = origin_date.strftime("%Y%m%d")
        customer = ev["customer_id"][idx]
        tables.append(
            pa.table(
                {
                    "event_id": _prefixed(f"evt-{prefix}-", ev["seq"][idx]),
                    "session_id": _prefixed(f"ses-{prefix}-", ev["session_seq"][idx]),
                    "customer_id": pa.array(customer, pa.int64(), mask=customer == 0),
                    "event_type": _labels(EVENT_TYPES, ev["event_type"][idx]),
                    "event_at": _timestamps(origin_date, ev["seconds"][idx]),
                    "page": _labels(PAGES, ev["page"][idx]),
                }
            )
        )
    return pa.concat_tables(tables)


# ---------------------------------------------------------------------------------------------
# Writing


def _write(
    root: Path, entity: str, load_date: dt.date, table: pa.Table, rows_per_file: int | None = None
) -> int:
    loaded_at = np.datetime64(load_date.isoformat(), "s") + LOAD_OFFSET
    table = table.append_column(
        "_loaded_at", pa.array(np.full(table.num_rows, loaded_at.astype("datetime64[us]")))
    )
    folder = root / entity / f"load_date={load_date.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("part-*.parquet"):
        stale.unlink()
    step = rows_per_file or max(1, table.num_rows)
    for part, offset in enumerate(range(0, max(1, table.num_rows), step)):
        pq.write_table(
            table.slice(offset, step), folder / f"part-{part:04d}.parquet", compression="zstd"
        )
    return int(table.num_rows)


def write_day(root: Path, spec: LandingSpec, day: int) -> dict[str, int]:
    """Write every entity's load for day index `day`; returns rows written per entity."""
    load_date = spec.start_date + dt.timedelta(days=day)
    orders, items, payments = orders_items_payments_for_day(spec, day)
    return {
        "customers": _write(root, "customers", load_date, customers_for_day(spec, day)),
        "products": _write(root, "products", load_date, products_for_day(spec, day)),
        "orders": _write(root, "orders", load_date, orders),
        "order_items": _write(root, "order_items", load_date, items),
        "payments": _write(root, "payments", load_date, payments),
        "events": _write(
            root, "events", load_date, events_for_day(spec, day), EVENTS_PER_PART_FILE
        ),
    }


def generate(root: Path, seed: int, scale: float, days: int, end_date: dt.date) -> dict[str, int]:
    """Write a fresh landing zone of `days` daily loads ending at `end_date`."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if not 0 < scale <= 100:
        raise ValueError(f"scale must be in (0, 100], got {scale}")
    spec = LandingSpec(
        seed=seed, scale=scale, start_date=end_date - dt.timedelta(days=days - 1), days=days
    )
    root.mkdir(parents=True, exist_ok=True)
    totals = dict.fromkeys(ENTITIES, 0)
    for day in range(days):
        for entity, rows in write_day(root, spec, day).items():
            totals[entity] += rows
    (root / MANIFEST).write_text(spec.to_json())
    return totals


def append_day(root: Path) -> tuple[dt.date, dict[str, int]]:
    """Add the next daily load to an existing landing zone; returns its load date and rows."""
    manifest = root / MANIFEST
    if not manifest.exists():
        raise FileNotFoundError(
            f"{manifest} not found: run `pipeline generate` before --append-day"
        )
    spec = LandingSpec.from_json(manifest.read_text())
    rows = write_day(root, spec, spec.days)
    grown = LandingSpec(
        seed=spec.seed, scale=spec.scale, start_date=spec.start_date, days=spec.days + 1
    )
    manifest.write_text(grown.to_json())
    return grown.end_date, rows
