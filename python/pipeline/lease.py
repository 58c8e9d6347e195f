"""The run lock where every runner sees it: a lease row in an Iceberg table of the warehouse.

A `flock` (pipeline.lock) only sees processes of one machine; two schedulers on two hosts
pointed at one cluster would both take it. On the `spark` target the lock is therefore a row
of `ops.pipeline_lock` (lock name, run id, holder, acquired and expiry times), taken with one
MERGE: insert the row when there is none, take it over when its lease has expired, leave it
otherwise. Iceberg commits are optimistic: a MERGE is validated against every commit made
since it read the table (serializable isolation, copy-on-write), so of two runners racing for
the row one commit fails and that runner reads the other's row. Then each runner reads the row
back: it holds the lock only if the row names its run.

A lease, not a flag: a runner that dies without a word (SIGKILL, a lost host) cannot release
it, so the row carries an expiry, `lease_seconds` after it was last renewed. A thread renews it
every third of the lease while the run goes on, and the next runner takes over a lease that
expired, reporting whose it was (as the flock reports a stale holder). Releasing deletes the
row only if it still names this run.

The catalog must make a commit atomic (compare the table's current metadata and swap it in one
step): a Hive Metastore with Iceberg's Hive lock (`iceberg.engine.hive.lock-enabled`, the
default) or with HIVE-26882, or an Iceberg REST catalog. docs/design.md says what the test
cluster (an embedded Derby metastore, Hive lock off) does and does not prove.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from pipeline.config import Settings
from pipeline.lock import LockBusy, RunLock

OPS_SCHEMA = "ops"  # the runner's own tables: the lease, the publish journal (pipeline.iceberg)
LOCK_TABLE = f"{OPS_SCHEMA}.pipeline_lock"
LOCK_NAME = "warehouse"


class Cursor(Protocol):
    """The DB-API subset used here (PyHive's cursor)."""

    def execute(self, operation: str) -> Any: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


def sql_string(value: str) -> str:
    """A Spark SQL string literal (run ids, host names, table names, JSON), escaped for Spark."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class WarehouseLock:
    """`with WarehouseLock(connect, run_id):` holds the warehouse's lease for the block.

    `connect` opens a new connection (a cursor factory): the renewing thread needs its own,
    since a Thrift connection is not shared between threads.
    """

    def __init__(
        self,
        connect: Callable[[], Cursor],
        run_id: str,
        lease_seconds: int = 600,
        name: str = LOCK_NAME,
        holder: dict[str, Any] | None = None,
    ) -> None:
        self.connect = connect
        self.run_id = run_id
        self.lease_seconds = lease_seconds
        self.name = name
        self.holder = holder or {
            "run_id": run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self.stale_holder: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._cursor: Cursor | None = None

    # -- the row -------------------------------------------------------------------------------

    def _ensure_table(self, cursor: Cursor) -> None:
        cursor.execute("create database if not exists ops")
        # Serializable: a concurrent commit that added or removed the row fails this one.
        with contextlib.suppress(Exception):  # another runner created it a moment ago
            cursor.execute(
                f"create table if not exists {LOCK_TABLE} (lock_name string, run_id string, "
                "holder string, acquired_at timestamp, expires_at timestamp) using iceberg "
                "tblproperties ('write.merge.isolation-level' = 'serializable', "
                "'write.update.isolation-level' = 'serializable', "
                "'write.delete.isolation-level' = 'serializable', "
                "'write.wap.enabled' = 'false')"
            )

    def _row(self, cursor: Cursor) -> tuple[str, str, bool] | None:
        """(run id, holder, lease expired) of the lock's row, or None when nobody holds it."""
        cursor.execute(
            f"select run_id, holder, expires_at < current_timestamp() from {LOCK_TABLE} "
            f"where lock_name = {sql_string(self.name)}"
        )
        rows = cursor.fetchall()
        if not rows:
            return None
        run_id, holder, expired = rows[0]
        return str(run_id), str(holder), bool(expired)

    def _take(self, cursor: Cursor) -> None:
        lease = f"current_timestamp() + make_interval(0, 0, 0, 0, 0, 0, {self.lease_seconds})"
        cursor.execute(
            f"merge into {LOCK_TABLE} as t using (select {sql_string(self.name)} as lock_name, "
            f"{sql_string(self.run_id)} as run_id, "
            f"{sql_string(json.dumps(self.holder))} as holder, "
            f"current_timestamp() as acquired_at, {lease} as expires_at) as s "
            "on t.lock_name = s.lock_name "
            "when matched and t.expires_at < current_timestamp() then update set "
            "run_id = s.run_id, holder = s.holder, acquired_at = s.acquired_at, "
            "expires_at = s.expires_at "
            "when not matched then insert (lock_name, run_id, holder, acquired_at, expires_at) "
            "values (s.lock_name, s.run_id, s.holder, s.acquired_at, s.expires_at)"
        )

    def renew(self, cursor: Cursor) -> None:
        """Push the expiry `lease_seconds` ahead, if the row still names this run."""
        cursor.execute(
            f"update {LOCK_TABLE} set expires_at = current_timestamp() + "
            f"make_interval(0, 0, 0, 0, 0, 0, {self.lease_seconds}) "
            f"where lock_name = {sql_string(self.name)} and run_id = {sql_string(self.run_id)}"
        )

    # -- context manager -----------------------------------------------------------------------

    def __enter__(self) -> WarehouseLock:
        try:
            cursor = self.connect()
            self._ensure_table(cursor)
            before = self._row(cursor)
        except Exception as error:  # no cluster, no lock: like a busy lock, retry later
            raise LockBusy(
                f"cannot reach the warehouse to take its lock {LOCK_TABLE}: "
                f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
            ) from None
        if before is not None and not before[2] and before[0] != self.run_id:
            raise LockBusy(_busy_message(before[1]))
        try:
            self._take(cursor)
        except Exception as error:  # a concurrent commit won; the row says whose it is
            after = self._row(cursor)
            if after is not None and after[0] != self.run_id:
                raise LockBusy(_busy_message(after[1])) from None
            raise LockBusy(f"could not take the warehouse lock {LOCK_TABLE}: {error}") from None
        after = self._row(cursor)
        if after is None or after[0] != self.run_id:
            raise LockBusy(_busy_message(after[1] if after else "{}"))
        if before is not None and before[0] != self.run_id:
            self.stale_holder = _parse(before[1])
        self._cursor = cursor
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True, name="lease")
        self._renewer.start()
        return self

    def _renew_loop(self) -> None:
        cursor: Cursor | None = None
        while not self._stop.wait(max(1.0, self.lease_seconds / 3)):
            try:
                cursor = cursor or self.connect()
                self.renew(cursor)
            except Exception:  # a missed renewal is retried; the lease covers two of them
                cursor = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
        cursor = self._cursor
        self._cursor = None
        if cursor is None:
            return
        # Best effort: an unreleased lease expires by itself.
        with contextlib.suppress(Exception):
            cursor.execute(
                f"delete from {LOCK_TABLE} where lock_name = {sql_string(self.name)} "
                f"and run_id = {sql_string(self.run_id)}"
            )


def run_lock(settings: Settings, run_id: str) -> RunLock | WarehouseLock:
    """The lock a run of these settings takes: a lease in the warehouse on the `spark` target
    (runners on several hosts share one cluster), the local flock elsewhere (one machine owns
    a DuckDB file or a spark_local catalog)."""
    if settings.target == "spark":
        from pipeline.thrift import connect_from_environment

        return WarehouseLock(connect_from_environment, run_id, settings.lock_lease_seconds)
    return RunLock(settings.resolve(settings.lock_path), run_id)


def _parse(holder: str) -> dict[str, Any]:
    try:
        loaded = json.loads(holder)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _busy_message(holder: str) -> str:
    record = _parse(holder)
    return (
        f"another run holds the warehouse lock {LOCK_TABLE}: run {record.get('run_id', '?')} "
        f"(pid {record.get('pid', '?')} on {record.get('host', '?')}) since "
        f"{record.get('since', '?')}"
    )
