"""What `pipeline maintain` keeps, without Spark: the cutoffs follow the kept publishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_settings
from pipeline.maintain import MaintainError, expiry_cutoffs, kept_snapshots, run_maintenance

NOW = 10_000


def test_kept_snapshots_collects_every_table_of_every_kept_publish() -> None:
    published = [
        {"engine": "iceberg", "snapshots": {"marts.a": 3, "marts.b": 7}},
        {"engine": "iceberg", "snapshots": {"marts.a": 2, "marts.c": None}},
    ]
    assert kept_snapshots(published) == {"marts.a": {2, 3}, "marts.b": {7}}


def test_the_cutoff_is_the_oldest_kept_snapshot_of_each_table() -> None:
    timestamps = {
        "marts.a": {1: 100, 2: 200, 3: 300, 4: 400},
        "marts.b": {7: 700, 8: 800},
        "marts.new": {9: 900},  # no kept publish names it: only its refs stay
    }
    kept = {"marts.a": {3, 2}, "marts.b": {8}, "marts.gone": {5}}
    assert expiry_cutoffs(kept, timestamps, NOW) == {
        "marts.a": 200,
        "marts.b": 800,
        "marts.new": NOW,
    }


def test_a_kept_snapshot_already_expired_does_not_hold_the_rest() -> None:
    """A publish naming a snapshot that no longer exists keeps nothing older alive."""
    assert expiry_cutoffs({"marts.a": {1, 3}}, {"marts.a": {2: 200, 3: 300}}, NOW) == {
        "marts.a": 300
    }


def test_maintain_refuses_duckdb(tmp_path: Path) -> None:
    with pytest.raises(MaintainError, match="spark_local target, not duckdb"):
        run_maintenance(make_settings(tmp_path, tmp_path / "landing"), [])
