"""`pipeline maintain`: compact the partitioned Iceberg tables and expire old snapshots.

Every daily merge adds files to the partitions it touched and a snapshot to every table, so
without maintenance a table's reads slow down with its file count and its metadata grows by
a snapshot a run. Both jobs are Iceberg's Java actions (`SparkActions.rewriteDataFiles`,
`Table.expireSnapshots`), reached through the in-process session like the publisher's
(pipeline.iceberg); the SQL `CALL` procedures would need the extensions this project does
not load.

Expiry keeps what `pipeline rollback` needs: every snapshot named by the last
`keep_generations` publishes in the run history (the same rollback window as DuckDB's kept
files), everything a branch or tag references (Iceberg keeps those itself), and `main`.
The choice of what to keep is a pure function (`expiry_cutoffs`), tested without Spark.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.iceberg import JvmIcebergCatalog

# Compaction rewrites a partition once it holds at least this many files: two daily merges
# of the same partition are already worth one file (the tables are small per partition).
MIN_INPUT_FILES = 2


class MaintainError(RuntimeError):
    """Maintenance cannot run now: named, with what to do."""


@dataclass(frozen=True)
class TableMaintenance:
    """What maintenance did to one table, for the report."""

    table: str
    partitioned: bool
    files_before: int
    files_after: int
    files_rewritten: int
    files_added: int
    bytes_rewritten: int
    snapshots_before: int
    snapshots_after: int
    kept_for_rollback: int


def kept_snapshots(published: Iterable[Mapping[str, Any]]) -> dict[str, set[int]]:
    """Table -> the snapshot ids the given publishes (history `publishes` states) name."""
    kept: dict[str, set[int]] = {}
    for state in published:
        for table, snapshot in state.get("snapshots", {}).items():
            if snapshot is not None:
                kept.setdefault(table, set()).add(int(snapshot))
    return kept


def expiry_cutoffs(
    kept: Mapping[str, set[int]], timestamps: Mapping[str, Mapping[int, int]], now_ms: int
) -> dict[str, int]:
    """Table -> expire snapshots older than this (epoch ms).

    `timestamps` holds each table's existing snapshots (id -> commit time). The cutoff is the
    oldest commit time among the snapshots a kept publish names, so every one of them (and
    everything after it) survives; a table no kept publish names keeps only what Iceberg
    always keeps (main and other refs).
    """
    cutoffs = {}
    for table, snapshots in timestamps.items():
        named = [
            snapshots[snapshot] for snapshot in kept.get(table, set()) if snapshot in snapshots
        ]
        cutoffs[table] = min(named) if named else now_ms
    return cutoffs


def run_maintenance(
    settings: Settings, published: Sequence[Mapping[str, Any]]
) -> list[TableMaintenance]:
    """Compact and expire every Iceberg table of the spark_local warehouse. The caller holds
    the run lock, so no run writes meanwhile."""
    if settings.target != "spark_local":
        raise MaintainError(
            f"pipeline maintain runs on the spark_local target, not {settings.target}: on a "
            "cluster it is a Spark job of its own against the shared metastore (README, "
            "Production), and DuckDB needs none (its file is rewritten by every publish)"
        )
    catalog = JvmIcebergCatalog(settings)
    tables = catalog.tables()
    pending = {table: sorted(catalog.branches(table)) for table in tables}
    pending = {table: branches for table, branches in pending.items() if branches}
    if pending:
        table, branches = next(iter(pending.items()))
        raise MaintainError(
            f"{len(pending)} table(s) hold branches of an unpublished run (e.g. {table}: "
            f"{', '.join(branches)}), kept for `pipeline run --retry`: compacting main now "
            "would make that run's publish refuse. Retry or run the pipeline first."
        )
    spark = catalog._spark()
    jvm: Any = spark._jvm
    kept = kept_snapshots(published)
    reports = []
    for table in tables:
        loaded = catalog._load(table)
        files_before = _data_files(loaded)
        rewritten = added = rewritten_bytes = 0
        partitioned = bool(loaded.spec().isPartitioned())
        if partitioned and files_before:
            result = (
                jvm.org.apache.iceberg.spark.actions.SparkActions.get(spark._jsparkSession)
                .rewriteDataFiles(loaded)
                .option("min-input-files", str(MIN_INPUT_FILES))
                .execute()
            )
            rewritten = int(result.rewrittenDataFilesCount())
            added = int(result.addedDataFilesCount())
            rewritten_bytes = int(result.rewrittenBytesCount())
            loaded.refresh()
        snapshots = {int(s.snapshotId()): int(s.timestampMillis()) for s in loaded.snapshots()}
        cutoff = expiry_cutoffs(kept, {table: snapshots}, int(time.time() * 1000))[table]
        loaded.expireSnapshots().expireOlderThan(cutoff).commit()
        loaded.refresh()
        reports.append(
            TableMaintenance(
                table=table,
                partitioned=partitioned,
                files_before=files_before,
                files_after=_data_files(loaded),
                files_rewritten=rewritten,
                files_added=added,
                bytes_rewritten=rewritten_bytes,
                snapshots_before=len(snapshots),
                snapshots_after=sum(1 for _ in loaded.snapshots()),
                kept_for_rollback=len(kept.get(table, set()) & set(snapshots)),
            )
        )
    return reports


def _data_files(table: Any) -> int:
    """Data files of main's current snapshot (0 for a table with none yet)."""
    snapshot = table.currentSnapshot()
    if snapshot is None:
        return 0
    return int(snapshot.summary().get("total-data-files") or 0)
