"""`pipeline maintain`: compact the partitioned Iceberg tables and expire old snapshots.

Every daily merge adds files to the partitions it touched and a snapshot to every table, so
without maintenance a table's reads slow down with its file count and its metadata grows by
a snapshot a run. Both jobs are Iceberg's Java actions (`SparkActions.rewriteDataFiles`,
`expireSnapshots`), reached the way the publisher reaches the catalog (pipeline.iceberg): on
spark_local through the in-process session; on the Thrift target through the procedures that
wrap the same actions (`CALL spark_catalog.system.rewrite_data_files` and
`expire_snapshots`), which run in the Thrift server's driver, on the cluster, against the
metastore it already has. The server loads Iceberg's SQL extensions for write-audit-publish
anyway, so no second Spark application needs the metastore.

Expiry keeps what `pipeline rollback` needs: every snapshot named by the last
`keep_generations` publishes in the run history (the same rollback window as DuckDB's kept
files), everything a branch or tag references (Iceberg keeps those itself), and `main`.
The choice of what to keep is a pure function (`expiry_cutoffs`), tested without Spark.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.config import Settings
from pipeline.iceberg import CATALOG, IcebergCatalog, JvmIcebergCatalog, SqlIcebergCatalog
from pipeline.lease import sql_string
from pipeline.publish import PublishError

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
    """Compact and expire every Iceberg table of the warehouse. The caller holds the run lock,
    so no run writes meanwhile."""
    kept = kept_snapshots(published)
    now_ms = int(time.time() * 1000)
    if settings.target == "spark_local":
        jvm_catalog = JvmIcebergCatalog(settings)
        return [
            _maintain_jvm(jvm_catalog, table, kept, now_ms)
            for table in _tables_without_pending_runs(jvm_catalog)
        ]
    if settings.target == "spark":
        from pipeline.thrift import connect_from_environment

        sql_catalog = SqlIcebergCatalog(connect_from_environment, settings.warehouse_schemas)
        try:
            return [
                _maintain_sql(sql_catalog, table, kept, now_ms)
                for table in _tables_without_pending_runs(sql_catalog)
            ]
        except PublishError as error:  # a statement the server refused
            raise MaintainError(str(error)) from None
    raise MaintainError(
        f"pipeline maintain is for the Iceberg targets (spark_local, spark), not "
        f"{settings.target}: DuckDB needs none (every publish writes its file anew)"
    )


def _tables_without_pending_runs(catalog: IcebergCatalog) -> list[str]:
    """Every table, or a refusal while a failed run's branches wait for `--retry`."""
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
    return tables


def _maintain_jvm(
    catalog: JvmIcebergCatalog, table: str, kept: Mapping[str, set[int]], now_ms: int
) -> TableMaintenance:
    spark = catalog.session()
    jvm: Any = spark._jvm
    loaded = catalog.load_table(table)
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
    cutoff = expiry_cutoffs(kept, {table: snapshots}, now_ms)[table]
    loaded.expireSnapshots().expireOlderThan(cutoff).commit()
    loaded.refresh()
    return TableMaintenance(
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


def _maintain_sql(
    catalog: SqlIcebergCatalog, table: str, kept: Mapping[str, set[int]], now_ms: int
) -> TableMaintenance:
    def count(sql: str) -> int:
        return int(catalog.rows(sql)[0][0])

    files_before = count(f"select count(*) from {table}.data_files")
    described = catalog.rows(f"describe table {table}")
    partitioned = any(row[0] == "# Partition Information" for row in described)
    rewritten = added = rewritten_bytes = 0
    if partitioned and files_before:
        # rewritten files, added files, rewritten bytes, failed files (, removed delete files)
        result = catalog.rows(
            f"call {CATALOG}.system.rewrite_data_files(table => {sql_string(table)}, "
            f"options => map('min-input-files', '{MIN_INPUT_FILES}'))"
        )[0]
        rewritten, added, rewritten_bytes = int(result[0]), int(result[1]), int(result[2])
    snapshots = {
        int(snapshot): int(millis)
        for snapshot, millis in catalog.rows(
            f"select snapshot_id, unix_millis(committed_at) from {table}.snapshots"
        )
    }
    cutoff = expiry_cutoffs(kept, {table: snapshots}, now_ms)[table]
    # The procedure takes a literal only, read in the session's time zone.
    zone = ZoneInfo(str(catalog.rows("set spark.sql.session.timeZone")[0][1]))
    local = dt.datetime.fromtimestamp(cutoff / 1000, dt.UTC).astimezone(zone)
    catalog.rows(
        f"call {CATALOG}.system.expire_snapshots(table => {sql_string(table)}, "
        f"older_than => timestamp '{local.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}')"
    )
    return TableMaintenance(
        table=table,
        partitioned=partitioned,
        files_before=files_before,
        files_after=count(f"select count(*) from {table}.data_files"),
        files_rewritten=rewritten,
        files_added=added,
        bytes_rewritten=rewritten_bytes,
        snapshots_before=len(snapshots),
        snapshots_after=count(f"select count(*) from {table}.snapshots"),
        kept_for_rollback=len(kept.get(table, set()) & set(snapshots)),
    )


def _data_files(table: Any) -> int:
    """Data files of main's current snapshot (0 for a table with none yet)."""
    snapshot = table.currentSnapshot()
    if snapshot is None:
        return 0
    return int(snapshot.summary().get("total-data-files") or 0)
