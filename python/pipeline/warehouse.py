"""Read-only questions the runner asks the warehouse: landing volumes, null counts per load and
relation sizes.

On DuckDB the runner opens the warehouse file directly (same process as dbt, same
configuration, so DuckDB shares the instance). On Spark it asks through `dbt show`, which
reuses dbt's own connection settings, so a cluster needs no second set of credentials.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

import duckdb

from pipeline.config import Settings
from pipeline.dbt import show
from pipeline.gates import LoadNullCounts
from pipeline.manifest import LOAD_DATE_COLUMN


class Queries(Protocol):
    def fetch(self, sql: str) -> list[tuple[Any, ...]]: ...


class DuckDBQueries:
    def __init__(self, settings: Settings) -> None:
        self.path = str(settings.resolve(settings.warehouse_path))

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(self.path) as con:
            return con.execute(sql).fetchall()


class DbtShowQueries:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return show(self.settings, sql)


def queries_for(settings: Settings) -> Queries:
    return DuckDBQueries(settings) if settings.target == "duckdb" else DbtShowQueries(settings)


def _date_literal(value: dt.date) -> str:
    """Dates come from validated `datetime.date` objects, never from raw user text."""
    return f"date '{value.isoformat()}'"


def load_volumes(
    queries: Queries,
    relations: dict[str, str],
    since: dict[str, dt.date | None],
    until: dt.date | None,
) -> dict[str, dict[dt.date, int]]:
    """Rows per load partition newer than `since[subject]` (and not after `until`), per subject.

    One query for all subjects: the landing views prune on the `load_date` partition.
    """
    if not relations:
        return {}
    parts = []
    for subject, relation in sorted(relations.items()):
        conditions = ["1 = 1"]
        start = since.get(subject)
        if start is not None:
            conditions.append(f"load_date > {_date_literal(start)}")
        if until is not None:
            conditions.append(f"load_date <= {_date_literal(until)}")
        parts.append(
            f"select '{subject}' as subject, cast(load_date as date) as load_date, count(*) as "
            "row_count "
            f"from {relation} where {' and '.join(conditions)} group by load_date"
        )
    volumes: dict[str, dict[dt.date, int]] = {subject: {} for subject in relations}
    for subject, day, rows in queries.fetch(" union all ".join(parts)):
        volumes[subject][_as_date(day)] = int(rows)
    return volumes


def _as_date(value: Any) -> dt.date:
    """DuckDB returns a date; `dbt show` (Spark) returns its text."""
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def load_null_counts(
    queries: Queries,
    relation: str,
    columns: tuple[str, ...],
    since: dt.date | None,
    until: dt.date | None,
) -> dict[dt.date, LoadNullCounts]:
    """Rows and nulls per column of each load of a staging model newer than `since`.

    One query per model, whatever its width: count(*) and count(column) per load date, in a
    single scan of the rows this run added (the staging models carry their load date).
    """
    conditions = ["1 = 1"]
    if since is not None:
        conditions.append(f"{LOAD_DATE_COLUMN} > {_date_literal(since)}")
    if until is not None:
        conditions.append(f"{LOAD_DATE_COLUMN} <= {_date_literal(until)}")
    counted = "".join(f", count({column})" for column in columns)
    sql = (
        f"select cast({LOAD_DATE_COLUMN} as date), count(*){counted} from {relation} "
        f"where {' and '.join(conditions)} group by cast({LOAD_DATE_COLUMN} as date)"
    )
    counts = {}
    for day, rows, *present in queries.fetch(sql):
        counts[_as_date(day)] = LoadNullCounts(
            int(rows),
            {column: int(rows) - int(n) for column, n in zip(columns, present, strict=True)},
        )
    return counts


def relation_sizes(queries: Queries, relations: dict[str, str]) -> dict[str, int]:
    """count(*) of each relation, in one query."""
    if not relations:
        return {}
    sql = " union all ".join(
        f"select '{unique_id}' as unique_id, count(*) as row_count from {relation}"
        for unique_id, relation in sorted(relations.items())
    )
    return {unique_id: int(rows) for unique_id, rows in queries.fetch(sql)}
