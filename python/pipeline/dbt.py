"""Invoking dbt in-process and reading what it wrote.

The runner never parses dbt's log text: it reads run_results.json, sources.json and
manifest.json, dbt's own stable artifacts, so a dbt upgrade changes no parsing here.

dbt itself is imported by the first invocation, not with this module: its import takes
about a second, and the runner's copy of the warehouse file (publish.py) runs meanwhile,
started by then on another core.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.manifest import node_name


@dataclass(frozen=True)
class NodeResult:
    """One node's outcome from run_results.json."""

    unique_id: str
    status: str
    seconds: float
    message: str | None
    rows_affected: int | None
    failures: int | None

    @property
    def name(self) -> str:
        return node_name(self.unique_id)

    @property
    def resource_type(self) -> str:
        return self.unique_id.split(".")[0]

    @property
    def failed(self) -> bool:
        return self.status in {"error", "fail", "runtime error"}


@dataclass
class DbtOutcome:
    """What one dbt command did: overall success, per-node results, and any crash."""

    success: bool
    results: list[NodeResult] = field(default_factory=list)
    error: str | None = None
    listed: list[str] = field(default_factory=list)  # what `dbt ls` printed
    parsed: Any = None  # `dbt parse`: dbt's Manifest object, for the run's later invocations

    @property
    def failed_nodes(self) -> list[NodeResult]:
        return [result for result in self.results if result.failed]


def dbt_environment(settings: Settings) -> dict[str, str]:
    """Environment dbt's profile and project read (see profiles/profiles.yml)."""
    env = {
        "DBT_PROFILES_DIR": str(settings.profiles_dir),
        "COMMERCE_TARGET": settings.target,
        "COMMERCE_LANDING_ROOT": str(settings.resolve(settings.landing_root)),
        "COMMERCE_DUCKDB_PATH": str(settings.resolve(settings.warehouse_path)),
    }
    if settings.target == "spark_local":
        from pipeline.spark import spark_jars  # only Spark runs need the jars built

        spark_dir = settings.resolve(settings.spark_dir)
        env.update(
            {
                "COMMERCE_SPARK_JARS": spark_jars(settings.resolve(Path("build/spark"))),
                "COMMERCE_SPARK_WAREHOUSE": str(spark_dir / "warehouse"),
                "COMMERCE_SPARK_METASTORE": str(spark_dir / "metastore_db"),
            }
        )
    return env


def _command(
    settings: Settings,
    args: list[str],
    target_path: Path,
    dbt_vars: dict[str, Any] | None,
    quiet: bool,
) -> list[str]:
    os.environ.update(dbt_environment(settings))
    if settings.target == "spark":
        from pipeline.thrift import accept_empty_row_sets

        accept_empty_row_sets()  # and polls that back off from 50 ms: dbt-spark need not sleep
        os.environ.setdefault("COMMERCE_SPARK_POLL_SECONDS", "0")
    settings.resolve(settings.warehouse_path).parent.mkdir(parents=True, exist_ok=True)
    command = [
        *args,
        "--project-dir",
        str(settings.project_dir),
        "--profiles-dir",
        str(settings.profiles_dir),
        "--target",
        settings.target,
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
    ]
    if quiet:  # the runner speaks for dbt: it forwards dbt's warnings and errors to its own log
        command += ["--log-level", "none"]
    if dbt_vars:
        command += ["--vars", json.dumps(dbt_vars, sort_keys=True)]
    return command


def invoke(
    settings: Settings,
    args: list[str],
    dbt_vars: dict[str, Any] | None = None,
    *,
    target_path: Path | None = None,
    quiet: bool = False,
    on_event: Callable[[Any], None] | None = None,
    manifest: Any = None,
) -> DbtOutcome:
    """Run one dbt command in this process and collect its run results.

    The runner gives every invocation of a run its own `target_path`
    (target/runs/<run_id>/<phase>), so what it reads was written by that invocation and by
    nothing else: never a previous run's artifact, never one of a person's `dbt compile`.
    `manifest` is the run's own parse (DbtOutcome.parsed): dbt then skips parsing, which a
    fresh target folder would otherwise make a full parse every time. Such an invocation
    writes no manifest (`--no-write-json`): after its last node dbt would serialize the
    whole parse again (0.07 to 0.09 s an invocation here, while nothing else runs) into a
    copy of target/runs/<run_id>/parse/manifest.json. Its result artifact (run_results.json,
    sources.json) is still written, by dbt's own writer from the result dbt returns.
    """
    from dbt.artifacts.schemas.freshness import FreshnessResult
    from dbt.artifacts.schemas.run import RunExecutionResult
    from dbt.cli.main import dbtRunner

    folder = target_path or settings.resolve(settings.target_path)
    extra = [] if args[0] == "ls" else ["--threads", str(settings.threads)]  # ls takes none
    if manifest is not None:
        extra.append("--no-write-json")
    command = _command(settings, [*args, *extra], folder, dbt_vars, quiet)
    results_file = folder / "run_results.json"
    if args[0] != "retry":  # retry reads its own --state; nothing else may read old results
        results_file.unlink(missing_ok=True)
    result = dbtRunner(manifest=manifest, callbacks=[on_event] if on_event else None).invoke(
        command
    )
    if manifest is not None:
        if isinstance(result.result, FreshnessResult):
            result.result.write(str(folder / "sources.json"))
        elif isinstance(result.result, RunExecutionResult):
            result.result.write(str(results_file))
    # One line: dbt's messages span several ("Runtime Error\n  Got a state selector ...").
    error = (
        None
        if result.exception is None
        else f"{type(result.exception).__name__}: {' '.join(str(result.exception).split())}"
    )
    return DbtOutcome(
        success=bool(result.success),
        results=read_run_results(results_file),
        error=error,
        listed=list(result.result) if isinstance(result.result, list) else [],
        parsed=result.result if args[0] == "parse" and result.success else None,
    )


def show(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    """Rows of an inline query through dbt's own connection (used where no direct client is)."""
    from dbt.artifacts.schemas.run import RunExecutionResult
    from dbt.cli.main import dbtRunner

    target_path = settings.resolve(settings.target_path) / "show"
    command = _command(
        settings, ["show", "--inline", sql, "--limit", "-1"], target_path, None, quiet=True
    )
    result = dbtRunner().invoke(command)
    executed = result.result
    if not result.success or not isinstance(executed, RunExecutionResult):
        raise RuntimeError(f"dbt show failed: {result.exception}")
    table = executed.results[0].agate_table
    if table is None:
        raise RuntimeError("dbt show returned no table")
    return [tuple(row.values()) for row in table.rows]


def read_run_results(path: Path) -> list[NodeResult]:
    if not path.exists():
        return []
    payload = json.loads(path.read_text())
    results = []
    for item in payload.get("results", []):
        response = item.get("adapter_response") or {}
        rows = response.get("rows_affected")
        results.append(
            NodeResult(
                unique_id=item["unique_id"],
                status=str(item["status"]),
                seconds=float(item.get("execution_time") or 0.0),
                message=item.get("message"),
                rows_affected=int(rows) if isinstance(rows, int) and rows >= 0 else None,
                failures=item.get("failures"),
            )
        )
    return results


def read_json_artifact(path: Path) -> dict[str, Any]:
    """An artifact this run wrote, or {} when the invocation wrote none (a failed gate)."""
    if not path.exists():
        return {}
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def release_duckdb() -> None:
    """Close the DuckDB instance dbt-duckdb keeps open in this process between invocations.

    dbt runs in-process, and dbt-duckdb caches its database instance across commands (it only
    closes it when the credentials change). The publish step renames and copies warehouse
    files: an instance still open on one would write its log and checkpoint into a file that
    has moved, or hide un-checkpointed writes from a copy. Closing checkpoints the file.
    Before dbt's first invocation there is no instance, and nothing is imported to say so.
    """
    if "dbt.adapters.duckdb.connections" not in sys.modules:
        return
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        if environment is not None:
            environment.close()
            DuckDBConnectionManager._ENV = None
