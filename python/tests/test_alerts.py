"""Prometheus alert rules: valid, behaving as their unit tests say, on series the runner writes."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline import PROJECT_DIR
from pipeline.gates import FreshnessCheck, VolumeVerdict
from pipeline.observability import RunSummary, write_metrics

RULES = PROJECT_DIR / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = PROJECT_DIR / "ops" / "prometheus" / "alerts_test.yml"
# Promised by the lead for observability.py; until it lands the runner does not write it.
PENDING_SERIES = {"commerce_source_freshness_error_after_seconds"}

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed (.ci/run installs Debian's prometheus package)"
)


@needs_promtool
@pytest.mark.parametrize(
    "command",
    [["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]],
    ids=["check", "test"],
)
def test_promtool_accepts_the_rules(command: list[str]) -> None:
    result = subprocess.run(
        [str(promtool), *command], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_read_only_series_the_runner_writes(tmp_path: Path) -> None:
    """A renamed metric would silence an alert without an error: compare with a real write."""
    now = dt.datetime(2026, 11, 22, 1, 0, tzinfo=dt.UTC)
    summary = RunSummary(
        run_id="r",
        target="duckdb",
        started_at=now,
        ended_at=now,
        exit_code=4,
        status="volume",
        freshness=[FreshnessCheck("landing.orders", "pass", None, 3600.0, None, 194400.0)],
        volume=[VolumeVerdict("stg_landing__orders", now.date(), 5, 900, 1300, "test", False)],
    )
    metrics = tmp_path / "commerce.prom"
    write_metrics(metrics, summary, last_success=now.replace(tzinfo=None))
    written = {family.name for family in text_string_to_metric_families(metrics.read_text())}

    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    used = {name for rule in rules for name in re.findall(r"\bcommerce_[a-z_]+", rule["expr"])}
    assert {
        "commerce_run_exit_code",
        "commerce_gate_passed",
        "commerce_last_success_timestamp_seconds",
        "commerce_source_freshness_age_seconds",
    } <= used
    assert used - written <= PENDING_SERIES, (
        f"rules read series nobody writes: {sorted(used - written - PENDING_SERIES)}"
    )
