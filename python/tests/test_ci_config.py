"""Pull-request tooling: the pre-commit hooks and the GitHub workflow parse and do their job."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import yaml

from pipeline import PROJECT_DIR

PRE_COMMIT = PROJECT_DIR / ".pre-commit-config.yaml"
WORKFLOW = PROJECT_DIR / ".github" / "workflows" / "pull-request.yml"


def _hooks() -> dict[str, dict[str, object]]:
    config = yaml.safe_load(PRE_COMMIT.read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]  # offline: no hook downloads
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def test_pre_commit_hooks_are_local_system_hooks() -> None:
    hooks = _hooks()
    assert set(hooks) == {
        "sqlfluff-lint",
        "no-select-star",
        "ruff-check",
        "ruff-format",
        "yamllint",
        "dbt-parse",
    }
    assert all(hook["language"] == "system" for hook in hooks.values())
    assert hooks["yamllint"]["files"] == r"\.ya?ml$"
    assert str(hooks["ruff-format"]["entry"]).endswith("format --check")


def test_no_select_star_hook_rejects_select_star(tmp_path: Path) -> None:
    """Run the hook's own entry the way pre-commit does (entry + file names)."""
    entry = shlex.split(str(_hooks()["no-select-star"]["entry"]))
    bad, good = tmp_path / "bad.sql", tmp_path / "good.sql"
    bad.write_text(
        "with orders as (\n    select * from {{ ref('stg_orders') }}\n)\n"
        "select order_id from orders\n"
    )
    good.write_text("select order_id, customer_id from {{ ref('stg_orders') }}\n")
    assert subprocess.run([*entry, str(good)], capture_output=True).returncode == 0
    assert subprocess.run([*entry, str(good), str(bad)], capture_output=True).returncode == 1


def test_workflow_runs_the_readme_commands_and_slim_ci() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "STATE_PATH" in workflow["env"]
    runs = "\n".join(step.get("run", "") for step in workflow["jobs"]["lint-and-slim-ci"]["steps"])
    assert "make install" in runs and "make lint" in runs
    assert "git diff --name-only --diff-filter=d origin/main..." in runs
    assert "pipeline run --select state:modified+" in runs
    slim = next(
        s for s in workflow["jobs"]["lint-and-slim-ci"]["steps"] if "Slim" in s.get("name", "")
    )
    assert slim["env"]["PIPELINE_STATE_PATH"] == "${{ env.STATE_PATH }}"
    for step in workflow["jobs"]["lint-and-slim-ci"]["steps"]:
        if "run" in step:
            assert subprocess.run(["bash", "-n"], input=step["run"], text=True).returncode == 0, (
                step["name"]
            )
