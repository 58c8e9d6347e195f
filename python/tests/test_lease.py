"""The warehouse lock's choices that need no cluster (test_cluster.py takes it for real)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conftest import make_settings
from pipeline.lease import WarehouseLock, run_lock, sql_string
from pipeline.lock import LockBusy, RunLock
from pipeline.thrift import poll_wait


def test_the_spark_target_locks_in_the_warehouse_and_the_others_locally(tmp_path: Path) -> None:
    assert isinstance(run_lock(make_settings(tmp_path, tmp_path), "r"), RunLock)
    assert isinstance(
        run_lock(make_settings(tmp_path, tmp_path, target="spark_local"), "r"), RunLock
    )
    lock = run_lock(make_settings(tmp_path, tmp_path, target="spark"), "r")
    assert isinstance(lock, WarehouseLock) and lock.lease_seconds == 600


def test_an_unreachable_thrift_server_is_a_busy_lock_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("COMMERCE_SPARK_HOST", "127.0.0.1")
    monkeypatch.setenv("COMMERCE_SPARK_PORT", str(port))
    lock = run_lock(make_settings(tmp_path, tmp_path, target="spark"), "r")
    with pytest.raises(LockBusy, match="cannot reach the warehouse"), lock:
        pass


def test_values_are_quoted_as_spark_string_literals() -> None:
    assert sql_string("it's") == "'it\\'s'"
    assert sql_string("a\\'); drop") == "'a\\\\\\'); drop'"


def test_polls_back_off_from_immediate_to_a_second() -> None:
    assert [poll_wait(n) for n in range(7)] == [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert poll_wait(50) == 1.0
