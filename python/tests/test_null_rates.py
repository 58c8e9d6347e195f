"""The null-rate gate through the real CLI (issue 13): a column that empties stops the run.

A warehouse is built once from 20 normal daily loads (its null rates are the drift baseline);
each case copies it, lands the next load with one column damaged the way an upstream does by
accident, and runs `pipeline run`. Expected rates are computed here from the Parquet files
with plain SQL, never read back from the runner's output.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import TODAY, Project, make_project
from pipeline import PROJECT_DIR, generator

NEW_DAY = TODAY - dt.timedelta(days=1)
STAGING_YML = PROJECT_DIR / "models" / "staging" / "landing" / "_landing__models.yml"
SOURCES_YML = PROJECT_DIR / "models" / "staging" / "landing" / "_landing__sources.yml"


def _staging_columns() -> dict[str, dict[str, float | None]]:
    """Per staging model, its declared columns (but the load date) and their ceilings."""
    models = yaml.safe_load(STAGING_YML.read_text())["models"]
    return {
        model["name"]: {
            column["name"]: ((column.get("config") or {}).get("meta") or {}).get("max_null_rate")
            for column in model["columns"]
            if column["name"] != "_load_date"
        }
        for model in models
    }


def _nullable_with_a_ceiling() -> list[tuple[str, str, float]]:
    """Every (entity, column, ceiling) the landing contract lets be null and staging bounds:
    the columns a max_null_rate violation can reach the gate through."""
    sources = yaml.safe_load(SOURCES_YML.read_text())["sources"][0]["tables"]
    found = []
    for table in sources:
        ceilings = _staging_columns()[f"stg_landing__{table['name']}"]
        for column in table["columns"]:
            nullable = ((column.get("config") or {}).get("meta") or {}).get("nullable")
            ceiling = ceilings.get(column["name"])
            if nullable and ceiling is not None:
                found.append((table["name"], column["name"], ceiling))
    return found


@pytest.fixture(scope="module")
def baseline(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, tuple[object, ...]]]:
    root = tmp_path_factory.mktemp("nulls")
    project = make_project(root, days=20, end_date=TODAY - dt.timedelta(days=2))
    code, stdout, _ = project.pipeline("run")
    assert code == 0, stdout
    return root, project.warehouse.checksums()


def _copy(baseline: tuple[Path, dict[str, tuple[object, ...]]], tmp_path: Path) -> Project:
    source, _ = baseline
    shutil.copytree(source / "landing", tmp_path / "landing")
    for database in [*source.glob("warehouse.duckdb*"), *source.glob("history.duckdb*")]:
        shutil.copy(database, tmp_path / database.name)
    return Project(tmp_path, tmp_path / "landing")


def _new_load(project: Project, entity: str) -> Path:
    assert generator.append_day(project.settings.landing_root)[0] == NEW_DAY
    (path,) = (project.settings.landing_root / entity / f"load_date={NEW_DAY}").glob("*.parquet")
    return path


def _null_where(table: pa.Table, column: str, mask: pa.Array) -> pa.Table:
    index = table.schema.get_field_index(column)
    nulled = pc.if_else(mask, pa.scalar(None, table.schema.field(index).type), table[column])
    return table.set_column(index, column, nulled)


def _history(project: Project, sql: str, params: list[object]) -> list[tuple[object, ...]]:
    with duckdb.connect(str(project.settings.history_path), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def _metrics(project: Project) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = project.settings.metrics_path.read_text()
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def _event_null_rates(landing: Path) -> dict[dt.date, float]:
    """Share of anonymous events per load as staging keeps them: an event belongs to the
    load of its latest copy (duplicates share event_id and customer_id)."""
    with duckdb.connect() as con:
        rows = con.execute(
            "select last_load, avg(case when customer_id is null then 1.0 else 0.0 end) "
            "from (select event_id, max(load_date) as last_load, any_value(customer_id) as "
            f"customer_id from read_parquet('{landing}/events/*/*.parquet', "
            "hive_partitioning = true) group by event_id) group by last_load"
        ).fetchall()
    return {dt.date.fromisoformat(str(day)): float(rate) for day, rate in rows}


def test_a_column_that_suddenly_goes_60_percent_null_stops_before_the_marts(
    baseline: tuple[Path, dict[str, tuple[object, ...]]], tmp_path: Path
) -> None:
    project = _copy(baseline, tmp_path)
    expected_past = _event_null_rates(project.settings.landing_root)
    path = _new_load(project, "events")
    original = path.with_name("original.bak")
    shutil.copy(path, original)

    # 60% of the load's distinct events lose their customer (copies of one event alike)
    events = pq.read_table(path)
    ids = sorted(set(events["event_id"].to_pylist()))
    anonymous = {
        event_id
        for event_id, customer in zip(
            events["event_id"].to_pylist(), events["customer_id"].to_pylist(), strict=True
        )
        if customer is None
    }
    target = round(0.6 * len(ids))
    more = [event_id for event_id in ids if event_id not in anonymous][: target - len(anonymous)]
    mask = pc.is_in(events["event_id"], pa.array(sorted(anonymous | set(more))))
    pq.write_table(_null_where(events, "customer_id", mask), path)
    rate = target / len(ids)
    assert abs(rate - 0.6) < 0.001

    code, _, stderr = project.pipeline("run")
    assert code == 4, stderr
    for text in (
        "null rate ANOMALY: stg_landing__events.customer_id",
        f"load {NEW_DAY}",
        f"{rate:.1%} null",
        "breaks drift band",
    ):
        assert text in stderr, f"stderr does not name {text!r}:\n{stderr}"
    assert "stg_landing__events.event_id" not in stderr, "only the damaged column is named"
    assert project.warehouse.checksums() == baseline[1], "a mart changed after a failed gate"
    run = project.history.runs(1)[0]
    assert (run.exit_code, run.phase) == (4, "nulls")
    assert "stg_landing__events.customer_id" in (run.message or "")

    # the history holds every column of every staging model for the new load, and the
    # baseline run's rates of every earlier load, each as computed from the Parquet files
    recorded = _history(
        project,
        "select subject, column_name, null_rate, passed from null_rates "
        "where run_id = ? and load_date = ?",
        [run.run_id, NEW_DAY],
    )
    assert {(subject, column) for subject, column, _, _ in recorded} == {
        (model, column) for model, columns in _staging_columns().items() for column in columns
    }
    failed = {(subject, column, passed) for subject, column, _, passed in recorded if not passed}
    assert failed == {("stg_landing__events", "customer_id", False)}
    measured = {(s, c): r for s, c, r, _ in recorded}
    assert measured[("stg_landing__events", "customer_id")] == pytest.approx(rate)
    assert measured[("stg_landing__events", "event_id")] == 0
    learned = project.history.null_rate_history(["stg_landing__events"])
    assert dict(learned[("stg_landing__events", "customer_id")]) == pytest.approx(expected_past)
    assert _history(
        project,
        "select subject, passed from gate_checks where run_id = ? and gate = 'null_rate'",
        [run.run_id],
    ) == [("stg_landing__events.customer_id", False)]
    metrics = _metrics(project)
    rates = {
        (labels["model"], labels["column"]): value
        for labels, value in metrics["commerce_column_null_rate"]
    }
    assert rates[("stg_landing__events", "customer_id")] == pytest.approx(rate)
    gates = {
        labels["subject"]: value
        for labels, value in metrics["commerce_gate_passed"]
        if labels["gate"] == "null_rate"
    }
    assert gates["stg_landing__events"] == 0 and gates["stg_landing__orders"] == 1

    # the upstream repairs its file: the run passes and learns the repaired rate
    shutil.move(original, path)
    repaired = _event_null_rates(project.settings.landing_root)[NEW_DAY]
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    learned = project.history.null_rate_history(["stg_landing__events"])
    newest_day, newest_rate = learned[("stg_landing__events", "customer_id")][0]
    assert newest_day == NEW_DAY and newest_rate == pytest.approx(repaired)


@pytest.mark.parametrize("entity, column, ceiling", _nullable_with_a_ceiling(), ids=str)
def test_a_column_over_its_declared_max_null_rate_stops_the_run_until_accepted(
    baseline: tuple[Path, dict[str, tuple[object, ...]]],
    tmp_path: Path,
    entity: str,
    column: str,
    ceiling: float,
) -> None:
    project = _copy(baseline, tmp_path)
    path = _new_load(project, entity)
    table = pq.read_table(path)
    # the fewest nulls that break the ceiling, plus one: just over the declared line
    nulls = min(table.num_rows, math.floor(ceiling * table.num_rows) + 2)
    mask = pa.array([index < nulls for index in range(table.num_rows)])
    pq.write_table(_null_where(table, column, mask), path)
    rate = nulls / table.num_rows
    assert rate > ceiling

    code, _, stderr = project.pipeline("run")
    model = f"stg_landing__{entity}"
    assert code == 4, stderr
    for text in (
        f"null rate ANOMALY: {model}.{column}",
        f"load {NEW_DAY}",
        f"{rate:.1%} null ({nulls:,} of {table.num_rows:,} rows)",
        "breaks max_null_rate",
        f"declared max_null_rate {ceiling:.1%}",
    ):
        assert text in stderr, f"stderr does not name {text!r}:\n{stderr}"
    assert project.warehouse.checksums() == baseline[1], "a mart changed after a failed gate"

    # an operator vouches for the load: the next run passes it, says so, and publishes it
    code, _, stderr = project.pipeline(
        "accept", "--entity", entity, "--load-date", str(NEW_DAY), "--reason", "form migration"
    )
    assert code == 0, stderr
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert f"null rate accepted: {model}.{column}" in stderr and "form migration" in stderr
    assert project.warehouse.checksums() != baseline[1]
