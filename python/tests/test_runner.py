"""`pipeline run` end to end through the real CLI: every exit code, history, metrics, lineage."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from conftest import TODAY, Project, make_project
from pipeline import PROJECT_DIR, generator
from pipeline.cli import app
from pipeline.history import History
from pipeline.lock import RunLock
from pipeline.runner import intersect


@pytest.fixture
def fresh_project(tmp_path: Path) -> Project:
    """20 daily loads up to the day before yesterday: fresh, with room to append yesterday."""
    return make_project(tmp_path, days=20, end_date=TODAY - dt.timedelta(days=2))


@pytest.mark.parametrize(
    "select, expected",
    [
        ((), ["path:seeds path:models/staging"]),
        (
            ("stg_landing__orders+",),
            ["path:seeds,stg_landing__orders+", "path:models/staging,stg_landing__orders+"],
        ),
        (
            ("a b",),
            ["path:seeds,a", "path:seeds,b", "path:models/staging,a", "path:models/staging,b"],
        ),
    ],
)
def test_select_is_intersected_with_each_phase(
    select: tuple[str, ...], expected: list[str]
) -> None:
    assert intersect("path:seeds path:models/staging", select) == expected


def _rewrite_orders(landing: Path, load_date: dt.date, keep_fraction: float) -> None:
    path = landing / "orders" / f"load_date={load_date}" / "part-0000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, max(1, int(table.num_rows * keep_fraction))), path)


def test_volume_anomaly_stops_before_the_marts_and_a_normal_day_passes(
    fresh_project: Project,
) -> None:
    project = fresh_project
    code, stdout, _ = project.pipeline("run")
    assert code == 0, stdout
    assert "success (exit 0)" in stdout
    built = project.warehouse.checksums()

    load_date, _ = generator.append_day(project.settings.landing_root)
    original = project.root / "orders-original.parquet"
    new_orders = (
        project.settings.landing_root / "orders" / f"load_date={load_date}" / "part-0000.parquet"
    )
    shutil.copy(new_orders, original)
    _rewrite_orders(project.settings.landing_root, load_date, keep_fraction=0.05)
    code, _, stderr = project.pipeline("run")
    assert code == 4
    assert "stg_landing__orders" in stderr and "ANOMALY" in stderr and str(load_date) in stderr
    assert project.warehouse.checksums() == built, "no mart may change after a failed volume gate"

    shutil.copy(original, new_orders)
    code, _, stderr = project.pipeline("run", "--log-format", "json")
    assert code == 0, stderr
    assert project.warehouse.checksums() != built
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert {"run_started", "freshness", "volume", "run_finished"} <= {
        entry.get("event") for entry in logs
    }

    runs = project.history.runs(10)
    assert [(r.status, r.exit_code) for r in runs] == [
        ("success", 0),
        ("volume", 4),
        ("success", 0),
    ]
    nodes = project.history.nodes(runs[0].run_id)
    fct_orders = next(n for n in nodes if n.name == "fct_orders")
    assert fct_orders.status == "success" and fct_orders.layer == "marts"
    assert (
        fct_orders.row_count
        == project.warehouse.query("select count(*) from marts.fct_orders")[0][0]
    )

    metrics = {
        family.name: family
        for family in text_string_to_metric_families(project.settings.metrics_path.read_text())
    }
    assert {
        "commerce_run_exit_code",
        "commerce_model_rows",
        "commerce_source_freshness_age_seconds",
        "commerce_gate_passed",
        "commerce_last_success_timestamp_seconds",
    } <= set(metrics)
    exit_codes = [sample.value for sample in metrics["commerce_run_exit_code"].samples]
    assert exit_codes == [0]
    model_rows = {s.labels["node"]: s.value for s in metrics["commerce_model_rows"].samples}
    assert model_rows["fct_orders"] == fct_orders.row_count

    events = [json.loads(line) for line in project.settings.lineage_path.read_text().splitlines()]
    last_run = [e for e in events if e["run"]["runId"] == runs[0].run_id]
    assert [e["eventType"] for e in last_run] == ["START", "COMPLETE"]
    assert any(o["name"].endswith("fct_daily_revenue") for o in last_run[1]["outputs"])
    children = [
        e
        for e in events
        if e["run"].get("facets", {}).get("parent", {}).get("run", {}).get("runId")
        == runs[0].run_id
    ]
    assert children and all(e["eventType"] == "COMPLETE" for e in children)
    failed_run = [e for e in events if e["run"]["runId"] == runs[1].run_id]
    assert [e["eventType"] for e in failed_run] == ["START", "FAIL"]


def test_stale_source_exits_3_and_changes_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path, days=5, end_date=TODAY - dt.timedelta(days=4))
    project.warehouse.build()
    before = project.warehouse.checksums()
    code, _, stderr = project.pipeline("run")
    assert code == 3
    assert "stale source" in stderr and "landing.orders" in stderr
    assert project.warehouse.checksums() == before
    run = project.history.runs(1)[0]
    assert (run.status, run.exit_code, run.phase) == ("stale", 3, "freshness")


def test_failing_test_exits_1_and_publishes_nothing(fresh_project: Project) -> None:
    project = fresh_project
    last = TODAY - dt.timedelta(days=2)
    folder = project.settings.landing_root / "orders" / f"load_date={last}"
    good = pq.read_table(folder / "part-0000.parquet")
    rows = good.slice(0, 1).to_pylist()
    rows[0].update(order_id=99_999_999, order_status="lost")
    pq.write_table(
        good.schema.empty_table().from_pylist(rows, schema=good.schema),
        folder / "part-0001.parquet",
    )

    code, _, stderr = project.pipeline("run")
    assert code == 1
    assert "relationships_stg_landing__orders_order_status" in stderr and "(fail)" in stderr
    assert project.marts() == set(), "nothing downstream of a failed staging test is published"
    run = project.history.runs(1)[0]
    assert (run.status, run.exit_code, run.phase) == ("dbt_error", 1, "staging")


def test_retry_resumes_only_what_failed_or_was_skipped(fresh_project: Project) -> None:
    """A failure that is not in the data (here a table someone created by hand in the way of
    an incremental mart) is fixed, then --retry builds only the failed and skipped nodes."""
    project = fresh_project
    project.settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    project.warehouse.query("create schema if not exists marts")
    project.warehouse.query(
        "create table marts.fct_daily_revenue (revenue_date date, note varchar)"
    )
    code, _, stderr = project.pipeline("run")
    assert code == 1 and "fct_daily_revenue" in stderr
    failed = project.history.runs(1)[0]
    assert failed.phase == "downstream"
    assert project.marts() == {"fct_daily_revenue"}, "the failed run published nothing"

    # The failed run's private copy is kept for --retry: the person fixes it there.
    generations = project.settings.warehouse_path.with_name("warehouse.generations")
    kept = generations / f"{failed.run_id}.unpublished" / "warehouse.duckdb"
    with duckdb.connect(str(kept)) as con:
        assert con.sql("select count(*) from marts.fct_orders").fetchone() != (0,)
        con.execute("drop table marts.fct_daily_revenue")
    # A person compiles one model by hand in between: its run_results.json is not the runner's.
    assert project.warehouse.dbt("compile", "--select", "dim_customers").success
    code, _, stderr = project.pipeline("run", "--retry")
    assert code == 0, stderr
    retried = {node.name for node in project.history.nodes(project.history.runs(1)[0].run_id)}
    assert "fct_daily_revenue" in retried and "assert_daily_revenue_matches_orders" in retried
    assert "fct_orders" not in retried and "stg_landing__orders" not in retried
    assert project.warehouse.query("select count(*) from marts.fct_daily_revenue")[0][0] > 0


def test_retry_with_nothing_to_resume_says_so_and_exits_2(fresh_project: Project) -> None:
    code, _, stderr = fresh_project.pipeline("run", "--retry")
    assert code == 2 and "--retry has nothing to resume: no run yet" in stderr
    assert fresh_project.pipeline("run")[0] == 0
    code, _, stderr = fresh_project.pipeline("run", "--retry")
    assert code == 2 and "ended success" in stderr


@pytest.mark.parametrize(
    "selector, named",
    [
        ("fct_order+", "--select fct_order+ does not match any enabled node"),
        ("fct_orders; rm -rf x", "--select fct_orders; rm -rf x does not match any enabled node"),
        ("state:modified+", "state_path is not set"),  # test_state.py: with a state
    ],
)
def test_a_selection_dbt_cannot_use_or_that_matches_nothing_exits_2(
    fresh_project: Project, selector: str, named: str
) -> None:
    """A typo in a scheduler's selector would otherwise succeed forever, building nothing."""
    code, stdout, stderr = fresh_project.pipeline("run", "--select", selector)
    assert code == 2, stderr
    assert named in stderr
    assert fresh_project.marts() == set()
    run = fresh_project.history.runs(1)[0]
    assert (run.status, run.exit_code, run.phase) == ("usage", 2, "select")
    assert "Traceback" not in stderr + stdout


def test_gates_never_pass_on_an_earlier_runs_artifacts(
    fresh_project: Project, tmp_path: Path
) -> None:
    """With the landing zone moved away, nothing may pass on the last run's sources.json."""
    project = fresh_project
    assert project.pipeline("run")[0] == 0
    project.settings.landing_root.rename(tmp_path / "landing.bak")
    code, _, stderr = project.pipeline("run")
    assert code == 2 and "landing_root" in stderr and "does not exist" in stderr
    assert "freshness pass" not in stderr
    failed = project.history.runs(1)[0]
    with duckdb.connect(str(project.settings.history_path)) as con:
        gates = con.execute(
            "select count(*) from gate_checks where run_id = ?", [failed.run_id]
        ).fetchone()
    assert gates == (0,), "no gate verdict is recorded for a run whose gates could not run"


def test_a_project_dbt_cannot_parse_is_a_usage_error(fresh_project: Project) -> None:
    """A broken project yml is exit 2 with dbt's message, not a dbt error (exit 1)."""
    copy = _project_copy(fresh_project)
    (copy / "models" / "marts" / "core" / "_core__models.yml").write_text(
        "models:\n  - name: [unclosed\n"
    )
    code, _, stderr = fresh_project.pipeline("run")
    assert (
        code == 2 and "dbt could not parse the project" in stderr and "_core__models.yml" in stderr
    )


def test_a_second_run_waits_for_no_one_and_exits_5(fresh_project: Project) -> None:
    project = fresh_project
    with RunLock(project.settings.lock_path, "holder-run"):
        process = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run", "--config", str(project.config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
    assert process.returncode == 5, process.stderr
    assert "holder-run" in process.stderr and f"pid {os.getpid()}" in process.stderr
    run = project.history.runs(1)[0]
    assert (run.status, run.exit_code) == ("locked", 5)


def test_a_stale_lock_from_a_killed_run_is_taken_over(fresh_project: Project) -> None:
    project = fresh_project
    project.settings.lock_path.write_text(
        json.dumps(
            {
                "run_id": "killed-run",
                "pid": 999_999,
                "host": "x",
                "since": "2026-01-01T00:00:00+00:00",
            }
        )
    )
    code, _, stderr = project.pipeline("gates")
    assert code == 0, stderr
    assert "stale lock" in stderr and "killed-run" in stderr


def test_backfill_reprocesses_a_window_and_twice_changes_nothing(fresh_project: Project) -> None:
    project = fresh_project
    assert project.pipeline("run")[0] == 0
    before = project.warehouse.checksums()
    start = (TODAY - dt.timedelta(days=8)).isoformat()
    end = (TODAY - dt.timedelta(days=6)).isoformat()
    for _ in range(2):
        code, _, stderr = project.pipeline("run", "--start-date", start, "--end-date", end)
        assert code == 0, stderr
        assert project.warehouse.checksums() == before
    checked = project.history.runs(1)[0]
    assert checked.arguments == f"run --start-date {start} --end-date {end}"


@pytest.mark.parametrize(
    "args, config_text, expected",
    [
        (["run"], "warehouse_pth: x.duckdb\n", "warehouse_pth"),
        (["run"], "threads: 0\n", "threads=0"),
        (["run", "--start-date", "2026-02-30", "--end-date", "2026-03-01"], "", "2026-02-30"),
        (["run", "--start-date", "2026-03-02", "--end-date", "2026-03-01"], "", "is after"),
    ],
)
def test_usage_errors_exit_2_and_name_the_problem(
    tmp_path: Path, args: list[str], config_text: str, expected: str
) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text(config_text)
    result = CliRunner().invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 2
    assert expected in result.stderr


@pytest.mark.parametrize("command", ["run", "history"])
def test_an_error_names_a_long_path_in_one_line_on_a_narrow_terminal(
    tmp_path: Path, command: str
) -> None:
    """Found when the suite ran under xdist (longer temp paths): on an 80-column stderr,
    rich broke a history file's path over two lines, so the error could not be grepped or
    pasted. Both a configuration error and a history error, through the real CLI at 40
    columns, print the whole path on the error's one line."""
    folder = tmp_path / ("a-folder-name-longer-than-the-terminal-is-wide-" * 2)
    folder.mkdir()
    history = folder / "history.duckdb"
    history.write_bytes(b"this is not a duckdb file" * 100)
    config = folder / "pipeline.yml"
    config.write_text(yaml.safe_dump({"history_path": str(history)}))
    missing = folder / "missing.yml"
    env = {**os.environ, "COLUMNS": "40"}
    for args, expected in (
        ([command, "--config", str(missing)], f"configuration error: config file {missing} "),
        ([command, "--config", str(config)], f"history error: the run history {history} "),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        assert result.returncode == 2, result.stderr
        assert any(line.startswith(expected) for line in result.stderr.splitlines()), result.stderr


def test_a_lineage_endpoint_that_is_down_never_stops_the_warehouse(
    fresh_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lineage and metrics are reports about a run: when one fails, the run goes on and says so."""
    monkeypatch.setenv("PIPELINE_LINEAGE_URL", "http://alice:s3cret@127.0.0.1:9/api/v1/lineage")
    code, _, stderr = fresh_project.pipeline("run")
    assert code == 0, stderr
    assert "lineage could not be written, the run goes on" in stderr
    assert "s3cret" not in stderr
    assert "Traceback" not in stderr
    assert "fct_orders" in fresh_project.marts()
    run = fresh_project.history.runs(1)[0]
    assert (run.status, run.exit_code) == ("success", 0)
    assert fresh_project.settings.metrics_path.exists()


def _project_copy(project: Project) -> Path:
    """A copy of the dbt project for a test that must change a model, pointed at by --config."""
    copy = project.root / "project"
    shutil.copytree(
        PROJECT_DIR,
        copy,
        ignore=shutil.ignore_patterns(".venv*", "data", "target", ".git", "build"),
    )
    config = yaml.safe_load(project.config.read_text())
    project.config.write_text(yaml.safe_dump({**config, "project_dir": str(copy)}))
    return copy


def test_the_summary_counts_failed_and_skipped_models_not_only_tests(
    fresh_project: Project,
) -> None:
    """A contract error in a mart: exit 1, the node named, and the summary says a model failed."""
    copy = _project_copy(fresh_project)
    models = copy / "models" / "marts" / "core" / "_core__models.yml"
    text = models.read_text()
    sku = "      - name: sku\n        description: \"{{ doc('sku') }}\"\n        data_type: string"
    assert sku in text
    models.write_text(text.replace(sku, sku.replace("data_type: string", "data_type: bigint")))
    code, stdout, stderr = fresh_project.pipeline("run")
    assert code == 1 and "model.commerce.dim_products" in stderr, stderr
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in stdout.splitlines()
        if line.count("│") > 5
    }
    header = [
        "models",
        "models failed",
        "models skipped",
        "rows",
        "tests",
        "tests failed",
        "tests skipped",
        "node seconds",
    ]
    marts = dict(zip(header, rows["marts"], strict=True))
    assert marts["models failed"] == "1"
    assert int(marts["tests skipped"]) > 0, "the failed mart's tests are shown as skipped"


def test_a_warehouse_file_held_by_another_process_is_a_lock_exit_5(fresh_project: Project) -> None:
    project = fresh_project
    # Built by another process: this one's dbt keeps no DuckDB instance of the file open.
    built = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--config", str(project.config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
            "print('holding', flush=True); time.sleep(120)",
            str(project.settings.warehouse_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        code, _, stderr = project.pipeline("run")
    finally:
        holder.kill()
        holder.wait()
    assert code == 5, stderr
    assert "another process holds the warehouse file" in stderr and str(holder.pid) in stderr
    run = project.history.runs(1)[0]
    assert (run.exit_code, run.phase) == (5, "warehouse")


def test_a_corrupt_history_is_named_in_one_line_and_rebuilt_from_its_journal(
    fresh_project: Project,
) -> None:
    """The volume and null-rate baselines live in the history: a damaged file is never
    silently discarded."""
    project = fresh_project
    assert project.pipeline("run")[0] == 0
    before = [(run.run_id, run.status) for run in project.history.runs(10)]
    judged = project.history.volume_history(["stg_landing__orders"])["stg_landing__orders"]
    assert judged, "the first run judged every load"
    rates = project.history.null_rate_history(["stg_landing__events"])
    assert len(rates[("stg_landing__events", "customer_id")]) == len(judged)
    project.settings.history_path.write_bytes(b"this is not a duckdb file" * 100)

    code, stdout, stderr = project.pipeline("run")
    assert code == 2
    assert str(project.settings.history_path) in stderr and "pipeline history --rebuild" in stderr
    assert "Traceback" not in stderr + stdout

    code, stdout, _ = project.pipeline("history", "--rebuild")
    assert code == 0 and "journal entries" in stdout
    rebuilt = History(project.settings.history_path)
    assert [(run.run_id, run.status) for run in rebuilt.runs(10)] == before
    assert rebuilt.volume_history(["stg_landing__orders"])["stg_landing__orders"] == judged
    assert rebuilt.null_rate_history(["stg_landing__events"]) == rates
    assert project.settings.history_path.with_name("history.duckdb.corrupt").exists()
    assert project.pipeline("run")[0] == 0


def _start_run(project: Project) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--config", str(project.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_phase(project: Project, process: subprocess.Popen[str], phase: str) -> str:
    """The run id of the newest run once the history shows it in `phase`."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        runs = History(project.settings.history_path).runs(1)
        if runs and runs[0].status == "running" and runs[0].phase == phase:
            return runs[0].run_id
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the run never reached {phase}: {process.communicate()[1][-2000:]}")


def _lineage_states(project: Project, run_id: str) -> list[str]:
    events = [json.loads(line) for line in project.settings.lineage_path.read_text().splitlines()]
    return [event["eventType"] for event in events if event["run"]["runId"] == run_id]


def test_sigterm_ends_a_run_cleanly_and_records_it_cancelled(fresh_project: Project) -> None:
    project = fresh_project
    process = _start_run(project)
    try:
        run_id = _wait_for_phase(project, process, "staging")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert "cancelled by SIGTERM during staging" in stderr and "Traceback" not in stderr
    run = project.history.runs(1)[0]
    assert (run.run_id, run.status, run.exit_code, run.phase) == (
        run_id,
        "cancelled",
        143,
        "staging",
    )
    assert _lineage_states(project, run_id) == ["START", "ABORT"]
    metrics = {
        family.name: family
        for family in text_string_to_metric_families(project.settings.metrics_path.read_text())
    }
    assert [sample.value for sample in metrics["commerce_run_exit_code"].samples] == [143]

    # dbt's retry would rebuild only what the interrupted build reported, passing over the
    # nodes it never started: a cancelled run is run again, and its private state goes.
    generations = project.settings.warehouse_path.with_name("warehouse.generations")
    assert not (generations / f"{run_id}.unpublished").exists()
    code, _, stderr = project.pipeline("run", "--retry")
    assert code == 2, stderr
    assert f"--retry has nothing to resume: run {run_id} ended cancelled" in stderr


def test_a_run_killed_without_a_word_is_found_by_the_next_one(fresh_project: Project) -> None:
    project = fresh_project
    process = _start_run(project)
    try:
        killed = _wait_for_phase(project, process, "staging")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        process.kill()
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert f"run {killed} was abandoned in phase staging" in stderr
    runs = {run.run_id: run for run in project.history.runs(5)}
    assert (runs[killed].status, runs[killed].phase) == ("abandoned", "staging")
    assert _lineage_states(project, killed) == ["START", "ABORT"]


def _metric_samples(project: Project) -> dict[str, list[tuple[dict[str, str], float]]]:
    families = text_string_to_metric_families(project.settings.metrics_path.read_text())
    return {f.name: [(dict(s.labels), s.value) for s in f.samples] for f in families}


def test_metrics_name_models_and_a_partial_run_updates_only_what_it_built(
    fresh_project: Project,
) -> None:
    project = fresh_project
    assert project.pipeline("run")[0] == 0
    full = _metric_samples(project)
    nodes = {labels["node"] for labels, _ in full["commerce_model_rows"]}
    assert "fct_orders" in nodes and "stg_landing__orders" in nodes
    # A view stores no rows; counting one re-ran its query over all history on every run.
    assert "int_payments_converted" not in nodes and "int_order_items_priced" not in nodes
    assert not any(node.isdigit() or "on-run-start" in node for node in nodes)
    tests = {
        labels["node"]: value
        for labels, value in full["commerce_model_tests"]
        if labels["status"] == "pass"
    }
    assert tests["fct_orders"] >= 5, "fct_orders' data tests are counted under its name"
    assert not any(labels["node"].isdigit() for labels, _ in full["commerce_model_tests"])
    last_success = full["commerce_last_success_timestamp_seconds"][0][1]

    assert project.pipeline("run", "--select", "fct_daily_revenue")[0] == 0
    partial = _metric_samples(project)
    assert partial["commerce_last_success_timestamp_seconds"][0][1] == last_success, (
        "a --select run is not a success of the whole warehouse"
    )
    rows = {labels["node"]: value for labels, value in partial["commerce_model_rows"]}
    before = {labels["node"]: value for labels, value in full["commerce_model_rows"]}
    assert rows["fct_orders"] == before["fct_orders"], (
        "models the run did not build keep their series"
    )
    assert set(rows) == set(before)


def test_json_logs_are_only_json_lines_dbt_errors_included(fresh_project: Project) -> None:
    """A failing run in JSON mode: every stderr line is a JSON object, dbt's errors among them,
    and nothing of dbt's coloured text reaches stdout or stderr."""
    project = fresh_project
    last = TODAY - dt.timedelta(days=2)
    folder = project.settings.landing_root / "orders" / f"load_date={last}"
    good = pq.read_table(folder / "part-0000.parquet")
    rows = good.slice(0, 1).to_pylist()
    rows[0].update(order_id=99_999_999, order_status="lost")
    pq.write_table(
        good.schema.empty_table().from_pylist(rows, schema=good.schema),
        folder / "part-0001.parquet",
    )
    code, stdout, stderr = project.pipeline("run", "--log-format", "json")
    assert code == 1
    assert stdout.strip() == "", "JSON mode leaves stdout empty"
    lines = [json.loads(line) for line in stderr.splitlines()]  # raises on any non-JSON line
    dbt_lines = [line for line in lines if line.get("event") == "dbt"]
    assert any(
        "relationships_stg_landing__orders_order_status" in line["msg"] for line in dbt_lines
    )
    assert "\x1b[" not in stderr, "no terminal colour codes"


def test_a_column_added_to_an_incremental_mart_gets_dbts_message_then_a_rebuild(
    fresh_project: Project,
) -> None:
    """The contract grows by a column: the incremental run stops with dbt's own on_schema_change
    message (never a binder error from our macros), and the documented rebuild publishes it."""
    project = fresh_project
    copy = _project_copy(project)
    assert project.pipeline("run")[0] == 0
    model = copy / "models" / "marts" / "core" / "fct_orders.sql"
    sql = model.read_text()
    sql = sql.replace(
        "        order_total_usd > 0 and paid_usd >= order_total_usd as is_fully_paid,\n",
        "        order_total_usd > 0 and paid_usd >= order_total_usd as is_fully_paid,\n"
        "        line_count > 1 as is_multi_line,\n",
    ).replace("    is_fully_paid,\n", "    is_fully_paid,\n    is_multi_line,\n")
    model.write_text(sql)
    models = copy / "models" / "marts" / "core" / "_core__models.yml"
    models.write_text(
        models.read_text().replace(
            "      - name: is_fully_paid\n        description: True when completed payments cover "
            "order_total_usd.\n        data_type: boolean\n",
            "      - name: is_fully_paid\n        description: True when completed payments cover "
            "order_total_usd.\n        data_type: boolean\n      - name: is_multi_line\n"
            "        description: True when the order has more than one line.\n"
            "        data_type: boolean\n",
        )
    )

    code, _, stderr = project.pipeline("run")
    assert code == 1, stderr
    assert "out of sync" in stderr and "is_multi_line" in stderr
    assert "Binder Error" not in stderr

    code, _, stderr = project.pipeline("run", "--full-refresh", "--select", "fct_orders+")
    assert code == 0, stderr
    multi = project.warehouse.query(
        "select count(*) filter (where is_multi_line), count(*) filter (where line_count > 1) "
        "from marts.fct_orders"
    )[0]
    assert multi[0] == multi[1] > 0
