"""Every profile target renders with its defaults, and dbt works from any folder of the repo.

Regressions a user found: the production target could not start (`use_ssl` rejected its own
default 'false'), and `dbt build` from models/marts died because the DuckDB path was relative
to the working directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import make_landing
from pipeline import PROJECT_DIR

PROFILES = PROJECT_DIR / "profiles" / "profiles.yml"


def _render(target: str, env: dict[str, str]) -> Any:
    """dbt's own profile rendering, as `dbt` does it before connecting."""
    from dbt.config.profile import Profile
    from dbt.config.renderer import ProfileRenderer
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context

    set_from_args(argparse.Namespace(), None)
    set_invocation_context(env)
    raw = yaml.safe_load(PROFILES.read_text())
    return Profile.from_raw_profile_info(
        raw["commerce"], "commerce", ProfileRenderer({}), target_override=target
    ).credentials


@pytest.mark.parametrize("target", ["duckdb", "spark_local", "spark"])
def test_every_target_renders_with_its_defaults(target: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMERCE_")}
    credentials = _render(target, env)
    assert credentials.schema == "main"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("true", True),
        ("True", True),
        ("1", True),
        ("yes", True),
    ],
)
def test_spark_use_ssl_takes_the_usual_spellings(value: str, expected: bool) -> None:
    env = {**os.environ, "COMMERCE_SPARK_USE_SSL": value}
    assert _render("spark", env).use_ssl is expected


def test_thrift_settings_come_from_the_environment() -> None:
    env = {
        **os.environ,
        "COMMERCE_SPARK_HOST": "thrift.example",
        "COMMERCE_SPARK_PORT": "10001",
        "COMMERCE_SPARK_AUTH": "LDAP",
        "COMMERCE_SPARK_TOKEN": "s3cret",
    }
    credentials = _render("spark", env)
    assert (credentials.host, credentials.port, credentials.auth) == (
        "thrift.example",
        10001,
        "LDAP",
    )
    assert credentials.password == "s3cret"


def test_dbt_runs_from_a_subfolder_of_the_project(tmp_path: Path) -> None:
    """The DuckDB file and the landing zone resolve from the project, not from the cwd.

    A copy of profiles/ in a temp folder stands in for the project's own, so the warehouse it
    resolves to (<profiles>/../data/warehouse.duckdb) is the test's, not the developer's.
    """
    shutil.copytree(PROJECT_DIR / "profiles", tmp_path / "profiles")
    make_landing(tmp_path / "landing", days=2, scale=0.01)
    (tmp_path / "data").mkdir()  # `make run` creates the project's data/
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMERCE_")}
    env.update(
        DBT_PROFILES_DIR=str(tmp_path / "profiles"),
        COMMERCE_LANDING_ROOT=os.path.relpath(tmp_path / "landing", PROJECT_DIR),
    )
    dbt = Path(sys.executable).with_name("dbt")
    result = subprocess.run(
        [
            str(dbt),
            "run",
            "--select",
            "stg_landing__customers",
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        cwd=PROJECT_DIR / "models" / "marts",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "data" / "warehouse.duckdb").exists()
