"""Slim CI proven locally: `dbt build --select state:modified+ --defer --state <prod>` runs exactly
the changed model and its descendants (with their tests), and nothing else.

"Production" is a full build of a copy of the project; its target/manifest.json is the state.
The "CI" warehouse is a copy of the production DuckDB file: DuckDB is one file per warehouse,
and a CI job that starts from a copy of production's file is the realistic slim CI on DuckDB
(deferred references are rendered as "<production database>.<schema>.<table>", and dbt-duckdb
names a database after its file's stem: a CI file with another name fails with 'Catalog "prod"
does not exist'; attaching production read-only under that name is the alternative, not
tried). Deferral still matters: unmodified parents are not rebuilt; the modified model reads
them as production left them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pipeline import PROJECT_DIR

DBT = PROJECT_DIR / ".venv" / "bin" / "dbt"
PIPELINE = PROJECT_DIR / ".venv" / "bin" / "pipeline"
MODIFIED = "model.commerce.int_payments_converted"
PROJECT_FILES = ("dbt_project.yml", "models", "macros", "seeds", "snapshots", "tests", "profiles")


def _dbt(
    project: Path, warehouse: Path, landing: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(project / "profiles"),
        "COMMERCE_DUCKDB_PATH": str(warehouse),
        "COMMERCE_LANDING_ROOT": str(landing),
    }
    return subprocess.run([str(DBT), *args], cwd=project, env=env, capture_output=True, text=True)


def _descendants(manifest: dict[str, Any], node: str) -> set[str]:
    """The node and everything downstream of it, from the production manifest's child_map."""
    seen, todo = {node}, [node]
    while todo:
        for child in manifest["child_map"].get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def test_state_modified_builds_only_the_change_and_its_children(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in PROJECT_FILES:
        source = PROJECT_DIR / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    landing = tmp_path / "landing"
    subprocess.run(
        [
            str(PIPELINE),
            "generate",
            "--scale",
            "0.01",
            "--days",
            "5",
            "--landing-root",
            str(landing),
        ],
        check=True,
        capture_output=True,
    )
    prod = tmp_path / "prod.duckdb"
    built = _dbt(project, prod, landing, "build", "--target-path", str(tmp_path / "prod-target"))
    assert built.returncode == 0, built.stdout[-3000:]
    state = tmp_path / "prod-target"
    manifest = json.loads((state / "manifest.json").read_text())

    model = project / "models" / "intermediate" / "finance" / "int_payments_converted.sql"
    text = model.read_text()
    assert text.rstrip().endswith("from final")
    model.write_text(text.rstrip() + "\nwhere true\n")  # a harmless SQL change, same rows

    # Same file name in another folder: dbt-duckdb names the database after the file's stem, and
    # deferred references name production's database ("prod"), which the copy must also be.
    ci = tmp_path / "ci" / prod.name
    ci.parent.mkdir()
    shutil.copy(prod, ci)
    slim = _dbt(
        project,
        ci,
        landing,
        "build",
        "--select",
        "state:modified+",
        "--defer",
        "--favor-state",
        "--state",
        str(state),
        "--target-path",
        str(tmp_path / "ci-target"),
    )
    assert slim.returncode == 0, slim.stdout[-3000:]
    results = json.loads((tmp_path / "ci-target" / "run_results.json").read_text())["results"]
    # The project's on-run-start hook runs with every invocation; it is not a selected node.
    ran = {
        result["unique_id"]
        for result in results
        if not result["unique_id"].startswith("operation.")
    }
    expected = {
        node
        for node in _descendants(manifest, MODIFIED)
        if node.split(".")[0] in {"model", "test", "snapshot", "seed", "unit_test", "exposure"}
    }
    # Non-trivial: the change reaches a mart and tests, and most of the project is left alone.
    assert MODIFIED in expected and any(node.startswith("test.") for node in expected)
    assert any(node.startswith("model.commerce.fct_") for node in expected)
    assert (
        len(expected)
        < len([n for n in manifest["nodes"] if n.split(".")[0] in {"model", "test"}]) / 2
    )
    assert ran == expected
    assert all(result["status"] in {"success", "pass", "warn", "no-op"} for result in results)
    assert "model.commerce.stg_landing__payments" not in ran  # the parent was deferred, not rebuilt
