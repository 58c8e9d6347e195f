"""One run per warehouse at a time, with an OS lock that dies with its holder.

`flock` is released by the kernel when the holding process exits, however it exits, so a
lock file left by a killed run never blocks the next one: the next run takes the lock and
notes whose stale record it replaced. The file's content names the current holder for the
message a second, concurrent run prints.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any


class LockBusy(RuntimeError):
    """Another live run holds the lock."""


class RunLock:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.stale_holder: dict[str, Any] | None = None
        self._handle: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            os.close(handle)
            raise LockBusy(
                f"another run holds {self.path}: run {holder.get('run_id', '?')} "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}) since "
                f"{holder.get('since', '?')}"
            ) from None
        previous = _read_holder(handle)
        self.stale_holder = previous or None
        record = {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(record).encode(), 0)
        self._handle = handle
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            os.ftruncate(self._handle, 0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None


def _read_holder(handle: int) -> dict[str, Any]:
    try:
        data = os.pread(handle, 4096, 0)
        return json.loads(data) if data else {}
    except (OSError, ValueError):
        return {}
