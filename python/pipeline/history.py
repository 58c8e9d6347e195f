"""Run history in an embedded DuckDB file: one row per run, per node, per gate check.

It is the memory the volume and null-rate gates learn from (only successful runs count) and what
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
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.gates import FreshnessCheck, NullRateVerdict, VolumeVerdict
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
create table if not exists publishes (
    run_id varchar, target varchar, published_at timestamp, state json, restored_from varchar
);
create table if not exists gate_checks (
    run_id varchar, gate varchar, subject varchar, load_date date, observed double,
    low double, high double, passed boolean, status varchar, detail varchar
);
create table if not exists null_rates (
    run_id varchar, subject varchar, column_name varchar, load_date date, row_count bigint,
    null_count bigint, null_rate double, low double, high double, passed boolean, detail varchar
);
"""


def utc_now() -> dt.datetime:
    """Now as the history stores times: naive UTC (DuckDB `timestamp`)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


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


class HistoryError(RuntimeError):
    """The history file cannot be opened: named in one line, with what to do."""

    def __init__(self, path: Path, error: Exception) -> None:
        super().__init__(
            f"the run history {path} cannot be opened ({' '.join(str(error).split())[:200]}); "
            f"rebuild it from its journal with `pipeline history --rebuild` (the damaged file is "
            f"kept as {path.name}.corrupt)"
        )


class History:
    """Short-lived connections: the file stays free between calls for other readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = path.with_name(path.name + ".journal.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(SCHEMA)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """DuckDB lets one process write a file at a time; another run (say, one refused by the
        lock that is recording exit 5) waits briefly for the holder's short connection. Any
        other failure (a corrupt file) is named at once, with the way out."""
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise HistoryError(self.path, error) from None
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
            except duckdb.Error as error:
                raise HistoryError(self.path, error) from None
        raise AssertionError("unreachable")

    def _write(self, sql: str, rows: list[list[Any]]) -> None:
        """Every write goes to the database and, as one JSON line, to the journal beside it:
        the journal is what `pipeline history --rebuild` replays if the file is ever lost."""
        if not rows:
            return
        with self._connect() as con:
            con.executemany(sql, rows)
        self._journal(sql, rows)

    def _journal(self, sql: str, rows: list[list[Any]]) -> None:
        with self.journal.open("a") as journal:
            journal.write(json.dumps({"sql": sql, "rows": rows}, default=str) + "\n")

    def _insert(self, table: str, rows: list[list[Any]]) -> None:
        """Rows appended to `table` in one statement, through Arrow.

        DuckDB's `executemany` runs the insert once per row (about a millisecond and a half
        each): a daily run records some 200 rows, a backfill's null rates thousands, which cost
        seconds at the end of every run. The journal line is the same one-row insert as
        `_write`'s, so `--rebuild` replays it unchanged.
        """
        if not rows:
            return
        with self._connect() as con:
            schema = con.execute(f"select * from {table} limit 0").fetch_arrow_table().schema
            batch = pa.Table.from_arrays(
                [pa.array([row[i] for row in rows], type=f.type) for i, f in enumerate(schema)],
                schema=schema,
            )
            columns = ", ".join(schema.names)
            con.register("history_batch", batch)
            con.execute(f"insert into {table} ({columns}) select {columns} from history_batch")
        placeholders = ", ".join("?" * len(schema.names))
        self._journal(f"insert into {table} values ({placeholders})", rows)

    @classmethod
    def rebuild(cls, path: Path) -> int:
        """A new history file from the journal (the old file, if any, is kept aside).

        Returns the number of journal entries replayed; a torn last line (a crash while
        writing) is skipped. Values come back as text and DuckDB casts them to the columns.
        """
        journal = path.with_name(path.name + ".journal.jsonl")
        if not journal.exists():
            raise FileNotFoundError(f"no journal at {journal}: nothing to rebuild the history from")
        if path.exists():
            path.replace(path.with_name(path.name + ".corrupt"))
        entries = []
        for line in journal.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        with duckdb.connect(str(path)) as con:
            con.execute(SCHEMA)
            for entry in entries:
                con.executemany(entry["sql"], entry["rows"])
        return len(entries)

    def start_run(self, run_id: str, target: str, arguments: str, started_at: dt.datetime) -> None:
        self._write(
            "insert into runs (run_id, target, arguments, started_at, status) values (?, ?, "
            "?, ?, 'running')",
            [[run_id, target, arguments, started_at]],
        )

    def set_phase(self, run_id: str, phase: str) -> None:
        """Where a run is: what the next run reports if this one dies without a word."""
        self._write("update runs set phase = ? where run_id = ?", [[phase, run_id]])

    def abandon_running(
        self, current_run: str, ended_at: dt.datetime
    ) -> list[tuple[str, str | None]]:
        """Mark runs still `running` (dead: the caller holds the lock) as `abandoned`.

        Returns (run id, the phase it died in) for each, for the log and the lineage.
        """
        with self._connect() as con:
            dead = con.execute(
                "select run_id, phase from runs where status = 'running' and run_id != ? "
                "order by started_at",
                [current_run],
            ).fetchall()
        self._write(
            "update runs set status = 'abandoned', ended_at = ?, message = 'the run died without "
            "a word (SIGKILL, power loss); found by the next run' where run_id = ?",
            [[ended_at, run_id] for run_id, _ in dead],
        )
        return [(run_id, phase) for run_id, phase in dead]

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
        self._write(
            "update runs set status = ?, exit_code = ?, phase = ?, message = ?, ended_at = ?, "
            "phase_seconds = ? where run_id = ?",
            [[status, exit_code, phase, message, ended_at, json.dumps(phase_seconds), run_id]],
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
        self._insert("node_runs", rows)

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
        self._insert("gate_checks", rows)

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
        self._insert("gate_checks", rows)

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
        self._insert("gate_checks", rows)

    def record_null_rates(self, run_id: str, verdicts: Iterable[NullRateVerdict]) -> None:
        """Every rate measured goes to `null_rates` (the drift baseline, and what a person reads
        to see a column empty out); a failed one also to `gate_checks`, where every gate's
        failures are, so the report and `pipeline history` readers see it beside the others."""
        verdicts = list(verdicts)
        self._insert(
            "null_rates",
            [
                [
                    run_id,
                    v.subject,
                    v.column,
                    v.load_date,
                    v.rows,
                    v.nulls,
                    v.rate,
                    v.low,
                    v.high,
                    v.passed,
                    v.basis,
                ]
                for v in verdicts
            ],
        )
        self._insert(
            "gate_checks",
            [
                [
                    run_id,
                    "null_rate",
                    f"{v.subject}.{v.column}",
                    v.load_date,
                    v.rate,
                    v.low,
                    v.high,
                    False,
                    "error",
                    v.message(),
                ]
                for v in verdicts
                if not v.passed
            ],
        )

    def record_publish(
        self,
        run_id: str,
        target: str,
        published_at: dt.datetime,
        state: dict[str, Any],
        restored_from: str | None = None,
    ) -> None:
        """What a run made visible to consumers (a file generation, Iceberg snapshot ids)."""
        self._write(
            "insert into publishes values (?, ?, ?, ?, ?)",
            [[run_id, target, published_at, json.dumps(state, sort_keys=True), restored_from]],
        )

    def published_state(self, run_id: str) -> dict[str, Any] | None:
        """The state `run_id` published (or, for a rollback, republished); None if nothing."""
        with self._connect() as con:
            row = con.execute(
                "select state from publishes where run_id = ? order by published_at desc limit 1",
                [run_id],
            ).fetchone()
        return json.loads(row[0]) if row else None

    def recent_published_states(self, last: int) -> list[dict[str, Any]]:
        """The states the last `last` publishes (rollbacks included) published, newest first:
        what `pipeline maintain` keeps for `pipeline rollback`."""
        with self._connect() as con:
            rows = con.execute(
                "select state from publishes order by published_at desc limit ?", [last]
            ).fetchall()
        return [dict(json.loads(state)) for (state,) in rows]

    def published_by(self) -> dict[str, str]:
        """run id -> a short description of what it published, for `pipeline history`."""
        with self._connect() as con:
            rows = con.execute(
                "select run_id, state, restored_from from publishes order by published_at"
            ).fetchall()
        described = {}
        for run_id, state, restored_from in rows:
            parsed = json.loads(state)
            if "generation" in parsed:
                what = f"file {str(parsed['generation'])[:8]}"
            else:
                what = f"{len(parsed.get('snapshots', {}))} Iceberg snapshots"
            described[run_id] = f"{what} (rollback)" if restored_from else what
        return described

    def roll_back_after(self, run_id: str) -> list[str]:
        """Runs that succeeded after `run_id` are `rolled_back`: their loads no longer count as
        judged, so the next run judges them again against a history without them."""
        with self._connect() as con:
            later = [
                row[0]
                for row in con.execute(
                    "select run_id from runs where status = 'success' and started_at > "
                    "(select started_at from runs where run_id = ?) and arguments like 'run%' "
                    "order by started_at",
                    [run_id],
                ).fetchall()
            ]
        self._write(
            "update runs set status = 'rolled_back' where run_id = ?",
            [[later_run] for later_run in later],
        )
        # Rolling forward again to a state that was rolled back makes its run count again.
        self._write(
            "update runs set status = 'success' where run_id = ? and status = 'rolled_back'",
            [[run_id]],
        )
        return later

    def published_runs(self, prefix: str) -> list[str]:
        """Ids of runs that published something and start with `prefix` (as history shows)."""
        with self._connect() as con:
            rows = con.execute(
                "select distinct run_id from publishes where starts_with(run_id, ?) "
                "order by run_id",
                [prefix],
            ).fetchall()
        return [row[0] for row in rows]

    def accept(self, subject: str, load_date: dt.date, reason: str, accepted_by: str) -> None:
        """An operator vouches for an anomalous load: the next run passes it (`pipeline accept`)."""
        self._write(
            "insert into acceptances values (?, ?, ?, ?, ?)",
            [
                [
                    subject,
                    load_date,
                    reason,
                    accepted_by,
                    utc_now(),
                ]
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

    def null_rate_history(
        self, subjects: Iterable[str]
    ) -> dict[tuple[str, str], list[tuple[dt.date, float]]]:
        """Null rate per load seen by successful runs, per (model, column), newest load first.

        One query; a load measured by several successful runs counts once, with the rate of
        the latest of them (as for volume).
        """
        names = sorted(set(subjects))
        history: dict[tuple[str, str], list[tuple[dt.date, float]]] = {}
        if not names:
            return history
        with self._connect() as con:
            rows = con.execute(
                """
                select n.subject, n.column_name, n.load_date, arg_max(n.null_rate, r.started_at)
                from null_rates as n
                join runs as r using (run_id)
                where r.status = 'success' and list_contains(?, n.subject)
                group by n.subject, n.column_name, n.load_date
                order by n.subject, n.column_name, n.load_date desc
            """,
                [names],
            ).fetchall()
        for subject, column, load_date, rate in rows:
            history.setdefault((subject, column), []).append((load_date, float(rate)))
        return history

    def last_success(self) -> dt.datetime | None:
        """When the last successful run of the whole warehouse ended: a `--select` run or a
        gates-only check rebuilt a part or nothing, so it does not count."""
        with self._connect() as con:
            row = con.execute(
                "select max(ended_at) from runs where status = 'success' and arguments like 'run%' "
                "and arguments not like '%--select%'"
            ).fetchone()
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
