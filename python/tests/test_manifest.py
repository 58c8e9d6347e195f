"""The typed manifest reader on a small hand-written manifest: no dbt involved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.manifest import Manifest, node_name

RAW = {
    "nodes": {
        "model.commerce.stg_landing__orders": {
            "name": "stg_landing__orders",
            "resource_type": "model",
            "fqn": ["commerce", "staging", "landing", "stg_landing__orders"],
            "depends_on": {
                "nodes": ["source.commerce.landing.orders", "seed.commerce.order_statuses"]
            },
            "relation_name": '"w"."staging"."stg_landing__orders"',
            "config": {
                "materialized": "incremental",
                "meta": {"volume": {"min_rows": 7}, "null_rate": {"window": 7}},
            },
            "columns": {
                "order_id": {"name": "order_id", "config": {"meta": {"max_null_rate": 0}}},
                "note": {"name": "note", "meta": {"max_null_rate": 0.25}},
                "updated_at": {"name": "updated_at", "config": {"meta": {}}},
                "_load_date": {"name": "_load_date", "config": {"meta": {}}},
            },
        },
        "model.commerce.int_x": {
            "name": "int_x",
            "resource_type": "model",
            "fqn": ["commerce", "intermediate", "x", "int_x"],
            "depends_on": {"nodes": ["model.commerce.stg_landing__orders"]},
            "relation_name": None,
            "config": {"materialized": "ephemeral"},
        },
        "seed.commerce.order_statuses": {
            "name": "order_statuses",
            "resource_type": "seed",
            "fqn": ["commerce", "order_statuses"],
            "relation_name": '"w"."reference"."order_statuses"',
            "config": {"materialized": "seed"},
        },
        "test.commerce.unique_orders": {
            "name": "unique_orders",
            "resource_type": "test",
            "fqn": ["commerce", "unique_orders"],
            "attached_node": "model.commerce.stg_landing__orders",
            "depends_on": {"nodes": ["model.commerce.stg_landing__orders"]},
            "config": {},
        },
        "unit_test.commerce.stg_landing__orders.ut": {
            "name": "ut",
            "resource_type": "unit_test",
            "depends_on": {"nodes": ["model.commerce.stg_landing__orders"]},
            "config": {},
        },
    },
    "sources": {
        "source.commerce.landing.orders": {
            "name": "orders",
            "source_name": "landing",
            "relation_name": '"w"."landing"."orders"',
            "config": {"meta": {"landing_key": "order_id"}},
            "columns": {
                "order_id": {"name": "order_id", "data_type": "bigint", "config": {"meta": {}}},
                "note": {
                    "name": "note",
                    "data_type": "varchar",
                    "config": {"meta": {"nullable": True}},
                },
            },
        },
    },
}


def test_layers_follow_the_folder_and_tests_follow_their_model() -> None:
    manifest = Manifest.from_json(RAW)
    assert manifest.layer("model.commerce.stg_landing__orders") == "staging"
    assert manifest.layer("model.commerce.int_x") == "intermediate"
    assert manifest.layer("seed.commerce.order_statuses") == "seed"
    assert manifest.layer("test.commerce.unique_orders") == "staging"
    assert manifest.layer("unit_test.commerce.stg_landing__orders.ut") == "staging"
    assert manifest.layer("operation.commerce.on-run-start-0") == "tests"


def test_relations_skip_ephemeral_models_and_name_sources() -> None:
    manifest = Manifest.from_json(RAW)
    assert manifest.relation("model.commerce.int_x") is None
    assert manifest.relation("source.commerce.landing.orders") == '"w"."landing"."orders"'


def test_volume_subjects_are_staging_models_reading_one_source_with_their_policy() -> None:
    (subject,) = Manifest.from_json(RAW).volume_subjects().values()
    assert (subject.name, subject.entity) == ("stg_landing__orders", "orders")
    assert subject.policy.min_rows == 7 and subject.policy.window == 14


def test_null_rate_subjects_measure_the_declared_columns_with_their_ceilings() -> None:
    (subject,) = Manifest.from_json(RAW).null_rate_subjects().values()
    assert subject.name == "stg_landing__orders"
    assert subject.relation == '"w"."staging"."stg_landing__orders"'
    # the load date is what rates are grouped by, not a column measured
    assert subject.columns == ("order_id", "note", "updated_at")
    assert subject.policy.max_rates == {"order_id": 0.0, "note": 0.25}
    assert subject.policy.window == 7


def test_landing_sources_carry_the_contract_columns() -> None:
    (source,) = Manifest.from_json(RAW).landing_sources()
    assert [(c.name, c.data_type, dict(c.meta)) for c in source.columns] == [
        ("order_id", "bigint", {}),
        ("note", "varchar", {"nullable": True}),
    ]
    assert source.meta["landing_key"] == "order_id"


def test_an_absent_manifest_is_empty_and_a_malformed_one_raises(tmp_path: Path) -> None:
    assert Manifest.load(tmp_path / "missing.json").nodes == {}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(json.JSONDecodeError):
        Manifest.load(tmp_path / "bad.json")


@pytest.mark.parametrize(
    "unique_id, name",
    [
        ("model.commerce.fct_orders", "fct_orders"),
        ("model.commerce.dim_customers.v1", "dim_customers.v1"),
        ("test.commerce.not_null_fct_orders_order_id.1a2b3c4d5e", "not_null_fct_orders_order_id"),
        (
            "test.commerce.assert_order_totals_match_their_lines",
            "assert_order_totals_match_their_lines",
        ),
        ("unit_test.commerce.fct_orders.fct_orders_flags_revenue", "fct_orders_flags_revenue"),
        ("seed.commerce.order_statuses", "order_statuses"),
    ],
)
def test_node_names_are_what_dbt_ls_prints(unique_id: str, name: str) -> None:
    """The history and the report name a generic test as people know it, not by dbt's hash."""
    assert node_name(unique_id) == name
