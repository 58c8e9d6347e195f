"""Gate arithmetic, with cases computed by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.gates import (
    FreshnessCheck,
    LoadNullCounts,
    NullRatePolicy,
    VolumePolicy,
    check_null_rate,
    check_volume,
    freshness_checks,
    history_range,
    judge_null_rates,
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


def _load(rows: int, **nulls: int) -> LoadNullCounts:
    return LoadNullCounts(rows, nulls)


def test_a_column_always_complete_tolerates_a_stray_null_but_not_six_percent() -> None:
    policy = NullRatePolicy()  # k 5, min_history 5, min_tolerance 5%
    history = [0.0] * 6  # MAD 0: the band is the absolute floor, [0%, 5%]
    stray = check_null_rate("stg", "email", DAY, _load(1000, email=1), history, policy)
    assert stray.passed and stray.rate == 0.001 and (stray.low, stray.high) == (0.0, 0.05)
    many = check_null_rate("stg", "email", DAY, _load(1000, email=60), history, policy)
    assert not many.passed and many.broken == ("drift band",)
    assert "ANOMALY: stg.email" in many.message() and "6.0% null (60 of 1,000 rows)" in (
        many.message()
    )


def test_the_drift_band_is_k_times_mad_around_the_median() -> None:
    policy = NullRatePolicy(k=5, min_tolerance=0.02)
    # median 0.30; deviations 0, 0.02, 0.02, 0.01, 0.01 -> MAD 0.01; tolerance 5 x 0.01 = 0.05
    history = [0.30, 0.32, 0.28, 0.31, 0.29]
    usual = check_null_rate("stg", "c", DAY, _load(1000, c=330), history, policy)
    assert usual.passed and usual.broken == ()
    assert usual.low == pytest.approx(0.25) and usual.high == pytest.approx(0.35)
    sixty = check_null_rate("stg", "c", DAY, _load(1000, c=600), history, policy)
    assert not sixty.passed and sixty.broken == ("drift band",)
    assert "median 30.0%" in sixty.basis and "last 5 loads" in sixty.basis
    # a column that suddenly fills up has left its habit too
    full = check_null_rate("stg", "c", DAY, _load(1000, c=0), history, policy)
    assert not full.passed


def test_drift_waits_for_enough_history_and_reads_only_the_window() -> None:
    policy = NullRatePolicy(window=3, min_history=3)
    short = check_null_rate("stg", "c", DAY, _load(10, c=9), [0.0, 0.0], policy)
    assert short.passed and "history 2 of 3 loads" in short.basis and short.high is None
    # only the newest 3 rates count: median 0.9, MAD 0 -> band [0.85, 0.95]
    windowed = check_null_rate("stg", "c", DAY, _load(10, c=9), [0.9, 0.9, 0.9, 0.0, 0.0], policy)
    assert windowed.passed and "last 3 loads" in windowed.basis


def test_a_declared_max_null_rate_applies_from_the_first_load() -> None:
    policy = NullRatePolicy(max_rates={"last_name": 0.02})
    at_limit = check_null_rate("stg", "last_name", DAY, _load(100, last_name=2), [], policy)
    assert at_limit.passed and at_limit.high == 0.02
    over = check_null_rate("stg", "last_name", DAY, _load(100, last_name=3), [], policy)
    assert not over.passed and over.broken == ("max_null_rate",)
    assert "breaks max_null_rate" in over.message() and "declared max_null_rate 2.0%" in (
        over.message()
    )


def test_both_rules_are_named_when_both_break_and_the_tighter_bound_is_shown() -> None:
    policy = NullRatePolicy(max_rates={"c": 0.1})
    # history all 0.0: band [0, 0.05]; declared 0.1 -> the expected high is 0.05
    verdict = check_null_rate("stg", "c", DAY, _load(100, c=50), [0.0] * 5, policy)
    assert verdict.broken == ("max_null_rate", "drift band") and verdict.high == 0.05
    assert "breaks max_null_rate and drift band" in verdict.message()


def test_an_accepted_load_passes_its_null_rates_and_says_who_accepted() -> None:
    policy = NullRatePolicy(max_rates={"c": 0.0})
    verdict = check_null_rate("stg", "c", DAY, _load(10, c=5), [], policy, "ana: migration")
    assert verdict.passed and verdict.broken == ("max_null_rate",)
    assert "null rate accepted" in verdict.message() and "ana: migration" in verdict.message()


def test_judge_null_rates_baselines_each_load_on_the_loads_before_it() -> None:
    policy = NullRatePolicy(min_history=2, min_tolerance=0.0)
    day1, day2 = DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    past = {
        # newest first; a rate recorded for day2 by an earlier run must not baseline day1
        ("stg", "c"): [(day2, 0.9), (DAY, 0.5), (DAY - dt.timedelta(days=1), 0.5)],
    }
    counts = {"stg": {day2: _load(10, c=5, d=0), day1: _load(4, c=2, d=0)}}
    verdicts = judge_null_rates({"stg": policy}, counts, past, {("stg", day2): "ana: ok"})
    assert [(v.load_date, v.column) for v in verdicts] == [
        (day1, "c"),
        (day1, "d"),
        (day2, "c"),
        (day2, "d"),
    ]
    c1, d1, c2, _ = verdicts
    # day1: baseline 0.5, 0.5 -> band [0.5, 0.5]; 2 of 4 = 0.5 passes
    assert c1.passed and (c1.low, c1.high) == (0.5, 0.5)
    # d has no history yet: not judged by drift
    assert d1.passed and "history 0 of 2" in d1.basis
    # day2: baseline 0.5, 0.5 (the 0.9 of day2 itself is not earlier); 0.5 passes
    assert c2.passed and c2.broken == ()


def test_bad_null_rate_meta_names_the_model_and_column() -> None:
    with pytest.raises(ValueError, match=r"stg\.email: meta\.max_null_rate"):
        NullRatePolicy.from_meta("stg", {}, {"email": {"max_null_rate": 1.5}})
    with pytest.raises(ValueError, match=r"stg\.email: meta\.max_null_rate"):
        NullRatePolicy.from_meta("stg", {}, {"email": {"max_null_rate": True}})
    with pytest.raises(ValueError, match=r"stg: invalid meta\.null_rate"):
        NullRatePolicy.from_meta("stg", {"null_rate": {"k": 0}}, {})
    policy = NullRatePolicy.from_meta(
        "stg", {"null_rate": {"window": 7}}, {"id": {"max_null_rate": 0}, "name": {}}
    )
    assert policy.max_rates == {"id": 0.0} and policy.window == 7
