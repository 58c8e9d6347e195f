"""The landing contract: every load partition staging will read is checked before dbt runs.

The contract is declared once, in the sources yml (`models/staging/landing/_landing__sources.yml`):
each landing table lists its columns with a `data_type`, and `meta: {nullable: true}` where
nulls are allowed. dbt documents the sources from it; this module reads the same declaration
from dbt's manifest and holds each new file to it, using only Parquet footers (schema, row-group
statistics) unless a violation has to be pinned to a row. What it catches would otherwise
publish wrong numbers with exit 0: a vanished column read back as nulls and coalesced to 0, a
timestamp in the future that freezes a watermark, a key gone null, a retyped column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.manifest import Source

PARTITION = re.compile(r"^load_date=(\d{4}-\d{2}-\d{2})$")
_DECIMAL = re.compile(r"^decimal\((\d+),(\d+)\)$")


@dataclass(frozen=True)
class ColumnContract:
    name: str
    data_type: str
    nullable: bool


@dataclass(frozen=True)
class EntityContract:
    """What the upstream promises for one landing table."""

    entity: str
    key: str | None
    columns: tuple[ColumnContract, ...]

    @classmethod
    def from_source(cls, source: Source) -> EntityContract:
        """From a landing source of dbt's manifest: every declared column needs a data_type."""
        columns = []
        for column in source.columns:
            if not column.data_type:
                raise ValueError(
                    f"landing.{source.name}.{column.name}: the contract needs a data_type"
                )
            columns.append(
                ColumnContract(
                    column.name, column.data_type, bool(column.meta.get("nullable", False))
                )
            )
        key = source.meta.get("landing_key")
        return cls(entity=source.name, key=str(key) if key else None, columns=tuple(columns))


@dataclass(frozen=True)
class Violation:
    """One broken promise, with what a person needs to find and fix it."""

    entity: str
    load_date: dt.date
    file: str
    column: str | None
    rule: str

    def message(self) -> str:
        column = f" column {self.column}:" if self.column else ""
        where = f"{self.entity} load {self.load_date} file {self.file}"
        return f"landing contract: {where}:{column} {self.rule}"


def _integer_within(bits: int) -> Callable[[pa.DataType], bool]:
    def check(actual: pa.DataType) -> bool:
        if pa.types.is_signed_integer(actual):
            return bool(actual.bit_width <= bits)
        return bool(pa.types.is_unsigned_integer(actual) and actual.bit_width < bits)

    return check


# What each declared type accepts without loss: itself and its safe widenings.
_ACCEPTS: dict[str, Callable[[pa.DataType], bool]] = {
    "bigint": _integer_within(64),
    "integer": _integer_within(32),
    "int": _integer_within(32),
    "smallint": _integer_within(16),
    "varchar": lambda t: bool(pa.types.is_string(t) or pa.types.is_large_string(t)),
    "string": lambda t: bool(pa.types.is_string(t) or pa.types.is_large_string(t)),
    "timestamp": lambda t: bool(
        pa.types.is_timestamp(t) and t.tz in (None, "UTC", "+00:00", "Etc/UTC")
    ),
    "boolean": lambda t: bool(pa.types.is_boolean(t)),
    "date": lambda t: bool(pa.types.is_date(t)),
}


def compatible(declared: str, actual: pa.DataType) -> bool:
    """True when values of `actual` can be read as `declared` without loss (safe widenings)."""
    kind = declared.lower().replace(" ", "")
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if kind in _ACCEPTS:
        return _ACCEPTS[kind](actual)
    decimal = _DECIMAL.match(kind)
    if decimal is None:
        raise ValueError(f"unknown data_type {declared!r} in the landing contract")
    precision, scale = int(decimal.group(1)), int(decimal.group(2))
    return bool(
        pa.types.is_decimal(actual)
        and actual.scale == scale
        and actual.precision - actual.scale <= precision - scale
    )


def schema_violations(contract: EntityContract, schema: pa.Schema) -> list[tuple[str, str]]:
    """(column, rule) for every declared column missing or of an incompatible type.

    Columns the file has and the contract does not are additive and pass.
    """
    problems = []
    for column in contract.columns:
        index = schema.get_field_index(column.name)
        if index < 0:
            problems.append(
                (
                    column.name,
                    f"missing: the contract declares it ({column.data_type}); "
                    f"the file has {', '.join(schema.names)}",
                )
            )
        elif not compatible(column.data_type, schema.field(index).type):
            problems.append(
                (
                    column.name,
                    f"type {schema.field(index).type} is not compatible with "
                    f"the declared {column.data_type}",
                )
            )
    return problems


def partitions(root: Path, entity: str) -> dict[dt.date, list[Path]]:
    """Load partitions of an entity and their Parquet files, by load date."""
    found: dict[dt.date, list[Path]] = {}
    folder = root / entity
    if not folder.is_dir():
        return found
    for child in folder.iterdir():
        match = PARTITION.match(child.name)
        if match and child.is_dir():
            found[dt.date.fromisoformat(match.group(1))] = sorted(child.glob("*.parquet"))
    return found


def _null_count(reader: pq.ParquetFile, column: str) -> int:
    metadata = reader.metadata
    index = reader.schema_arrow.get_field_index(column)
    counts = []
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(index).statistics
        if statistics is None or not statistics.has_null_count:
            return int(reader.read(columns=[column]).column(0).null_count)
        counts.append(statistics.null_count)
    return int(sum(counts))


def _max_value(reader: pq.ParquetFile, column: str) -> Any:
    metadata = reader.metadata
    index = reader.schema_arrow.get_field_index(column)
    values = []
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(index).statistics
        if statistics is None or not statistics.has_min_max:
            return pc.max(reader.read(columns=[column]).column(0)).as_py()
        values.append(statistics.max)
    return max(values) if values else None


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def _first_future_row(
    reader: pq.ParquetFile, contract: EntityContract, column: str, limit: dt.datetime
) -> str:
    """The key (or row number) of the first row past `limit`, for the error message."""
    columns = [column] + ([contract.key] if contract.key and contract.key != column else [])
    table = reader.read(columns=columns)
    values = table.column(column).to_pylist()
    for row, value in enumerate(values):
        if value is not None and _naive_utc(value) > limit:
            where = (
                f"{contract.key} {table.column(contract.key)[row].as_py()}"
                if contract.key
                else f"row {row}"
            )
            return f"{where} has {column} {value}"
    return "a row"


def file_violations(
    contract: EntityContract,
    path: Path,
    load_date: dt.date,
    relative: str,
    future_limit: dt.datetime,
) -> list[Violation]:
    """Every way one landing file breaks the contract (footer first, data only to name a row)."""
    try:
        reader = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        return [
            Violation(
                contract.entity, load_date, relative, None, f"unreadable Parquet file: {error}"
            )
        ]
    schema = reader.schema_arrow
    found = [
        Violation(contract.entity, load_date, relative, column, rule)
        for column, rule in schema_violations(contract, schema)
    ]
    broken = {violation.column for violation in found}
    for column in contract.columns:
        if column.name in broken:
            continue
        if not column.nullable:
            nulls = _null_count(reader, column.name)
            if nulls:
                found.append(
                    Violation(
                        contract.entity,
                        load_date,
                        relative,
                        column.name,
                        f"{nulls:,} null values in a column declared not nullable",
                    )
                )
        if column.data_type.lower() == "timestamp":
            newest = _max_value(reader, column.name)
            if newest is not None and _naive_utc(newest) > future_limit:
                row = _first_future_row(reader, contract, column.name, future_limit)
                found.append(
                    Violation(
                        contract.entity,
                        load_date,
                        relative,
                        column.name,
                        f"timestamp in the future: {row}, after the run's clock "
                        f"{future_limit.isoformat(sep=' ')} (tolerance included)",
                    )
                )
    return found


def check_landing(
    contracts: Iterable[EntityContract],
    root: Path,
    since: Mapping[str, dt.date | None],
    until: dt.date | None,
    now: dt.datetime,
    tolerance: dt.timedelta,
) -> list[Violation]:
    """Violations in every load partition after `since[entity]` (and not after `until`).

    `now` is the run's clock (naive UTC): a partition dated after today, or a timestamp later
    than `now + tolerance`, cannot be true and is rejected before it can move a watermark.
    """
    limit = now + tolerance
    violations: list[Violation] = []
    for contract in contracts:
        start = since.get(contract.entity)
        for load_date, files in sorted(partitions(root, contract.entity).items()):
            if (start is not None and load_date <= start) or (
                until is not None and load_date > until
            ):
                continue
            folder = f"{contract.entity}/load_date={load_date.isoformat()}"
            if load_date > limit.date():
                violations.append(
                    Violation(
                        contract.entity,
                        load_date,
                        folder,
                        None,
                        f"load partition dated after the run's clock ({now.date()})",
                    )
                )
                continue
            for path in files:
                violations.extend(
                    file_violations(contract, path, load_date, f"{folder}/{path.name}", limit)
                )
    return violations


def summarize(violations: Sequence[Violation], limit: int = 10) -> str:
    """One line for stderr and the history: the first few violations and how many in all."""
    shown = "; ".join(violation.message() for violation in violations[:limit])
    more = len(violations) - limit
    return shown + (f"; and {more} more" if more > 0 else "")
