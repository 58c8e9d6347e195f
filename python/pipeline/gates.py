"""Freshness and volume gates: pure functions over numbers, so they are tested without dbt.

A gate's verdict carries everything a person needs to act on it: the subject, the observed
value, the range it had to fall in, and how that range was computed.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class VolumePolicy(BaseModel):
    """Volume settings of one model, from `meta: {volume: {...}}` in its yml.

    Bounds are per daily load. The history rule flags a load outside
    median ± max(k * MAD, min_tolerance_ratio * median, min_tolerance_rows) of the last
    `window` loads of successful runs, once at least `min_history` such loads exist. The
    tolerance floors keep a very steady (MAD near 0) or tiny entity from raising false alarms.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rows: int | None = Field(default=1, ge=0)
    max_rows: int | None = Field(default=None, ge=0)
    k: float = Field(default=5.0, gt=0)
    window: int = Field(default=14, ge=1)
    min_history: int = Field(default=5, ge=1)
    min_tolerance_ratio: float = Field(default=0.2, ge=0)
    min_tolerance_rows: int = Field(default=10, ge=0)

    @classmethod
    def from_meta(cls, subject: str, meta: Mapping[str, Any] | None) -> VolumePolicy:
        raw = (meta or {}).get("volume") or {}
        try:
            return cls(**raw)
        except (ValidationError, TypeError) as error:
            raise ValueError(f"{subject}: invalid meta.volume {raw!r}: {error}") from None


@dataclass(frozen=True)
class VolumeVerdict:
    subject: str
    load_date: dt.date
    observed: int
    low: float | None
    high: float | None
    basis: str
    passed: bool

    def message(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:,.0f}"
        high = "+inf" if self.high is None else f"{self.high:,.0f}"
        verdict = ("accepted" if "accepted:" in self.basis else "ok") if self.passed else "ANOMALY"
        return (
            f"volume {verdict}: {self.subject} load {self.load_date.isoformat()} brought "
            f"{self.observed:,} rows; expected [{low}, {high}] ({self.basis})"
        )


def median_absolute_deviation(values: Sequence[float]) -> float:
    """MAD: the median of absolute deviations from the median (robust to one bad day)."""
    center = statistics.median(values)
    return statistics.median(abs(value - center) for value in values)


def history_range(history: Sequence[int], policy: VolumePolicy) -> tuple[float, float, str] | None:
    """Expected range from past loads, or None while the history is too short to judge."""
    recent = list(history)[: policy.window]
    if len(recent) < policy.min_history:
        return None
    center = statistics.median(recent)
    mad = median_absolute_deviation(recent)
    tolerance = max(
        policy.k * mad, policy.min_tolerance_ratio * center, float(policy.min_tolerance_rows)
    )
    basis = (
        f"median {center:,.0f} ± max({policy.k:g}×MAD {mad:,.1f}, "
        f"{policy.min_tolerance_ratio:.0%}, "
        f"{policy.min_tolerance_rows}) of the last {len(recent)} loads"
    )
    return center - tolerance, center + tolerance, basis


def check_volume(
    subject: str,
    load_date: dt.date,
    observed: int,
    history: Sequence[int],
    policy: VolumePolicy,
    accepted: str | None = None,
) -> VolumeVerdict:
    """Judge one load against declared bounds and, with enough history, the robust range.

    `accepted` is an operator's recorded acceptance of this load (`pipeline accept`): a real
    anomaly (a sale) then passes, says so, and joins the baseline once the run succeeds.
    """
    low: float | None = policy.min_rows
    high: float | None = policy.max_rows
    bases = [
        f"declared min_rows {policy.min_rows}" if policy.min_rows is not None else "",
        f"declared max_rows {policy.max_rows}" if policy.max_rows is not None else "",
    ]
    learned = history_range(history, policy)
    if learned is None:
        bases.append(f"history too short: {len(history)} of {policy.min_history} loads")
    else:
        low = learned[0] if low is None else max(low, learned[0])
        high = learned[1] if high is None else min(high, learned[1])
        bases.append(learned[2])
    passed = (low is None or observed >= low) and (high is None or observed <= high)
    if accepted and not passed:
        passed = True
        bases.append(f"outside the range but accepted: {accepted}")
    basis = "; ".join(part for part in bases if part)
    return VolumeVerdict(subject, load_date, observed, low, high, basis, passed)


@dataclass(frozen=True)
class FreshnessCheck:
    source: str
    status: str  # pass, warn, error, runtime error, future
    max_loaded_at: str | None
    age_seconds: float | None
    warn_after_seconds: float | None
    error_after_seconds: float | None
    error: str | None = None

    @property
    def is_error(self) -> bool:
        return self.status in {"error", "runtime error", "future"}

    def message(self) -> str:
        if self.status == "runtime error":
            return f"freshness could not be measured for {self.source}: {self.error}"
        if self.status == "future":
            age = 0.0 if self.age_seconds is None else self.age_seconds
            return (
                f"freshness future: {self.source} newest _loaded_at {self.max_loaded_at} is "
                f"{-age / 3600:.1f}h after the run's clock: a load from the future cannot be "
                "trusted"
            )
        shown = "unknown" if self.age_seconds is None else f"{self.age_seconds / 3600:.1f}h"
        limit = self.error_after_seconds if self.is_error else self.warn_after_seconds
        bound = "" if limit is None else f" (limit {limit / 3600:.0f}h)"
        return (
            f"freshness {self.status}: {self.source} newest _loaded_at {self.max_loaded_at}, "
            f"age {shown}{bound}"
        )


_PERIOD_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def _threshold(criteria: Mapping[str, Any], key: str) -> float | None:
    spec = criteria.get(key) or {}
    if not spec.get("count") or not spec.get("period"):
        return None
    return float(spec["count"]) * _PERIOD_SECONDS[spec["period"]]


def freshness_checks(
    sources_json: Mapping[str, Any], future_tolerance_seconds: float = 0.0
) -> list[FreshnessCheck]:
    """Read dbt's sources.json (the artifact of `dbt source freshness`) into checks.

    dbt passes a negative age (a newest `_loaded_at` after the clock) as fresh; here it fails
    as `future`: such a timestamp would freeze every watermark computed from it.
    """
    checks = []
    for result in sources_json.get("results", []):
        source = ".".join(result["unique_id"].split(".")[-2:])
        criteria = result.get("criteria") or {}
        age = result.get("max_loaded_at_time_ago_in_s")
        future = age is not None and age < -future_tolerance_seconds
        checks.append(
            FreshnessCheck(
                source=source,
                status="future" if future else str(result.get("status")),
                max_loaded_at=result.get("max_loaded_at"),
                age_seconds=result.get("max_loaded_at_time_ago_in_s"),
                warn_after_seconds=_threshold(criteria, "warn_after"),
                error_after_seconds=_threshold(criteria, "error_after"),
                error=result.get("error") or result.get("message"),
            )
        )
    return sorted(checks, key=lambda check: check.source)


def new_load_since(
    past: Sequence[tuple[dt.date, int]], backfill_start: dt.date | None
) -> dt.date | None:
    """The load date after which loads are new: a backfill's window, else the newest load a
    successful run has judged (`past` is newest first); None when nothing was judged yet."""
    if backfill_start is not None:
        return backfill_start - dt.timedelta(days=1)
    return past[0][0] if past else None


def judge_volumes(
    policies: Mapping[str, VolumePolicy],
    volumes: Mapping[str, Mapping[dt.date, int]],
    past: Mapping[str, Sequence[tuple[dt.date, int]]],
    since: Mapping[str, dt.date | None],
    accepted: Mapping[tuple[str, dt.date], str],
) -> list[VolumeVerdict]:
    """A verdict per subject and new load date.

    Every entity lands a batch with each load: a subject that brought no rows on a date
    another subject did (an empty file, a missing folder) is judged as 0 rows rather than
    going unseen. `past` holds each subject's judged loads of successful runs, newest first;
    the baseline of a load is the `window` loads before it.
    """
    new_dates = sorted({day for by_date in volumes.values() for day in by_date})
    verdicts = []
    for name, policy in sorted(policies.items()):
        start = since.get(name)
        for load_date in new_dates:
            if start is not None and load_date <= start:
                continue
            earlier = [rows for day, rows in past.get(name, ()) if day < load_date][: policy.window]
            observed = volumes.get(name, {}).get(load_date, 0)
            verdicts.append(
                check_volume(
                    name, load_date, observed, earlier, policy, accepted.get((name, load_date))
                )
            )
    return verdicts


class NullRatePolicy(BaseModel):
    """Null-rate rules of one staging model: per-column ceilings and the drift band.

    `max_rates` comes from `meta: {max_null_rate: ...}` on the model's columns (a key 0, a
    mostly-complete attribute a few percent): a declared fact about the data that applies from
    the first load. The drift band comes from `meta: {null_rate: {...}}` on the model and
    flags a column whose rate leaves median ± max(k * MAD, min_tolerance) of its last `window`
    loads of successful runs, once `min_history` such loads exist. The absolute floor keeps a
    column that is always 0% null (MAD 0) from failing on one stray null.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rates: Mapping[str, float] = Field(default_factory=dict)
    k: float = Field(default=5.0, gt=0)
    window: int = Field(default=14, ge=1)
    min_history: int = Field(default=5, ge=1)
    min_tolerance: float = Field(default=0.05, ge=0, le=1)

    @classmethod
    def from_meta(
        cls,
        subject: str,
        meta: Mapping[str, Any] | None,
        column_metas: Mapping[str, Mapping[str, Any]],
    ) -> NullRatePolicy:
        raw = (meta or {}).get("null_rate") or {}
        max_rates = {
            column: column_meta["max_null_rate"]
            for column, column_meta in column_metas.items()
            if column_meta.get("max_null_rate") is not None
        }
        for column, value in max_rates.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(
                    f"{subject}.{column}: meta.max_null_rate must be a number from 0 to 1, "
                    f"not {value!r}"
                )
        try:
            return cls(max_rates={c: float(v) for c, v in max_rates.items()}, **raw)
        except (ValidationError, TypeError) as error:
            raise ValueError(f"{subject}: invalid meta.null_rate {raw!r}: {error}") from None


@dataclass(frozen=True)
class LoadNullCounts:
    """One load of one model: its rows and, per column, how many of them are null."""

    rows: int
    nulls: Mapping[str, int]


@dataclass(frozen=True)
class NullRateVerdict:
    subject: str
    column: str
    load_date: dt.date
    rows: int
    nulls: int
    low: float | None
    high: float | None
    basis: str
    broken: tuple[str, ...]  # the rules the rate broke: max_null_rate, drift band
    passed: bool

    @property
    def rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    def message(self) -> str:
        low = "0" if self.low is None else f"{self.low:.1%}"
        high = "100%" if self.high is None else f"{self.high:.1%}"
        verdict = ("accepted" if self.broken else "ok") if self.passed else "ANOMALY"
        rules = f" breaks {' and '.join(self.broken)};" if self.broken else ""
        return (
            f"null rate {verdict}: {self.subject}.{self.column} load "
            f"{self.load_date.isoformat()} is {self.rate:.1%} null ({self.nulls:,} of "
            f"{self.rows:,} rows);{rules} expected [{low}, {high}] ({self.basis})"
        )


def check_null_rate(
    subject: str,
    column: str,
    load_date: dt.date,
    counts: LoadNullCounts,
    history: Sequence[float],
    policy: NullRatePolicy,
    accepted: str | None = None,
) -> NullRateVerdict:
    """Judge one column of one load against its declared ceiling and its drift band.

    Both rules apply and the verdict names each one broken, so a person knows whether the
    data broke a declared fact or only moved away from its habit. `history` holds the
    column's past rates, newest first. `accepted` is an operator's acceptance of the load
    (`pipeline accept`, shared with the volume gate: a person vouches for the whole load).
    """
    nulls = counts.nulls.get(column, 0)
    rate = nulls / counts.rows if counts.rows else 0.0
    low: float | None = None
    high: float | None = policy.max_rates.get(column)
    broken = []
    bases = []
    if high is not None:
        bases.append(f"declared max_null_rate {high:.1%}")
        if rate > high:
            broken.append("max_null_rate")
    recent = list(history)[: policy.window]
    if len(recent) < policy.min_history:
        bases.append(f"drift not judged: history {len(recent)} of {policy.min_history} loads")
    else:
        center = statistics.median(recent)
        mad = median_absolute_deviation(recent)
        tolerance = max(policy.k * mad, policy.min_tolerance)
        band_low, band_high = max(0.0, center - tolerance), min(1.0, center + tolerance)
        bases.append(
            f"drift band median {center:.1%} ± max({policy.k:g}×MAD {mad:.1%}, "
            f"{policy.min_tolerance:.1%}) of the last {len(recent)} loads"
        )
        if not band_low <= rate <= band_high:
            broken.append("drift band")
        low = band_low
        high = band_high if high is None else min(high, band_high)
    passed = not broken
    if accepted and broken:
        passed = True
        bases.append(f"accepted: {accepted}")
    return NullRateVerdict(
        subject,
        column,
        load_date,
        counts.rows,
        nulls,
        low,
        high,
        "; ".join(bases),
        tuple(broken),
        passed,
    )


def judge_null_rates(
    policies: Mapping[str, NullRatePolicy],
    counts: Mapping[str, Mapping[dt.date, LoadNullCounts]],
    past: Mapping[tuple[str, str], Sequence[tuple[dt.date, float]]],
    accepted: Mapping[tuple[str, dt.date], str],
) -> list[NullRateVerdict]:
    """A verdict per model, new load and column measured.

    `counts` holds only this run's new loads (see `new_load_since`); `past` holds each
    (model, column)'s rates judged by successful runs, newest first, and the baseline of a
    load is the `window` loads before it, as for the volume gate.
    """
    verdicts = []
    for name, policy in sorted(policies.items()):
        for load_date, load in sorted(counts.get(name, {}).items()):
            for column in sorted(load.nulls):
                earlier = [rate for day, rate in past.get((name, column), ()) if day < load_date]
                verdicts.append(
                    check_null_rate(
                        name,
                        column,
                        load_date,
                        load,
                        earlier,
                        policy,
                        accepted.get((name, load_date)),
                    )
                )
    return verdicts
