"""Bad input fails loudly and publishes nothing (DESIGN.md, "Invariants the tests must prove").

A warehouse is built once from normal loads; each case copies it, lands one bad daily load,
and runs `pipeline run`: the exit code says what kind of failure it is, stderr names the
thing that broke, and no mart changes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import NEW_DAY, Checksums, copy_project
from pipeline import generator


def _part(landing: Path, entity: str) -> Path:
    return landing / entity / f"load_date={NEW_DAY}" / "part-0000.parquet"


def null_key(landing: Path) -> None:
    path = _part(landing, "orders")
    table = pq.read_table(path)
    ids = table.column("order_id").to_pylist()
    ids[0] = None
    pq.write_table(table.set_column(0, "order_id", pa.array(ids, pa.int64())), path)


def unknown_enum(landing: Path) -> None:
    path = _part(landing, "payments")
    table = pq.read_table(path)
    index = table.schema.get_field_index("payment_status")
    statuses = ["chargeback", *table.column(index).to_pylist()[1:]]
    pq.write_table(table.set_column(index, "payment_status", pa.array(statuses)), path)


def empty_batch(landing: Path) -> None:
    path = _part(landing, "events")
    pq.write_table(pq.read_table(path).slice(0, 0), path)


def exploded_batch(landing: Path) -> None:
    path = _part(landing, "order_items")
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table] * 10), path)


def retyped_column(landing: Path) -> None:
    path = _part(landing, "order_items")
    table = pq.read_table(path)
    index = table.schema.get_field_index("quantity")
    as_text = pc.cast(table.column(index), pa.string())
    as_text = pa.chunked_array([pa.array(["two", *as_text.to_pylist()[1:]])])
    pq.write_table(table.set_column(index, "quantity", as_text), path)


def malformed_file(landing: Path) -> None:
    _part(landing, "orders").write_bytes(b"PAR1 this is not a parquet file")


# Breaches of the landing contract are caught from the files before anything is built (exit
# 4, entity, load, file and column named); values the contract cannot judge fail dbt's tests.
CASES: list[tuple[Callable[[Path], None], int, list[str]]] = [
    (null_key, 4, [f"landing contract: orders load {NEW_DAY}", "column order_id: 1 null values"]),
    (unknown_enum, 1, ["relationships_stg_landing__payments_payment_status"]),
    (empty_batch, 4, ["stg_landing__events", f"load {NEW_DAY}", "brought 0 rows"]),
    (exploded_batch, 4, ["stg_landing__order_items", "ANOMALY"]),
    (
        retyped_column,
        4,
        [
            f"landing contract: order_items load {NEW_DAY}",
            "column quantity: type string is not compatible with the declared integer",
        ],
    ),
    (
        malformed_file,
        4,
        [f"orders/load_date={NEW_DAY}/part-0000.parquet", "unreadable Parquet file", "magic bytes"],
    ),
]


@pytest.mark.parametrize(
    "corrupt, exit_code, named", CASES, ids=[case[0].__name__ for case in CASES]
)
def test_bad_load_fails_loudly_and_publishes_nothing(
    baseline: tuple[Path, Checksums],
    tmp_path: Path,
    corrupt: Callable[[Path], None],
    exit_code: int,
    named: list[str],
) -> None:
    _, marts_before = baseline
    project = copy_project(baseline, tmp_path)
    assert generator.append_day(project.settings.landing_root)[0] == NEW_DAY
    corrupt(project.settings.landing_root)

    code, _, stderr = project.pipeline("run")
    assert code == exit_code, stderr
    for text in named:
        assert text in stderr, f"stderr does not name {text!r}:\n{stderr}"
    assert project.warehouse.checksums() == marts_before, "a mart changed after a failed run"
    run = project.history.runs(1)[0]
    assert run.exit_code == exit_code and all(text in (run.message or "") for text in named[:1])
