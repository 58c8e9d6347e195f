"""The exit codes a scheduler acts on (README, docs/design.md) and the exception that ends a run.

One home for both, so the CLI and the runner cannot disagree on a number.
"""

from __future__ import annotations

import os
import signal
from enum import IntEnum


class ExitCode(IntEnum):
    """docs/design.md's contract with schedulers."""

    SUCCESS = 0
    DBT_ERROR = 1
    USAGE = 2
    STALE = 3
    VOLUME = 4  # a gate judged the landing data bad: contract, future timestamps, volume
    LOCKED = 5
    INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2, as shells report it
    TERMINATED = 143  # SIGTERM (a scheduler's timeout or a pod stopping): 128 + 15


class StopRun(Exception):
    """Ends the run early with an exit code and a message for stderr and the history."""

    def __init__(self, code: ExitCode, phase: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.phase = phase
        self.message = message


FAILPOINT_ENV = "PIPELINE_FAILPOINT"


def failpoint(name: str) -> None:
    """Die here, as SIGKILL or a power cut would, when PIPELINE_FAILPOINT names this point.

    The tests of write-audit-publish kill a run at exact moments (a phase's start, between the
    steps of a publish, `built:<node>` as dbt finishes a node) that are too short to hit from
    outside. Unset, it costs one lookup.
    """
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
