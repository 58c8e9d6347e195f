"""The Airflow 3 DAG, imported and run end to end with `airflow dags test` in its own virtualenv.

Airflow's constraints clash with dbt's, so it lives in `.venv-airflow` (repo root), installed
once by the first run of this module and reused. The DAG's task calls the project's real
`pipeline` (`.venv/bin/pipeline`) with every path pointed at a temp folder by PIPELINE_* vars.

What `airflow dags test` can and cannot do: it runs the task in-process and records its state
in the metadata DB, but after a retryable failure it keeps polling until `retry_delay` (30 min)
has passed. So the test watches the task instance's state in the metadata DB and stops the
process once the state is final for our purpose (`up_for_retry` is the proof that a retry was
scheduled; we do not wait for the retry itself).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import MARTS
from pipeline import PROJECT_DIR

pytestmark = pytest.mark.airflow

TODAY = dt.datetime.now(dt.UTC).date()
AIRFLOW_VENV = PROJECT_DIR / ".venv-airflow"
AIRFLOW_PIN = "apache-airflow==3.3.2"
PIPELINE = PROJECT_DIR / ".venv" / "bin" / "pipeline"
DAG_FOLDER = PROJECT_DIR / "orchestration" / "airflow"


def airflow_bin() -> Path:
    """`.venv-airflow/bin/airflow`, installing it once (a stamp records the pinned version)."""
    stamp = AIRFLOW_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != AIRFLOW_PIN:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(AIRFLOW_VENV)], check=True)
        subprocess.run(
            [str(AIRFLOW_VENV / "bin" / "pip"), "install", "--quiet", AIRFLOW_PIN], check=True
        )
        stamp.write_text(AIRFLOW_PIN)
    return AIRFLOW_VENV / "bin" / "airflow"


class Deployment:
    """An AIRFLOW_HOME, a landing zone and warehouse paths, all under one temp folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.landing = root / "landing"
        self.warehouse = root / "warehouse.duckdb"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "COMMERCE_PROJECT_DIR": str(PROJECT_DIR),
            "COMMERCE_PIPELINE_BIN": str(PIPELINE),
            "PIPELINE_LANDING_ROOT": str(self.landing),
            "PIPELINE_WAREHOUSE_PATH": str(self.warehouse),
            "PIPELINE_HISTORY_PATH": str(root / "history.duckdb"),
            "PIPELINE_LOCK_PATH": str(root / "pipeline.lock"),
            "PIPELINE_TARGET_PATH": str(root / "target"),
            "PIPELINE_METRICS_PATH": str(root / "metrics" / "commerce.prom"),
            "PIPELINE_LINEAGE_PATH": str(root / "lineage" / "events.jsonl"),
        }
        subprocess.run(
            [str(airflow_bin()), "db", "migrate"], env=self.env, check=True, capture_output=True
        )

    def pipeline(self, *args: str) -> None:
        subprocess.run([str(PIPELINE), *args], env=self.env, check=True, capture_output=True)

    def states(self) -> list[tuple[str, int]]:
        """(state, try_number) of every task instance, from Airflow's metadata DB."""
        with sqlite3.connect(self.root / "airflow" / "airflow.db") as con:
            return con.execute(
                "select coalesce(state, ''), try_number from task_instance"
            ).fetchall()

    def dags_test(self, stop_at: set[str], timeout: float = 300) -> tuple[str, int, str]:
        """`airflow dags test` of today's run until the task reaches a state in `stop_at`.

        The process is always stopped (SIGKILL: it ignores SIGTERM while polling for the retry).
        """
        log = self.root / f"dags-test-{time.monotonic_ns()}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [str(airflow_bin()), "dags", "test", "commerce_warehouse", TODAY.isoformat()],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    states = (
                        self.states() if (self.root / "airflow" / "airflow.db").exists() else []
                    )
                    if states and states[0][0] in stop_at:
                        return states[0][0], states[0][1], log.read_text()
                    if process.poll() is not None and (not states or states[0][0] not in stop_at):
                        time.sleep(1)
                        states = self.states()
                        return (
                            states[0][0] if states else "",
                            states[0][1] if states else 0,
                            log.read_text(),
                        )
                    time.sleep(1)
                raise AssertionError(
                    f"no final state in {timeout}s: {self.states()}\n{log.read_text()[-3000:]}"
                )
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def airflow() -> Path:
    return airflow_bin()


def test_dag_imports_without_errors(airflow: Path, tmp_path: Path) -> None:
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAG_FOLDER)!r})\n"
        "assert bag.import_errors == {}, bag.import_errors\n"
        "dag = bag.dags['commerce_warehouse']\n"
        "task = dag.get_task('pipeline_run')\n"
        "assert dag.max_active_runs == 1 and dag.catchup is False and 'commerce' in dag.tags\n"
        "assert task.retries >= 1 and task.execution_timeout and task.retry_delay\n"
        "print(type(dag.timetable).__name__)\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "PYTHONWARNINGS": "error::DeprecationWarning",
    }
    result = subprocess.run(
        [str(airflow.parent / "python"), "-c", code], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("CronDataIntervalTimetable")


def test_command_maps_backfill_intervals_to_load_dates(airflow: Path) -> None:
    code = (
        "import datetime as dt, sys\n"
        f"sys.path.insert(0, {str(DAG_FOLDER)!r})\n"
        "import commerce_warehouse as m\n"
        "utc = dt.timezone.utc\n"
        "s = dt.datetime(2026, 11, 1, 0, 30, tzinfo=utc)\n"
        "e = dt.datetime(2026, 11, 4, 0, 30, tzinfo=utc)\n"
        "print(m.pipeline_command('backfill', s, e)[1:])\n"
        "print(m.pipeline_command('scheduled', s, e)[1:])\n"
        "print(m.exit_code(-15), m.exit_code(-2), m.exit_code(3))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "COMMERCE_PIPELINE_CONFIG"}
    result = subprocess.run(
        [str(airflow.parent / "python"), "-c", code], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        "['run', '--start-date', '2026-11-01', '--end-date', '2026-11-03']",
        "['run']",
        "143 130 3",
    ]


def test_fresh_landing_succeeds_and_builds_the_marts(airflow: Path, tmp_path: Path) -> None:
    deployment = Deployment(tmp_path)
    deployment.pipeline(
        "generate", "--scale", "0.01", "--days", "5", "--landing-root", str(deployment.landing)
    )
    state, tries, log = deployment.dags_test({"success", "failed", "up_for_retry"})
    assert (state, tries) == ("success", 1), log[-3000:]
    assert "pipeline run exited 0 (run id " in log and "success (exit 0)" in log
    with duckdb.connect(str(deployment.warehouse), read_only=True) as con:
        marts = {
            name
            for (name,) in con.sql(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        }
        assert set(MARTS) <= marts
        assert con.sql("select count(*) from marts.fct_orders").fetchone()[0] > 0  # type: ignore[index]


def test_stale_landing_is_up_for_retry(airflow: Path, tmp_path: Path) -> None:
    deployment = Deployment(tmp_path)
    stale_end = (TODAY - dt.timedelta(days=7)).isoformat()
    deployment.pipeline(
        "generate",
        "--scale",
        "0.01",
        "--days",
        "5",
        "--end-date",
        stale_end,
        "--landing-root",
        str(deployment.landing),
    )
    state, tries, log = deployment.dags_test({"success", "failed", "up_for_retry"})
    assert (state, tries) == ("up_for_retry", 1), log[-3000:]
    assert "pipeline run exited 3" in log
    if deployment.warehouse.exists():  # the freshness gate stops the run before anything is built
        with duckdb.connect(str(deployment.warehouse), read_only=True) as con:
            query = "select count(*) from information_schema.tables where table_schema = 'marts'"
            assert con.sql(query).fetchone() == (0,)


def test_volume_anomaly_fails_without_retry(airflow: Path, tmp_path: Path) -> None:
    deployment = Deployment(tmp_path)
    end = (TODAY - dt.timedelta(days=2)).isoformat()
    deployment.pipeline(
        "generate",
        "--scale",
        "0.02",
        "--days",
        "10",
        "--end-date",
        end,
        "--landing-root",
        str(deployment.landing),
    )
    deployment.pipeline("run")  # ten good loads: the gate now judges by history, not only bounds
    deployment.pipeline("generate", "--append-day", "--landing-root", str(deployment.landing))
    new_day = max((deployment.landing / "orders").glob("load_date=*"))
    part = new_day / "part-0000.parquet"
    table = pq.read_table(part)
    pq.write_table(table.slice(0, max(1, table.num_rows // 20)), part)
    state, tries, log = deployment.dags_test({"success", "failed", "up_for_retry"})
    assert (state, tries) == ("failed", 1), log[-3000:]
    assert "pipeline run exited 4" in log and "ANOMALY" in log
