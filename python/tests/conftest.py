"""Fixtures: small landing zones in temp folders and warehouses built from them with dbt."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from typer.testing import CliRunner
from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

from pipeline import generator
from pipeline.cli import app
from pipeline.config import Settings, load_settings
from pipeline.dbt import DbtOutcome, invoke
from pipeline.history import History

TODAY = dt.datetime.now(dt.UTC).date()
NEW_DAY = TODAY - dt.timedelta(days=1)  # the load the `baseline` fixture leaves room for
END_DATE = dt.date(2026, 3, 31)
SCALE = 0.02
Checksums = dict[str, tuple[object, ...]]
MARTS = (
    "dim_customers",
    "dim_products",
    "fct_orders",
    "fct_order_items",
    "fct_payments",
    "fct_sessions",
    "fct_daily_revenue",
)


@dataclass
class Warehouse:
    """A landing zone plus a DuckDB warehouse, driven through the runner's dbt module."""

    settings: Settings

    @property
    def landing(self) -> Path:
        return self.settings.landing_root

    def dbt(self, *args: str, dbt_vars: dict[str, Any] | None = None) -> DbtOutcome:
        return invoke(self.settings, list(args), dbt_vars)

    def build(self, *args: str) -> DbtOutcome:
        outcome = self.dbt("build", *args)
        failed = [(node.unique_id, node.message) for node in outcome.failed_nodes]
        assert outcome.success, f"dbt build failed: {outcome.error} {failed}"
        return outcome

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.settings.warehouse_path)) as con:
            return con.execute(sql, params or []).fetchall()

    def checksum(self, relation: str) -> tuple[Any, ...]:
        """Content checksum of a relation: row count and a hash of every row, order-independent."""
        return self.query(
            f"select count(*), md5(coalesce(string_agg(cast(t as varchar), '|' "
            f"order by cast(t as varchar)), '')) from {relation} as t"
        )[0]

    def checksums(self) -> dict[str, tuple[Any, ...]]:
        """Content checksum per mart."""
        return {mart: self.checksum(f"marts.{mart}") for mart in MARTS}


def make_settings(root: Path, landing: Path, **overrides: Any) -> Settings:
    """The one settings factory: every path of a run under `root`, the landing zone at `landing`."""
    values: dict[str, Any] = {
        "landing_root": landing,
        "warehouse_path": root / "warehouse.duckdb",
        "history_path": root / "history.duckdb",
        "lock_path": root / "pipeline.lock",
        "target_path": root / "target",
        "metrics_path": root / "metrics" / "commerce.prom",
        "lineage_path": root / "lineage" / "events.jsonl",
        "spark_dir": root / "spark",
    }
    values.update(overrides)
    return Settings(**values)


def write_config(path: Path, settings: Settings) -> Path:
    """A pipeline.yml holding `settings`' paths and target, for the CLI's --config."""
    keys = (
        "target",
        "landing_root",
        "warehouse_path",
        "history_path",
        "lock_path",
        "target_path",
        "metrics_path",
        "lineage_path",
        "spark_dir",
    )
    dumped = settings.model_dump(mode="json")
    path.write_text(yaml.safe_dump({key: dumped[key] for key in keys}))
    return path


class Project:
    """A landing zone, a warehouse and a pipeline.yml pointing at both, driven by the real CLI."""

    def __init__(self, root: Path, landing: Path) -> None:
        self.root = root
        self.config = write_config(root / "pipeline.yml", make_settings(root, landing))
        self.settings = load_settings(self.config)
        self.warehouse = Warehouse(self.settings)
        self.history = History(self.settings.history_path)

    def pipeline(self, *args: str, config: Path | None = None) -> tuple[int, str, str]:
        """`pipeline <args>` with this project's settings (or another settings file)."""
        result = CliRunner().invoke(app, [*args, "--config", str(config or self.config)])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    def marts(self) -> set[str]:
        return {
            name
            for (name,) in self.warehouse.query(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            )
        }


def make_project(root: Path, days: int, end_date: dt.date) -> Project:
    """A project whose landing zone holds `days` daily loads ending `end_date`."""
    return Project(root, make_landing(root / "landing", days=days, end_date=end_date))


def make_landing(
    path: Path, days: int, scale: float = SCALE, seed: int = 7, end_date: dt.date = END_DATE
) -> Path:
    generator.generate(path, seed=seed, scale=scale, days=days, end_date=end_date)
    return path


@pytest.fixture(scope="session")
def landing_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 daily loads, generated once; tests copy it before changing anything."""
    return make_landing(tmp_path_factory.mktemp("landing-template") / "landing", days=20)


@pytest.fixture
def fresh_warehouse(tmp_path: Path, landing_template: Path) -> Iterator[Warehouse]:
    """A private copy of the landing template and an empty warehouse."""
    landing = tmp_path / "landing"
    shutil.copytree(landing_template, landing)
    yield Warehouse(make_settings(tmp_path, landing))


@pytest.fixture(scope="module")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory, landing_template: Path) -> Warehouse:
    """The template landing zone built once per module; tests must only read it."""
    root = tmp_path_factory.mktemp("built")
    warehouse = Warehouse(make_settings(root, landing_template))
    warehouse.build()
    return warehouse


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Checksums]:
    """20 daily loads up to the day before yesterday, run once per module through the CLI;
    tests copy it (copy_project) and land NEW_DAY themselves."""
    root = tmp_path_factory.mktemp("baseline")
    project = make_project(root, days=20, end_date=TODAY - dt.timedelta(days=2))
    code, stdout, _ = project.pipeline("run")
    assert code == 0, stdout
    return root, project.warehouse.checksums()


@pytest.fixture(scope="module")
def reference(
    baseline: tuple[Path, Checksums], tmp_path_factory: pytest.TempPathFactory
) -> Checksums:
    """The marts a full refresh builds from the baseline plus an undamaged next load: what a
    run must publish once the upstream has repaired its file."""
    root = tmp_path_factory.mktemp("reference")
    shutil.copytree(baseline[0] / "landing", root / "landing")
    generator.append_day(root / "landing")
    warehouse = Warehouse(make_settings(root, root / "landing"))
    warehouse.build("--full-refresh")
    return warehouse.checksums()


def copy_project(baseline: tuple[Path, Checksums], tmp_path: Path) -> Project:
    """A private copy of the baseline: landing zone, published warehouse and history."""
    source, _ = baseline
    shutil.copytree(source / "landing", tmp_path / "landing")
    for database in [*source.glob("warehouse.duckdb*"), *source.glob("history.duckdb*")]:
        shutil.copy(database, tmp_path / database.name)
    if (source / "warehouse.generations").is_dir():  # what `pipeline rollback` restores
        shutil.copytree(source / "warehouse.generations", tmp_path / "warehouse.generations")
        # As a run leaves it: the published file is a hard link of its generation.
        for generation in (source / "warehouse.generations").glob("*/warehouse.duckdb"):
            if generation.samefile(source / "warehouse.duckdb"):
                published = tmp_path / "warehouse.duckdb"
                published.unlink()
                os.link(tmp_path / generation.relative_to(source), published)
    return Project(tmp_path, tmp_path / "landing")


# The modules whose tests start JVMs (marked spark or cluster). `make test` runs them one
# after another on one xdist worker: see pytest_xdist_make_scheduler.
ENGINE_MODULES = frozenset({"test_cluster.py", "test_spark.py", "test_spark_cli.py"})
ENGINE_MARKERS = ("spark", "cluster")
ENGINE_SCOPE = "spark-engines"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The engine modules first, each whole and in file order; the rest as collected.

    The order is what the scheduler below hands out: the engine group is the longest, so it
    starts first. A test marked spark or cluster outside ENGINE_MODULES (or one in them
    without the mark) stops the session: it would run beside the Spark tests unnoticed.
    """
    engine = [item for item in items if item.path.name in ENGINE_MODULES]
    strays = [
        item.nodeid
        for item in items
        if any(item.get_closest_marker(m) for m in ENGINE_MARKERS)
        != (item.path.name in ENGINE_MODULES)
    ]
    if strays:
        raise pytest.UsageError(
            f"spark/cluster marks and conftest.ENGINE_MODULES disagree on: {', '.join(strays)}"
        )
    items[:] = engine + [item for item in items if item.path.name not in ENGINE_MODULES]


class EngineScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """xdist's module-scope scheduling, with the engine modules as one scope.

    A Spark test keeps both cores busy (0.86 of 2 for an in-process build, 0.92 for a cluster
    run), so two at once only make each other slower and double the JVMs' memory. Every
    other module is a scope of its own: its module fixtures are built once and its tests
    keep their file order, on the worker the Spark tests leave free. (xdist's `loadgroup`
    would say the same with marks, but its group suffix does not reach pytest 9's node ids.)
    """

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return ENGINE_SCOPE if Path(module).name in ENGINE_MODULES else module


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> EngineScheduling:
    """Every distributed run (`pytest -n N`) schedules by EngineScheduling, in collection
    order (xdist would otherwise put the scopes with the most tests first)."""
    config.option.loadscopereorder = False
    return EngineScheduling(config, log)
