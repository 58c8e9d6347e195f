"""Fixtures: small landing zones in temp folders and warehouses built from them with dbt."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest

from pipeline import generator
from pipeline.config import Settings
from pipeline.dbt import DbtOutcome, invoke

END_DATE = dt.date(2026, 3, 31)
SCALE = 0.02
MARTS = ("dim_customers", "dim_products", "fct_orders", "fct_order_items", "fct_payments",
         "fct_sessions", "fct_daily_revenue")


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

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        with duckdb.connect(str(self.settings.warehouse_path)) as con:
            return con.execute(sql, params or []).fetchall()

    def checksums(self) -> dict[str, tuple]:
        """Content checksum per mart: row count and a hash of every row, order-independent."""
        return {
            mart: self.query(
                f"select count(*), md5(coalesce(string_agg(cast(t as varchar), '|' "
                f"order by cast(t as varchar)), '')) from marts.{mart} as t"
            )[0]
            for mart in MARTS
        }


def make_settings(root: Path, landing: Path) -> Settings:
    return Settings(
        landing_root=landing,
        warehouse_path=root / "warehouse.duckdb",
        history_path=root / "history.duckdb",
        lock_path=root / "pipeline.lock",
        target_path=root / "target",
        metrics_path=root / "metrics" / "commerce.prom",
        lineage_path=root / "lineage" / "events.jsonl",
    )


def make_landing(path: Path, days: int, scale: float = SCALE, seed: int = 7, end_date: dt.date = END_DATE) -> Path:
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
