"""The run lock without dbt: busy, stale and released."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.lock import LockBusy, RunLock


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.lock"
    with (
        RunLock(path, "first-run"),
        pytest.raises(LockBusy, match=f"first-run \\(pid {os.getpid()}"),
    ):
        RunLock(path, "second-run").__enter__()


def test_a_lock_file_left_by_a_dead_run_is_taken_over_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.lock"
    path.write_text(json.dumps({"run_id": "killed-run", "pid": 999_999}))
    with RunLock(path, "next-run") as lock:
        assert lock.stale_holder == {"run_id": "killed-run", "pid": 999_999}
        assert json.loads(path.read_text())["run_id"] == "next-run"


def test_the_lock_is_released_on_exit_even_after_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.lock"
    with pytest.raises(RuntimeError), RunLock(path, "failing-run"):
        raise RuntimeError("boom")
    with RunLock(path, "next-run") as lock:
        assert lock.stale_holder is None, "a clean exit leaves no holder behind"
