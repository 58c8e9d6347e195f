"""cron and systemd files for the daily run: syntax, and the retry-later wrapper's behaviour."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from cronsyntax import job_lines, parse_line
from pipeline import PROJECT_DIR

ORCHESTRATION = PROJECT_DIR / "orchestration"
RETRY_LATER = ORCHESTRATION / "bin" / "retry-later"
SERVICE = ORCHESTRATION / "systemd" / "commerce-warehouse.service"
TIMER = ORCHESTRATION / "systemd" / "commerce-warehouse.timer"


def test_cron_file_parses_and_runs_the_pipeline_through_the_wrapper() -> None:
    jobs = job_lines((ORCHESTRATION / "cron" / "commerce-warehouse.cron").read_text())
    assert len(jobs) == 1
    (minute, hour, dom, month, _dow), command = parse_line(jobs[0])
    assert (minute, hour) == ({30}, {0}) and len(dom) == 31 and len(month) == 12
    assert "orchestration/bin/retry-later .venv/bin/pipeline run" in command
    assert "/srv" not in command


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_systemd_units_have_the_keys_that_make_retry_later_work() -> None:
    service, timer = _unit(SERVICE), _unit(TIMER)
    assert service["Service"]["RestartForceExitStatus"].split() == ["3", "5"]
    assert service["Service"]["Type"] != "oneshot"  # systemd refuses RestartForceExitStatus there
    assert "pipeline run" in service["Service"]["ExecStart"]
    assert int(service["Unit"]["StartLimitBurst"]) >= 1
    assert "RuntimeMaxSec" in service["Service"]
    assert timer["Timer"]["OnCalendar"].endswith("00:30:00 UTC")
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_units() -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(SERVICE), str(TIMER)],
        capture_output=True,
        text=True,
        cwd=SERVICE.parent,
    )
    # verify warns (exit 0) about a missing User= or EnvironmentFile on this machine; errors exit 1.
    assert result.returncode == 0, result.stderr


def _script(tmp_path: Path, codes: list[int]) -> tuple[Path, Path]:
    """A command that exits with `codes` in turn and counts its calls in a file."""
    calls = tmp_path / "calls"
    script = tmp_path / "fake-pipeline"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f"codes=({' '.join(map(str, codes))})\n"
        f'n=$(cat "{calls}" 2>/dev/null || echo 0); echo $((n + 1)) > "{calls}"\n'
        'exit "${codes[$n]}"\n'
    )
    script.chmod(0o755)
    return script, calls


@pytest.mark.parametrize(
    "codes, attempts, expected_exit, expected_calls",
    [
        ([3, 5, 0], 7, 0, 3),  # stale, then locked, then success
        ([3, 3, 3, 3], 3, 3, 3),  # gives up after the cap with the last code
        ([4, 0], 7, 4, 1),  # volume anomaly: no retry
        ([1, 0], 7, 1, 1),  # dbt error: no retry
        ([0], 7, 0, 1),
    ],
)
def test_retry_later_retries_only_3_and_5(
    tmp_path: Path, codes: list[int], attempts: int, expected_exit: int, expected_calls: int
) -> None:
    script, calls = _script(tmp_path, codes)
    env = {"PATH": "/usr/bin:/bin", "RETRY_ATTEMPTS": str(attempts), "RETRY_DELAY": "0"}
    result = subprocess.run(
        [str(RETRY_LATER), str(script)], env=env, capture_output=True, text=True
    )
    assert (result.returncode, int(calls.read_text())) == (expected_exit, expected_calls), (
        result.stderr
    )
