"""Invoking dbt in-process and reading what it wrote.

The runner never parses dbt's log text: it reads run_results.json, sources.json and
manifest.json, dbt's own stable artifacts, so a dbt upgrade changes no parsing here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbt.cli.main import dbtRunner

from pipeline.config import Settings


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
        return self.unique_id.split(".")[-1]

    @property
    def resource_type(self) -> str:
        return self.unique_id.split(".")[0]

    @property
    def failed(self) -> bool:
        return self.status in {"error", "fail", "runtime error"}


@dataclass
class DbtOutcome:
    """What one dbt command did: overall success, per-node results, and any crash."""

    command: list[str]
    success: bool
    results: list[NodeResult] = field(default_factory=list)
    error: str | None = None

    @property
    def failed_nodes(self) -> list[NodeResult]:
        return [result for result in self.results if result.failed]


def dbt_environment(settings: Settings) -> dict[str, str]:
    """Environment dbt's profile and project read (see profiles/profiles.yml)."""
    return {
        "DBT_PROFILES_DIR": str(settings.profiles_dir),
        "COMMERCE_TARGET": settings.target,
        "COMMERCE_LANDING_ROOT": str(settings.resolve(settings.landing_root)),
        "COMMERCE_DUCKDB_PATH": str(settings.resolve(settings.warehouse_path)),
    }


def invoke(settings: Settings, args: list[str], dbt_vars: dict[str, Any] | None = None) -> DbtOutcome:
    """Run one dbt command in this process and collect its run results."""
    os.environ.update(dbt_environment(settings))
    settings.resolve(settings.warehouse_path).parent.mkdir(parents=True, exist_ok=True)
    target_path = settings.resolve(settings.target_path)
    command = [
        *args,
        "--project-dir", str(settings.project_dir),
        "--profiles-dir", str(settings.profiles_dir),
        "--target", settings.target,
        "--target-path", str(target_path),
        "--threads", str(settings.threads),
    ]
    if dbt_vars:
        command += ["--vars", json.dumps(dbt_vars)]
    results_file = target_path / "run_results.json"
    results_file.unlink(missing_ok=True)
    result = dbtRunner().invoke(command)
    error = None if result.exception is None else f"{type(result.exception).__name__}: {result.exception}"
    return DbtOutcome(command=command, success=bool(result.success), results=read_run_results(results_file), error=error)


def read_run_results(path: Path) -> list[NodeResult]:
    if not path.exists():
        return []
    payload = json.loads(path.read_text())
    results = []
    for item in payload.get("results", []):
        response = item.get("adapter_response") or {}
        rows = response.get("rows_affected")
        results.append(NodeResult(
            unique_id=item["unique_id"],
            status=str(item["status"]),
            seconds=float(item.get("execution_time") or 0.0),
            message=item.get("message"),
            rows_affected=int(rows) if isinstance(rows, int) and rows >= 0 else None,
            failures=item.get("failures"),
        ))
    return results


def read_json_artifact(settings: Settings, name: str) -> dict[str, Any]:
    path = settings.resolve(settings.target_path) / name
    return json.loads(path.read_text()) if path.exists() else {}
