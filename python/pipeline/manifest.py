"""A typed view of dbt's manifest.json: the few facts the runner needs, parsed once.

dbt's manifest is a large untyped document; reading it through `dict.get` chains all over the
runner hid its shape. Here it becomes frozen dataclasses with one loader, so the rest of the
package asks typed questions (which layer is this node in, which relation does it build, which
staging models read a landing source) and a dbt upgrade that moves a field breaks in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.gates import NullRatePolicy, VolumePolicy


def node_name(unique_id: str) -> str:
    """The short name of a node: a versioned model keeps its version (`dim_customers.v2`), a
    generic data test drops the hash dbt appends to keep its id unique."""
    parts = unique_id.split(".")
    if parts[0] == "model" and len(parts) == 4:  # model.<package>.<name>.v<N>
        return f"{parts[2]}.{parts[3]}"
    if parts[0] == "test" and len(parts) == 4:  # test.<package>.<name>.<hash>
        return parts[2]
    return parts[-1]


BUILT_TYPES = frozenset({"model", "seed", "snapshot"})
LOAD_DATE_COLUMN = "_load_date"  # every staging row's load: what the gates group by


def _column_meta(column: Mapping[str, Any]) -> Mapping[str, Any]:
    """dbt 1.10+ keeps a column's meta under `config`; older yml put it beside the name."""
    meta: Mapping[str, Any] = (column.get("config") or {}).get("meta") or column.get("meta") or {}
    return meta


@dataclass(frozen=True, slots=True)
class Node:
    """A model, seed, snapshot, test, unit test or operation."""

    unique_id: str
    name: str
    resource_type: str
    fqn: tuple[str, ...]
    parents: tuple[str, ...]
    relation_name: str | None
    materialized: str | None
    meta: Mapping[str, Any]
    attached_node: str | None
    columns: Mapping[str, Mapping[str, Any]]  # declared column -> its meta, in yml order

    @classmethod
    def from_json(cls, unique_id: str, raw: Mapping[str, Any]) -> Node:
        config = raw.get("config") or {}
        return cls(
            unique_id=unique_id,
            name=str(raw.get("name", unique_id.rsplit(".", maxsplit=1)[-1])),
            resource_type=str(raw.get("resource_type", unique_id.split(".", maxsplit=1)[0])),
            fqn=tuple(raw.get("fqn") or ()),
            parents=tuple((raw.get("depends_on") or {}).get("nodes") or ()),
            relation_name=raw.get("relation_name"),
            materialized=config.get("materialized"),
            meta=config.get("meta") or raw.get("meta") or {},
            attached_node=raw.get("attached_node"),
            columns={
                name: _column_meta(column) for name, column in (raw.get("columns") or {}).items()
            },
        )


@dataclass(frozen=True, slots=True)
class SourceColumn:
    name: str
    data_type: str | None
    meta: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    """A dbt source table (the landing zone's entities)."""

    unique_id: str
    name: str
    source_name: str
    relation_name: str
    meta: Mapping[str, Any]
    columns: tuple[SourceColumn, ...]

    @classmethod
    def from_json(cls, unique_id: str, raw: Mapping[str, Any]) -> Source:
        columns = tuple(
            SourceColumn(
                name=name,
                data_type=column.get("data_type"),
                meta=_column_meta(column),
            )
            for name, column in (raw.get("columns") or {}).items()
        )
        return cls(
            unique_id=unique_id,
            name=str(raw["name"]),
            source_name=str(raw["source_name"]),
            relation_name=str(raw["relation_name"]),
            meta=(raw.get("config") or {}).get("meta") or raw.get("meta") or {},
            columns=columns,
        )


@dataclass(frozen=True, slots=True)
class VolumeSubject:
    """A staging model whose new loads the volume gate judges."""

    name: str
    entity: str
    source_relation: str
    policy: VolumePolicy


@dataclass(frozen=True, slots=True)
class NullRateSubject:
    """A staging model whose columns' null rates are judged per new load."""

    name: str
    relation: str
    columns: tuple[str, ...]
    policy: NullRatePolicy


@dataclass(frozen=True)
class Manifest:
    nodes: Mapping[str, Node]
    sources: Mapping[str, Source]

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Manifest:
        return cls(
            nodes={
                uid: Node.from_json(uid, node) for uid, node in (raw.get("nodes") or {}).items()
            },
            sources={
                uid: Source.from_json(uid, source)
                for uid, source in (raw.get("sources") or {}).items()
            },
        )

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """An absent file reads as empty; a malformed one raises (never a silent pass)."""
        return cls.from_json(json.loads(path.read_text())) if path.exists() else cls({}, {})

    def layer(self, unique_id: str) -> str:
        """staging, intermediate, marts, seed, snapshot, or the layer a test is attached to."""
        node = self.nodes.get(unique_id)
        kind = node.resource_type if node else unique_id.split(".", maxsplit=1)[0]
        if kind in {"seed", "snapshot"}:
            return kind
        if node is None:
            return "tests"
        if kind == "model":
            return node.fqn[1] if len(node.fqn) > 2 else "models"
        attached = node.attached_node or next((p for p in node.parents if p in self.nodes), None)
        if kind == "unit_test":
            attached = next(iter(node.parents), attached)
        return self.layer(attached) if attached and attached != unique_id else "tests"

    def tested_model(self, unique_id: str) -> str | None:
        """The model (seed, snapshot) a data or unit test is about, by name; None otherwise."""
        node = self.nodes.get(unique_id)
        if node is None or node.resource_type not in {"test", "unit_test"}:
            return None
        candidates = (
            [node.attached_node, *node.parents] if node.attached_node else list(node.parents)
        )
        for candidate in candidates:
            parent = self.nodes.get(candidate or "")
            if parent is not None and parent.resource_type in BUILT_TYPES:
                return parent.name
        return None

    def relation(self, unique_id: str) -> str | None:
        """The relation a node builds (or a source names); None for ephemeral models and tests."""
        node = self.nodes.get(unique_id)
        if node is not None:
            return None if node.materialized == "ephemeral" else node.relation_name
        source = self.sources.get(unique_id)
        return source.relation_name if source else None

    def landing_sources(self) -> list[Source]:
        return sorted(
            (s for s in self.sources.values() if s.source_name == "landing"), key=lambda s: s.name
        )

    def volume_subjects(self) -> dict[str, VolumeSubject]:
        """Staging models that read exactly one source, with their `meta.volume` policy."""
        subjects = {}
        for unique_id, node in self.nodes.items():
            if node.resource_type != "model" or self.layer(unique_id) != "staging":
                continue
            source_ids = [parent for parent in node.parents if parent in self.sources]
            if len(source_ids) != 1:
                continue
            source = self.sources[source_ids[0]]
            subjects[node.name] = VolumeSubject(
                node.name,
                source.name,
                source.relation_name,
                VolumePolicy.from_meta(node.name, node.meta),
            )
        return subjects

    def null_rate_subjects(self) -> dict[str, NullRateSubject]:
        """The volume gate's models that carry a load date: their declared columns, measured
        per load on the built staging relation (so nulls a cast or rename adds count too)."""
        judged = self.volume_subjects()
        subjects = {}
        for unique_id, node in self.nodes.items():
            relation = self.relation(unique_id)
            if node.name not in judged or relation is None or LOAD_DATE_COLUMN not in node.columns:
                continue
            subjects[node.name] = NullRateSubject(
                node.name,
                relation,
                tuple(column for column in node.columns if column != LOAD_DATE_COLUMN),
                NullRatePolicy.from_meta(node.name, node.meta, node.columns),
            )
        return subjects
