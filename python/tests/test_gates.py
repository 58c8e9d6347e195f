"""Gate arithmetic, with cases computed by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.gates import (
    FreshnessCheck,
    VolumePolicy,
    check_volume,
    freshness_checks,
    history_range,
    judge_volumes,
    median_absolute_deviation,
    new_load_since,
)

DAY = dt.date(2026, 1, 10)


def test_mad_of_a_small_sample() -> None:
    # median 100; deviations 0, 2, 4, 4, 20 -> median deviation 4
    assert median_absolute_deviation([100, 98, 104, 96, 120]) == 4


def test_mad_ignores_one_wild_value() -> None:
    # median 10; deviations 0, 1, 1, 990 -> median of [0, 1, 1, 990] = 1
    assert median_absolute_deviation([10, 9, 11, 1000]) == 1


def test_history_range_uses_k_times_mad_when_it_is_the_widest() -> None:
    policy = VolumePolicy(k=3, min_history=3, min_tolerance_ratio=0.0, min_tolerance_rows=0)
    learned = history_range([1000, 900, 1100, 1000, 950], policy)
    assert learned is not None
    low, high, basis = learned
    # median 1000; deviations 0, 100, 100, 0, 50 -> MAD 50; tolerance 150
    assert (low, high) == (850, 1150)
    assert "median 1,000" in basis and "last 5 loads" in basis


def test_history_range_floors_a_steady_series() -> None:
    policy = VolumePolicy(k=5, min_history=3, min_tolerance_ratio=0.2, min_tolerance_rows=10)
    # MAD 0 -> tolerance is 20% of 500 = 100
    assert (history_range([500, 500, 500], policy) or ())[:2] == (400, 600)
    # tiny entity: 20% of 2 = 0.4 < 10 rows -> tolerance 10
    assert (history_range([2, 2, 2], policy) or ())[:2] == (-8, 12)


def test_history_range_only_reads_the_window_and_needs_enough_history() -> None:
    policy = VolumePolicy(window=3, min_history=3, min_tolerance_ratio=0, min_tolerance_rows=0, k=1)
    # newest first: only 10, 12, 14 count -> median 12, MAD 2
    assert (history_range([10, 12, 14, 1_000_000], policy) or ())[:2] == (10, 14)
    assert history_range([10, 12], policy) is None


def test_five_percent_of_a_normal_load_is_an_anomaly() -> None:
    # median 1000; deviations 0, 20, 20, 10, 10 -> MAD 10; 5 x MAD = 50 < 20% x 1000 = 200
    verdict = check_volume(
        "stg_landing__orders", DAY, 50, [1000, 980, 1020, 1010, 990], VolumePolicy()
    )
    assert not verdict.passed
    assert (verdict.low, verdict.high) == (800, 1200)
    assert "stg_landing__orders" in verdict.message() and "50 rows" in verdict.message()


def test_an_ordinary_day_passes_and_an_exploded_batch_does_not() -> None:
    past = [1000, 980, 1020, 1010, 990, 1005]
    assert check_volume("s", DAY, 1070, past, VolumePolicy()).passed
    assert not check_volume("s", DAY, 10_000, past, VolumePolicy()).passed


def test_declared_bounds_apply_without_history() -> None:
    policy = VolumePolicy(min_rows=100, max_rows=200)
    assert check_volume("s", DAY, 150, [], policy).passed
    empty = check_volume("s", DAY, 0, [], policy)
    assert not empty.passed and "history too short: 0 of 5" in empty.basis
    assert not check_volume("s", DAY, 201, [], policy).passed


def test_declared_bounds_and_history_both_apply() -> None:
    policy = VolumePolicy(max_rows=1040, min_history=3)
    verdict = check_volume("s", DAY, 1100, [1000, 1000, 1000], policy)
    assert not verdict.passed and verdict.high == 1040


def test_bad_volume_meta_names_the_model() -> None:
    with pytest.raises(ValueError, match=r"stg_x: invalid meta\.volume"):
        VolumePolicy.from_meta("stg_x", {"volume": {"k": -1}})
    with pytest.raises(ValueError, match="stg_x"):
        VolumePolicy.from_meta("stg_x", {"volume": {"max_row": 5}})
    assert VolumePolicy.from_meta("stg_x", {}).min_rows == 1


def test_freshness_checks_read_sources_json() -> None:
    sources_json = {
        "results": [
            {
                "unique_id": "source.commerce.landing.orders",
                "status": "error",
                "max_loaded_at": "2026-01-01T23:30:00",
                "max_loaded_at_time_ago_in_s": 72 * 3600.0,
                "criteria": {
                    "warn_after": {"count": 30, "period": "hour"},
                    "error_after": {"count": 2, "period": "day"},
                },
            },
            {
                "unique_id": "source.commerce.landing.events",
                "status": "pass",
                "max_loaded_at": "2026-01-03T23:30:00",
                "max_loaded_at_time_ago_in_s": 3600.0,
                "criteria": {},
            },
        ]
    }
    events, orders = freshness_checks(sources_json)
    assert (events.source, events.is_error) == ("landing.events", False)
    assert orders.is_error and orders.error_after_seconds == 48 * 3600
    assert orders.message() == (
        "freshness error: landing.orders newest _loaded_at 2026-01-01T23:30:00, "
        "age 72.0h (limit 48h)"
    )


def test_a_runtime_error_is_not_staleness() -> None:
    check = FreshnessCheck(
        "landing.orders", "runtime error", None, None, None, None, error="bad parquet"
    )
    assert check.is_error and "could not be measured" in check.message()


def test_a_newest_load_after_the_clock_is_a_failure_not_a_fresh_source() -> None:
    sources_json = {
        "results": [
            {
                "unique_id": "source.commerce.landing.events",
                "status": "pass",
                "max_loaded_at": "2099-01-01T00:00:00",
                "max_loaded_at_time_ago_in_s": -7200.0,
                "criteria": {},
            },
            {
                "unique_id": "source.commerce.landing.orders",
                "status": "pass",
                "max_loaded_at": "2026-01-01T00:05:00",
                "max_loaded_at_time_ago_in_s": -300.0,
                "criteria": {},
            },
        ]
    }
    events, orders = freshness_checks(sources_json, future_tolerance_seconds=900)
    assert events.status == "future" and events.is_error
    assert "2.0h after the run's clock" in events.message()
    assert orders.status == "pass", "five minutes of clock skew is within the tolerance"


def test_an_accepted_anomaly_passes_and_says_who_accepted_it() -> None:
    past = [1000, 980, 1020, 1010, 990]
    refused = check_volume("s", DAY, 1500, past, VolumePolicy())
    accepted = check_volume(
        "s", DAY, 1500, past, VolumePolicy(), accepted="ana at 2026-01-10: sale"
    )
    assert not refused.passed and accepted.passed
    assert (
        accepted.message().startswith("volume accepted:")
        and "ana at 2026-01-10: sale" in accepted.basis
    )
    assert (
        check_volume("s", DAY, 1000, past, VolumePolicy(), accepted="x")
        .message()
        .startswith("volume ok:")
    )


def test_judge_volumes_sees_a_missing_batch_as_zero_rows_and_skips_judged_loads() -> None:
    day1, day2 = dt.date(2026, 1, 11), dt.date(2026, 1, 12)
    policy = VolumePolicy(min_rows=1)
    past = {"orders": [(DAY, 100)], "events": [(DAY, 900)]}
    since = {
        "orders": new_load_since(past["orders"], None),
        "events": new_load_since(past["events"], None),
    }
    assert since == {"orders": DAY, "events": DAY}
    # events brought rows on both new days, orders only on the first: its second day is 0 rows.
    volumes = {"orders": {DAY: 100, day1: 110}, "events": {day1: 950, day2: 940}}
    verdicts = judge_volumes({"orders": policy, "events": policy}, volumes, past, since, {})
    assert [(v.subject, v.load_date, v.observed, v.passed) for v in verdicts] == [
        ("events", day1, 950, True),
        ("events", day2, 940, True),
        ("orders", day1, 110, True),
        ("orders", day2, 0, False),
    ]


def test_a_backfill_judges_its_window_from_the_day_before_it() -> None:
    assert new_load_since([(DAY, 5)], dt.date(2026, 1, 3)) == dt.date(2026, 1, 2)
    assert new_load_since([], None) is None
