"""Run history in an embedded DuckDB file: one row per run, per node, per gate check.

It is the memory the volume gate learns from (only successful runs count) and what
`pipeline history` and the last-success metric read. A separate file from the warehouse, so
the runner never contends with dbt for the warehouse's write lock.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.gates import FreshnessCheck, VolumeVerdict
from pipeline.landing import Violation

CONNECT_ATTEMPTS = 40  # about 40 s in all with the linear back-off

SCHEMA = """
create table if not exists runs (
    run_id varchar primary key, target varchar, arguments varchar, started_at timestamp,
    ended_at timestamp, status varchar, exit_code integer, phase varchar, message varchar,
    phase_seconds json
);
create table if not exists node_runs (
    run_id varchar, unique_id varchar, name varchar, resource_type varchar, layer varchar,
    status varchar, row_count bigint, seconds double, message varchar
);
create table if not exists acceptances (
    subject varchar, load_date date, reason varchar, accepted_by varchar, accepted_at timestamp
);
create table if not exists gate_checks (
    run_id varchar, gate varchar, subject varchar, load_date date, observed double,
    low double, high double, passed boolean, status varchar, detail varchar
);
"""


@dataclass(frozen=True)
class NodeRecord:
    unique_id: str
    name: str
    resource_type: str
    layer: str
    status: str
    row_count: int | None
    seconds: float
    message: str | None


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    target: str
    arguments: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    status: str
    exit_code: int | None
    phase: str | None
    message: str | None
    phase_seconds: dict[str, float]


class History:
    """Short-lived connections: the file stays free between calls for other readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(SCHEMA)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """DuckDB lets one process write a file at a time; another run (say, one refused by the
        lock that is recording exit 5) waits briefly for the holder's short connection."""
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException:
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def start_run(self, run_id: str, target: str, arguments: str, started_at: dt.datetime) -> None:
        with self._connect() as con:
            con.execute(
                "insert into runs (run_id, target, arguments, started_at, status) values (?, ?, "
                "?, ?, 'running')",
                [run_id, target, arguments, started_at],
            )

    def finish_run(
        self,
        run_id: str,
        status: str,
        exit_code: int,
        phase: str | None,
        message: str | None,
        ended_at: dt.datetime,
        phase_seconds: dict[str, float],
    ) -> None:
        with self._connect() as con:
            con.execute(
                "update runs set status = ?, exit_code = ?, phase = ?, message = ?, ended_at = ?, "
                "phase_seconds = ? where run_id = ?",
                [status, exit_code, phase, message, ended_at, json.dumps(phase_seconds), run_id],
            )

    def record_nodes(self, run_id: str, nodes: Iterable[NodeRecord]) -> None:
        rows = [
            [
                run_id,
                n.unique_id,
                n.name,
                n.resource_type,
                n.layer,
                n.status,
                n.row_count,
                n.seconds,
                n.message,
            ]
            for n in nodes
        ]
        if rows:
            with self._connect() as con:
                con.executemany("insert into node_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def record_volume(self, run_id: str, verdicts: Iterable[VolumeVerdict]) -> None:
        rows = [
            [
                run_id,
                "volume",
                v.subject,
                v.load_date,
                v.observed,
                v.low,
                v.high,
                v.passed,
                "pass" if v.passed else "error",
                v.basis,
            ]
            for v in verdicts
        ]
        if rows:
            with self._connect() as con:
                con.executemany(
                    "insert into gate_checks values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )

    def record_contract(self, run_id: str, violations: Iterable[Violation]) -> None:
        rows = [
            [
                run_id,
                "contract",
                f"{v.entity}.{v.column}" if v.column else v.entity,
                v.load_date,
                None,
                None,
                None,
                False,
                "error",
                v.message(),
            ]
            for v in violations
        ]
        if rows:
            with self._connect() as con:
                con.executemany(
                    "insert into gate_checks values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )

    def record_freshness(self, run_id: str, checks: Iterable[FreshnessCheck]) -> None:
        rows = [
            [
                run_id,
                "freshness",
                c.source,
                None,
                c.age_seconds,
                None,
                c.error_after_seconds,
                not c.is_error,
                c.status,
                c.message(),
            ]
            for c in checks
        ]
        if rows:
            with self._connect() as con:
                con.executemany(
                    "insert into gate_checks values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )

    def accept(self, subject: str, load_date: dt.date, reason: str, accepted_by: str) -> None:
        """An operator vouches for an anomalous load: the next run passes it (`pipeline accept`)."""
        with self._connect() as con:
            con.execute(
                "insert into acceptances values (?, ?, ?, ?, ?)",
                [
                    subject,
                    load_date,
                    reason,
                    accepted_by,
                    dt.datetime.now(dt.UTC).replace(tzinfo=None),
                ],
            )

    def acceptances(self) -> dict[tuple[str, dt.date], str]:
        """(subject, load date) -> who accepted it, when and why (the latest acceptance wins)."""
        with self._connect() as con:
            rows = con.execute(
                "select subject, load_date, arg_max(accepted_by || ' at ' || "
                "strftime(accepted_at, '%Y-%m-%d %H:%M') "
                "|| ' UTC: ' || reason, accepted_at) from acceptances group by subject, load_date"
            ).fetchall()
        return {(subject, load_date): text for subject, load_date, text in rows}

    def volume_history(self, subjects: Iterable[str]) -> dict[str, list[tuple[dt.date, int]]]:
        """Rows per load seen by successful runs, per subject, newest load first.

        One query for every subject; a load judged by several successful runs counts once,
        with the value of the latest of them.
        """
        names = sorted(set(subjects))
        history: dict[str, list[tuple[dt.date, int]]] = {name: [] for name in names}
        if not names:
            return history
        with self._connect() as con:
            rows = con.execute(
                """
                select g.subject, g.load_date, arg_max(g.observed, r.started_at)
                from gate_checks as g
                join runs as r using (run_id)
                where r.status = 'success' and g.gate = 'volume' and list_contains(?, g.subject)
                group by g.subject, g.load_date
                order by g.subject, g.load_date desc
            """,
                [names],
            ).fetchall()
        for subject, load_date, observed in rows:
            history[subject].append((load_date, int(observed)))
        return history

    def last_success(self) -> dt.datetime | None:
        with self._connect() as con:
            row = con.execute("select max(ended_at) from runs where status = 'success'").fetchone()
        return row[0] if row else None

    def runs(self, last: int) -> list[RunRecord]:
        with self._connect() as con:
            rows = con.execute(
                "select run_id, target, arguments, started_at, ended_at, status, exit_code, "
                "phase, message, "
                "phase_seconds from runs order by started_at desc limit ?",
                [last],
            ).fetchall()
        return [
            RunRecord(
                run_id=row[0],
                target=row[1],
                arguments=row[2],
                started_at=row[3],
                ended_at=row[4],
                status=row[5],
                exit_code=row[6],
                phase=row[7],
                message=row[8],
                phase_seconds=json.loads(row[9]) if row[9] else {},
            )
            for row in rows
        ]

    def nodes(self, run_id: str) -> list[NodeRecord]:
        with self._connect() as con:
            rows = con.execute(
                "select unique_id, name, resource_type, layer, status, row_count, seconds, message "
                "from node_runs where run_id = ? order by layer, name",
                [run_id],
            ).fetchall()
        return [NodeRecord(*row) for row in rows]
