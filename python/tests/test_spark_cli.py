"""spark_local through the real CLI, each command a process of its own: a run killed with
SIGKILL publishes nothing (issue 16), and `pipeline maintain` compacts and expires without
changing what consumers read or what `pipeline rollback` can reach (issue 11).

test_spark.py proves the WAP branches in one process; here the real CLI runs in a process of
its own (with its own JVM and Derby metastore) and is killed as a scheduler, an OOM killer or a
power cut would: in the middle of the marts, and between two tables' fast-forwards. What
consumers read is then judged from a third process, through Iceberg's own metadata: every
table's `main` is still the snapshot the last successful run published (the run history says
which), and main's snapshot log shows no commit of the killed run. The run after the kill
must leave no branch behind and publish exactly the marts DuckDB builds from the same landing
zone (the independent expectation: DuckDB ≡ Spark and incremental ≡ full refresh are proven
elsewhere).

The module costs several minutes (every command starts a JVM), so the kills keep to the two
points a shadow-copy engine does not have (test_publish.py kills DuckDB runs at every step),
and the tests share one project, in file order: the maintenance test works on the state the
kill test leaves.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import MARTS, Warehouse, make_landing, make_settings, write_config
from pipeline import generator
from pipeline.config import Settings
from pipeline.exits import FAILPOINT_ENV
from pipeline.history import History

pytestmark = pytest.mark.spark

TODAY = dt.datetime.now(dt.UTC).date()

# What a consumer's session reads, from a process of its own: every Iceberg table's main and
# branches, main's snapshot log, and every public mart's rows (values as text, sorted).
READER = """
import datetime, decimal, json, sys
from pathlib import Path
from pipeline.config import load_settings
from pipeline.iceberg import JvmIcebergCatalog

catalog = JvmIcebergCatalog(load_settings(Path(sys.argv[1])))
spark = catalog.session()
consumer = spark.newSession()
tables = catalog.tables()

def text(value):
    return value.isoformat() if isinstance(value, (datetime.date, datetime.datetime)) else (
        None if value is None else str(value))

json.dump({
    "mains": {t: catalog.main_snapshot(t) for t in tables},
    "branches": {t: sorted(catalog.branches(t)) for t in tables},
    "log": {t: sorted(r[0] for r in spark.sql(f"select snapshot_id from {t}.history").collect())
            for t in tables},
    "snapshots": {t: {str(r[0]): r[1] for r in spark.sql(
        f"select snapshot_id, unix_millis(committed_at) from {t}.snapshots").collect()}
        for t in tables},
    "files": {t: spark.sql(f"select count(*) from {t}.files").collect()[0][0] for t in tables},
    "marts": {t: sorted([text(v) for v in row] for row in consumer.table(t).collect())
              for t in tables if t.startswith("marts.")},
}, sys.stdout)
"""


# Small files, as a streaming writer or many small appends leave them: fct_orders' rows
# written again in three appends (same rows, three files per partition), on main.
FRAGMENTER = """
import sys
from pathlib import Path
from pipeline.config import load_settings
from pipeline.iceberg import JvmIcebergCatalog

spark = JvmIcebergCatalog(load_settings(Path(sys.argv[1]))).session()
table = "marts.fct_orders"
rows = spark.table(table).collect()
frame = spark.createDataFrame(rows, spark.table(table).schema)
spark.sql(f"delete from {table} where true")
for part in range(3):
    frame.filter(f"pmod(order_id, 3) = {part}").writeTo(table).append()
"""


def _text(value: Any) -> str | None:
    """DuckDB's value as the reader writes Spark's: the same text for equal values."""
    if value is None:
        return None
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | int | str | bool):
        return str(value)
    raise TypeError(f"no text form for {type(value).__name__} {value!r}")


def _read(config: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", READER, str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state: dict[str, Any] = json.loads(result.stdout)
    return state


def _start(config: Path, log: Path, failpoint: str | None = None) -> subprocess.Popen[str]:
    """`pipeline run` in a session of its own, so the kill and its JVM can be watched. Its
    output goes to a file: Spark's log lines would fill a pipe nobody reads while the test
    waits, and the run would block writing them."""
    env = {**os.environ, FAILPOINT_ENV: failpoint} if failpoint else None
    with log.open("a") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )


def _wait_for_the_group_to_end(process: subprocess.Popen[str], timeout: float = 60) -> None:
    """The runner is dead; its JVM must follow on its own (PySpark's gateway exits when its
    parent's pipe closes), or it would hold the Derby metastore the next run needs."""
    process.wait(timeout=timeout)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError("the killed runner's JVM outlived it by a minute")


def _run(config: Path, log: Path) -> None:
    process = _start(config, log)
    try:
        process.wait(timeout=900)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, log.read_text()[-4000:]


def _metadata_files(spark_dir: Path) -> int:
    return len(list((spark_dir / "warehouse" / "marts.db").glob("*/metadata/*.metadata.json")))


@dataclass
class SparkProject:
    settings: Settings
    config: Path
    history: History
    log: Path  # every command's output, for a failure's message

    def pipeline(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`pipeline <args>` in a process of its own (pass `--config` in `args`)."""
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> SparkProject:
    root = tmp_path_factory.mktemp("spark-cli")
    landing = make_landing(root / "landing", days=5, scale=0.01, end_date=TODAY - dt.timedelta(2))
    settings = make_settings(root, landing, target="spark_local")
    config = write_config(root / "pipeline.yml", settings)
    spark = SparkProject(settings, config, History(settings.history_path), root / "runs.log")
    _run(config, spark.log)
    return spark


def test_a_run_killed_in_the_marts_or_between_fast_forwards_publishes_nothing(
    project: SparkProject, tmp_path: Path
) -> None:
    settings, config, history, log = project.settings, project.config, project.history, project.log
    landing = settings.landing_root
    first = history.runs(1)[0]
    published = history.published_state(first.run_id)
    assert published is not None and published["engine"] == "iceberg"
    before = _read(config)
    assert before["mains"] == published["snapshots"], "the history names what consumers read"

    # 1. Killed in the middle of the marts: once the downstream phase has committed at least
    # one mart to its branch (a new metadata file), and before it finished.
    generator.append_day(landing)
    process = _start(config, log)
    try:
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            runs = history.runs(1)
            if runs and runs[0].run_id != first.run_id and runs[0].phase == "downstream":
                break
            time.sleep(0.1)
        written = _metadata_files(settings.spark_dir)
        while process.poll() is None and time.monotonic() < deadline:
            if _metadata_files(settings.spark_dir) > written:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed in the marts"
        process.send_signal(signal.SIGKILL)
        _wait_for_the_group_to_end(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    killed = _read(config)
    assert killed["mains"] == before["mains"], "a killed run moved main"
    assert killed["log"] == before["log"], "main's snapshot log holds a commit of the killed run"
    assert killed["marts"] == before["marts"], "consumers read a mart of the killed run"
    written_on_branch = [
        table
        for table, branches in killed["branches"].items()
        if table.startswith("marts.") and branches
    ]
    assert written_on_branch, "the kill came before the run wrote a mart on its branch"

    # 2. Killed between two tables' fast-forwards: one main moved, the others did not. The
    # next run's begin puts the moved one back before it builds anything (its journal says so).
    process = _start(config, log, failpoint="publish:fast-forwarded")
    try:
        _wait_for_the_group_to_end(process, timeout=900)  # it runs up to the publish
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    assert (settings.spark_dir / "publish" / "journal.json").exists()

    # 3. The next run repairs: nothing of the killed runs is left, and what it publishes is
    # what DuckDB builds from the same landing zone.
    _run(config, log)
    statuses = [run.status for run in history.runs(4)]
    assert statuses == ["success", "abandoned", "abandoned", "success"], statuses
    last = history.runs(1)[0]
    after = _read(config)
    assert after["mains"] == history.published_state(last.run_id)["snapshots"]  # type: ignore[index]
    assert all(not branches for branches in after["branches"].values()), after["branches"]
    assert not (settings.spark_dir / "publish" / "journal.json").exists()
    duck = Warehouse(make_settings(tmp_path / "duck", landing))
    duck.build()
    for mart in MARTS:
        rows = duck.query(f"from marts.{mart}")
        expected = sorted([_text(value) for value in row] for row in rows)
        assert after["marts"][f"marts.{mart}"] == expected, f"{mart} differs from DuckDB's build"


def test_maintain_compacts_and_expires_and_rollback_reaches_what_it_kept(
    project: SparkProject,
) -> None:
    """After the kill test: two publishes in the history, orphaned snapshots of the killed
    runs' branches, and (staged here) small files in fct_orders. With `keep_generations: 1`
    maintenance keeps the last publish's snapshots only."""
    last, first = [run.run_id for run in project.history.runs(10) if run.status == "success"]
    kept = project.history.published_state(last)
    assert kept is not None
    config = project.config.with_name("keep-one.yml")
    config.write_text(project.config.read_text() + "keep_generations: 1\n")
    staged = subprocess.run(
        [sys.executable, "-c", FRAGMENTER, str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert staged.returncode == 0, staged.stderr[-3000:]
    before = _read(config)

    result = project.pipeline("maintain", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "marts.fct_orders" in result.stdout
    recorded = project.history.runs(1)[0]
    assert (recorded.arguments, recorded.status) == ("maintain", "success")
    after = _read(config)

    assert after["marts"] == before["marts"], "maintenance changed what consumers read"
    assert after["files"]["marts.fct_orders"] < before["files"]["marts.fct_orders"]
    expired = 0
    for table, snapshots in before["snapshots"].items():
        named = str(kept["snapshots"][table])
        survivors = {s for s, ms in snapshots.items() if ms >= snapshots[named]}
        survivors.add(str(before["mains"][table]))
        assert set(after["snapshots"][table]) & set(snapshots) == survivors, table
        expired += len(snapshots) - len(survivors)
    assert expired > 0, "nothing was old enough to expire: the check proved nothing"

    # The kept publish is reachable (fct_orders goes back from the compacted snapshot);
    # the older one is not, and rollback says so instead of half-restoring it.
    result = project.pipeline("rollback", "--to", first, "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr[-3000:]
    result = project.pipeline("rollback", "--to", last, "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert _read(config)["mains"] == kept["snapshots"]

    # A table whose current metadata file is gone (a bucket lifecycle rule, a hand's `rm`):
    # maintenance stops with exit 1 naming the file, and its history row says so instead of
    # staying `running` for ever.
    metadata = sorted(
        (project.settings.spark_dir / "warehouse" / "marts.db" / "fct_orders" / "metadata").glob(
            "*.metadata.json"
        )
    )[-1]
    hidden = metadata.with_name(metadata.name + ".hidden")
    metadata.replace(hidden)
    try:
        result = project.pipeline("maintain", "--config", str(config))
    finally:
        hidden.replace(metadata)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "maintain failed" in result.stderr and metadata.name in result.stderr
    assert "Traceback" not in result.stderr
    recorded = project.history.runs(1)[0]
    assert (recorded.arguments, recorded.status, recorded.exit_code) == ("maintain", "dbt_error", 1)
    assert recorded.message is not None and metadata.name in recorded.message
