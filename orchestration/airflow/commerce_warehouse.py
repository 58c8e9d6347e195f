"""Airflow 3 DAG: one task that calls `pipeline run` for the run's data interval.

One process per run on purpose: the runner's lock, freshness and volume gates and its
write-audit-publish order only hold inside a single `pipeline run` (docs/design.md,
"Scheduling"). The task maps the runner's exit codes onto Airflow's retry semantics:
3 (stale source), 5 (lock held) and 130/143 (killed by a signal) are worth retrying later,
every other non-zero code fails the task at once, without using its retries.

Deployment settings come from the environment of the Airflow worker, never from this file:
- COMMERCE_PROJECT_DIR: the checkout (default: two folders above this file, the repo root);
- COMMERCE_PIPELINE_BIN: the `pipeline` executable (default: <project>/.venv/bin/pipeline);
- COMMERCE_PIPELINE_CONFIG: optional settings file passed as --config (else pipeline.yml / PIPELINE_*);
- COMMERCE_SCHEDULE: cron expression of the daily run (default 30 0 * * *, UTC).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import subprocess
from pathlib import Path

import pendulum
from airflow.sdk import DAG, get_current_context, task

try:  # Airflow >= 3.1 exports the task-facing exceptions from the SDK
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # pragma: no cover - older Airflow 3 releases
    from airflow.exceptions import AirflowException, AirflowFailException
try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # pragma: no cover
    from airflow.timetables.interval import CronDataIntervalTimetable

log = logging.getLogger(__name__)

PROJECT_DIR = Path(os.environ.get("COMMERCE_PROJECT_DIR", Path(__file__).resolve().parents[2]))
PIPELINE_BIN = os.environ.get("COMMERCE_PIPELINE_BIN", str(PROJECT_DIR / ".venv" / "bin" / "pipeline"))
SCHEDULE = os.environ.get("COMMERCE_SCHEDULE", "30 0 * * *")

#: Exit codes that mean "try again later": stale source, lock held, killed by SIGINT/SIGTERM.
RETRY_LATER = frozenset({3, 5, 130, 143})
MEANING = {
    1: "dbt error: a model or test failed, a person must look",
    2: "usage or configuration error",
    3: "freshness gate: a source is stale, nothing was built",
    4: "volume gate: a load is anomalous, a person must look",
    5: "another run holds the lock",
    130: "killed by SIGINT",
    143: "killed by SIGTERM",
}
_RUN_ID = re.compile(r"\brun ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")


def pipeline_command(run_type: str, start: dt.datetime, end: dt.datetime) -> list[str]:
    """The command for one DAG run.

    A scheduled (or manual) run is the plain daily `pipeline run`: the runner itself knows
    which loads are new. A backfill names its loads: the interval [start, end) covers the
    loads dated start.date() up to the day before end (a day's load lands after that day).
    """
    command = [PIPELINE_BIN, "run"]
    if run_type == "backfill":
        first = start.date()
        last = max(first, (end - dt.timedelta(days=1)).date())
        command += ["--start-date", first.isoformat(), "--end-date", last.isoformat()]
    config = os.environ.get("COMMERCE_PIPELINE_CONFIG")
    if config:
        command += ["--config", config]
    return command


def exit_code(returncode: int) -> int:
    """Popen reports death by signal N as -N; a shell reports 128 + N. Use the shell's form."""
    return 128 - returncode if returncode < 0 else returncode


def run_and_stream(command: list[str]) -> tuple[int, str | None]:
    """Run `command` in the project, copy every output line into the task log, and return
    the exit code and the runner's run id. The child is terminated if the task is (timeout,
    mark-failed): a run left behind would hold the lock against the retry."""
    log.info("running %s in %s", " ".join(command), PROJECT_DIR)
    run_id: str | None = None
    process = subprocess.Popen(
        command, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            log.info("%s", line.rstrip())
            match = _RUN_ID.search(line)
            if match and run_id is None:
                run_id = match.group(1)
        return exit_code(process.wait()), run_id
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


with DAG(
    dag_id="commerce_warehouse",
    description="Daily commerce warehouse: freshness gate, volume gate, dbt build (pipeline run)",
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["commerce", "dbt", "warehouse"],
    default_args={
        "owner": "analytics-engineering",
        "retries": 6,
        "retry_delay": dt.timedelta(minutes=30),
        "execution_timeout": dt.timedelta(hours=2),
    },
) as dag:

    @task(task_id="pipeline_run")
    def pipeline_run() -> str | None:
        """Call the runner once; retry only what "later" can fix. Returns the run id (XCom)."""
        context = get_current_context()
        dag_run = context["dag_run"]
        start = context.get("data_interval_start") or context["logical_date"]
        end = context.get("data_interval_end") or start
        code, run_id = run_and_stream(pipeline_command(str(dag_run.run_type), start, end))
        log.info("pipeline run exited %d (run id %s)", code, run_id)
        if code == 0:
            return run_id
        message = f"pipeline run exited {code}: {MEANING.get(code, 'unexpected exit code')} (run id {run_id})"
        if code in RETRY_LATER:
            raise AirflowException(message)
        raise AirflowFailException(message)

    pipeline_run()
