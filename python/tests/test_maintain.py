"""What `pipeline maintain` keeps, without Spark: the cutoffs follow the kept publishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_settings, write_config
from pipeline.cli import app
from pipeline.dbt import invoke
from pipeline.history import History
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


def test_maintain_refuses_duckdb_with_exit_2_and_says_so_in_the_history(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, tmp_path / "landing")
    with pytest.raises(MaintainError, match=r"Iceberg targets \(spark_local, spark\), not duckdb"):
        run_maintenance(settings, [])
    config = write_config(tmp_path / "pipeline.yml", settings)
    result = CliRunner().invoke(app, ["maintain", "--config", str(config)])
    assert result.exit_code == 2
    assert "not duckdb" in result.stderr
    recorded = History(settings.history_path).runs(1)[0]
    assert (recorded.arguments, recorded.status, recorded.exit_code) == ("maintain", "usage", 2)
    assert recorded.message is not None and "not duckdb" in recorded.message


def test_the_warehouse_schemas_are_those_dbt_builds_tables_in(tmp_path: Path) -> None:
    """Publish and maintenance touch only Settings.warehouse_schemas: it must name every
    schema the project materialises a table in (else a run would write that table outside
    its branch), and nothing else (else a shared catalog's other tables would be touched)."""
    settings = make_settings(tmp_path, tmp_path / "landing")
    listed = invoke(
        settings,
        [
            "ls",
            "--resource-type",
            "model",
            "--resource-type",
            "seed",
            "--resource-type",
            "snapshot",
            "--output",
            "json",
            "--output-keys",
            "schema",
            "config",
        ],
        target_path=tmp_path / "target",
        quiet=True,
    ).listed
    nodes = [json.loads(line) for line in listed]
    assert len(nodes) > 20
    schemas = {
        node["schema"]
        for node in nodes
        if node["config"]["materialized"] not in {"view", "ephemeral"}
    }
    assert schemas == set(settings.warehouse_schemas)
