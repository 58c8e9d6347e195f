"""`pipeline run --select state:modified+`: slim CI through the runner, gates included.

Production is a full `pipeline run` of a copy of the project; the manifest that run wrote is
the state. One intermediate model then changes in the copy, and the next run with
`--select state:modified+` must build exactly that model and its descendants (their tests
too), reading every unselected parent from production (`--defer`). Without a state the run
stops with exit 2 before anything is built.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import TODAY, Project, make_landing
from pipeline import PROJECT_DIR
from pipeline.config import load_settings
from pipeline.state import StateArgs, state_args, uses_state

MODIFIED = "model.commerce.int_payments_converted"
PROJECT_FILES = ("dbt_project.yml", "models", "macros", "seeds", "snapshots", "tests", "profiles")


def _project_copy(tmp_path: Path, state: Path | None) -> Project:
    """A copy of the dbt project and a pipeline.yml whose project_dir and state_path are set."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in PROJECT_FILES:
        source = PROJECT_DIR / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / name)
    landing = make_landing(
        tmp_path / "landing", days=5, scale=0.01, end_date=TODAY - dt.timedelta(days=1)
    )
    project = Project(tmp_path, landing)
    config = yaml.safe_load(project.config.read_text())
    config["project_dir"] = str(copy)
    if state is not None:
        config["state_path"] = str(state)
    project.config.write_text(yaml.safe_dump(config))
    return project


def _descendants(manifest: dict[str, Any], node: str) -> set[str]:
    seen, todo = {node}, [node]
    while todo:
        for child in manifest["child_map"].get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def _last_run_dir(project: Project) -> Path:
    run = project.history.runs(1)[0]
    return project.settings.resolve(project.settings.target_path) / "runs" / run.run_id


@pytest.mark.parametrize(
    "select, expected",
    [
        (("state:modified+",), True),
        (("fct_orders", "1+state:modified.body"), True),
        (("tag:finance,state:new",), True),
        (("fct_orders+", "path:models/staging"), False),
        (("my_state:x",), False),
    ],
)
def test_uses_state_finds_the_method_in_any_term(select: tuple[str, ...], expected: bool) -> None:
    assert uses_state(select) is expected


def test_state_modified_builds_only_the_change_and_its_children(tmp_path: Path) -> None:
    state = tmp_path / "prod-state"
    project = _project_copy(tmp_path, state)
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr[-3000:]
    state.mkdir()
    shutil.copy(_last_run_dir(project) / "parse" / "manifest.json", state / "manifest.json")
    manifest = json.loads((state / "manifest.json").read_text())

    model = (
        tmp_path / "project" / "models" / "intermediate" / "finance" / "int_payments_converted.sql"
    )
    text = model.read_text()
    assert text.rstrip().endswith("from final")
    model.write_text(text.rstrip() + "\nwhere true\n")  # a harmless SQL change, same rows

    code, _, stderr = project.pipeline("run", "--select", "state:modified+")
    assert code == 0, stderr[-3000:]
    run_dir = _last_run_dir(project)
    results = [
        result
        for phase in ("staging", "downstream")
        for result in json.loads((run_dir / phase / "run_results.json").read_text())["results"]
    ]
    # The project's on-run-start hook runs with every invocation; it is not a selected node.
    ran = {r["unique_id"] for r in results if not r["unique_id"].startswith("operation.")}
    # A test that also reads a seed or a staging model (fct_orders' relationship to the
    # order_statuses seed) runs too: it once fell between the runner's two build phases.
    expected = {
        node
        for node in _descendants(manifest, MODIFIED)
        if node.split(".")[0] in {"model", "test", "snapshot", "seed", "unit_test", "exposure"}
    }
    assert any(
        set(manifest["parent_map"][node]) & {"seed.commerce.order_statuses"} for node in expected
    )
    assert MODIFIED in expected and any(node.startswith("test.") for node in expected)
    assert "exposure.commerce.revenue_dashboard" in expected  # consumers are selected too
    assert any(node.startswith("model.commerce.fct_") for node in expected)
    assert ran == expected
    assert all(r["status"] in {"success", "pass", "warn", "no-op"} for r in results)
    # Unselected parents were deferred to production, not rebuilt; the history agrees.
    assert "model.commerce.stg_landing__payments" not in ran
    nodes = {node.unique_id for node in project.history.nodes(project.history.runs(1)[0].run_id)}
    assert {n for n in nodes if not n.startswith("operation.")} == expected


@pytest.mark.parametrize("state", [None, "empty"])
def test_a_state_selector_without_a_state_manifest_exits_2(
    tmp_path: Path, state: str | None
) -> None:
    folder = None if state is None else tmp_path / state
    if folder is not None:
        folder.mkdir()
    landing = make_landing(
        tmp_path / "landing", days=3, scale=0.01, end_date=TODAY - dt.timedelta(days=1)
    )
    project = Project(tmp_path, landing)
    if folder is not None:
        config = yaml.safe_load(project.config.read_text())
        config["state_path"] = str(folder)
        project.config.write_text(yaml.safe_dump(config))
    code, _, stderr = project.pipeline("run", "--select", "state:modified+")
    assert code == 2, stderr[-2000:]
    assert "state_path" in stderr and "PIPELINE_STATE_PATH" in stderr
    if folder is not None:
        assert f"state_path {folder} holds no manifest.json" in " ".join(stderr.split())
    run = project.history.runs(1)[0]
    assert (run.status, run.exit_code, run.phase) == ("usage", 2, "select")
    assert not project.settings.warehouse_path.exists()  # nothing was built


def test_state_path_comes_from_the_environment_and_adds_state_and_defer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    monkeypatch.setenv("PIPELINE_STATE_PATH", str(tmp_path))
    settings = load_settings(overrides={"project_dir": tmp_path})
    assert settings.state_path == tmp_path
    args = state_args(settings, ("state:modified+",))
    assert args.select == ["--state", str(tmp_path)]
    assert args.build == ["--state", str(tmp_path), "--defer"]
    assert state_args(settings, ("fct_orders+",)) == StateArgs()  # no state: no extra args
