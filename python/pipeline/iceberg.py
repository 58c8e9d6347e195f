"""Write-audit-publish on Spark + Iceberg: a run writes a branch of every table, `main` moves last.

Iceberg's WAP branches, not snapshot rollback: with `write.wap.enabled` on a table and the
session conf `spark.wap.branch` set, every INSERT, MERGE, DELETE and INSERT OVERWRITE of the
run commits to the branch; the run's own session reads the branch (gates and tests audit what
the run built), and every other reader keeps reading `main`, the last published state, for
the whole run. Rolling `main` back after a failure would instead show consumers the unaudited
writes while the run is in progress. Publishing fast-forwards `main` to the branch, one
metadata commit per table; nothing is copied, so the cost follows the number of tables, not
the size or the history of the data.

Iceberg has no transaction across tables: "together" means one fast-forward per table, in
one loop that takes milliseconds per table (docs/design.md measures it). The plan is written
to a journal before the first fast-forward, so a process that dies in the middle leaves a
record: the next run's `begin` puts every `main` it moved back where it was (the run history
does not hold that run as published, so its state must not stay published either).

The catalog operations sit behind `IcebergCatalog`, with two routes to Iceberg.
`JvmIcebergCatalog` drives Iceberg's Java API through the in-process Spark session
(spark_local), which needs no Iceberg SQL extensions. `SqlIcebergCatalog` is the Thrift
target's: the runner reaches no JVM there, so it speaks SQL over its own Thrift connection
(`ALTER TABLE ... CREATE BRANCH`, `CALL spark_catalog.system.fast_forward(...)`, the `refs`
and `snapshots` metadata tables), which needs the extensions on the server, and dbt's Thrift
sessions get `spark.wap.branch` when they open (profiles/profiles.yml). Where the journal
lives follows the route: a file beside the in-process catalog, a table of the warehouse
for the Thrift target, since the next runner may be on another host.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.config import Settings
from pipeline.exits import failpoint
from pipeline.lease import OPS_SCHEMA, Cursor, sql_string
from pipeline.publish import PublishError

WAP_CONF = "spark.wap.branch"
WAP_PROPERTY = "write.wap.enabled"
BRANCH_PREFIX = "wap_"
MAIN = "main"
LOGGER_NAME = "pipeline"
CATALOG = "spark_catalog"  # the session catalog every target configures as Iceberg's
# dbt's Thrift sessions take the run's branch from here (profiles/profiles.yml).
WAP_BRANCH_ENV = "COMMERCE_SPARK_WAP_BRANCH"
JOURNAL_TABLE = f"{OPS_SCHEMA}.pipeline_publish_journal"


def branch_name(run_id: str) -> str:
    """The branch a run writes: one per run, so a stale one is recognisable by its prefix."""
    return BRANCH_PREFIX + re.sub(r"[^0-9A-Za-z]", "_", run_id)


class IcebergCatalog(Protocol):
    """The few catalog operations write-audit-publish needs, whatever the route to Iceberg."""

    def tables(self) -> list[str]:
        """Every Iceberg table of the catalog, as `schema.table` (views and others left out)."""
        ...

    def main_snapshot(self, table: str) -> int | None:
        """The snapshot `main` points at; None when `main` does not exist (never published)."""
        ...

    def branches(self, table: str) -> dict[str, int]:
        """Every branch but `main`, with the snapshot it points at."""
        ...

    def prepare(self, table: str, branch: str, resume: str | None) -> None:
        """Turn on WAP for the table and point `branch` at `main` (or rename `resume` to it)."""
        ...

    def remove_branch(self, table: str, branch: str) -> None: ...

    def fast_forward(self, table: str, branch: str) -> None:
        """Move `main` to `branch` (created when missing) and drop `branch`, in one commit."""
        ...

    def set_main(self, table: str, snapshot_id: int) -> None:
        """Point `main` at any snapshot the table still has (rollback: the schema stays)."""
        ...

    def has_snapshot(self, table: str, snapshot_id: int) -> bool: ...

    def drop(self, table: str) -> None: ...

    def set_session_branch(self, branch: str | None) -> None:
        """Make the session dbt builds with write (and read) `branch`; None: `main`."""
        ...


class JvmIcebergCatalog:
    """Iceberg's Java API through the in-process Spark session dbt-spark's session method uses.

    The session is the one dbt started (or starts now, with the profile's settings, through a
    `dbt show`: the jars, the catalog and the metastore only take effect when the first session
    of the process starts). `show databases` runs first in a fresh process, because Iceberg's
    Hive catalog touched before Spark's own Hive client failed with "Version information not
    found in metastore".
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def session(self) -> Any:
        """The process's Spark session, active on the calling thread (maintenance uses it too)."""
        from pyspark.sql import SparkSession

        if getattr(SparkSession, "_instantiatedSession", None) is None:
            from pipeline.dbt import show

            show(self.settings, "show databases")
        spark = SparkSession.builder.getOrCreate()
        # The catalog manager reads the session's conf from the calling thread's active session:
        # without one (dbt started the session in its own threads) Iceberg's SparkSessionCatalog
        # is not found and every table loads as a plain V1 table.
        jvm: Any = spark._jvm
        jvm.org.apache.spark.sql.SparkSession.setActiveSession(spark._jsparkSession)
        return spark

    def load_table(self, table: str) -> Any:
        """Iceberg's Java `Table`, refreshed from the metastore."""
        spark = self.session()
        loaded = spark._jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(
            spark._jsparkSession, table
        )
        loaded.refresh()  # the catalog caches tables; the metastore's pointer is the truth
        return loaded

    def tables(self) -> list[str]:
        from pyspark.errors import IllegalArgumentException

        spark = self.session()
        found = []
        for database in spark.catalog.listDatabases():
            if database.name not in self.settings.warehouse_schemas:
                continue
            for table in spark.catalog.listTables(database.name):
                if table.isTemporary or table.tableType == "VIEW":
                    continue
                name = f"{database.name}.{table.name}"
                try:
                    self.load_table(name)
                except IllegalArgumentException:  # "... is not an Iceberg table"
                    continue
                found.append(name)
        return sorted(found)

    def main_snapshot(self, table: str) -> int | None:
        ref = self.load_table(table).refs().get(MAIN)
        return None if ref is None else int(ref.snapshotId())

    def branches(self, table: str) -> dict[str, int]:
        refs = self.load_table(table).refs()
        return {
            str(name): int(ref.snapshotId())
            for name, ref in refs.items()
            if name != MAIN and ref.isBranch()
        }

    def prepare(self, table: str, branch: str, resume: str | None) -> None:
        loaded = self.load_table(table)
        if loaded.properties().get(WAP_PROPERTY) != "true":
            loaded.updateProperties().set(WAP_PROPERTY, "true").commit()
        refs = loaded.refs()
        if resume is not None and refs.containsKey(resume):
            loaded.manageSnapshots().renameBranch(resume, branch).commit()
        elif not refs.containsKey(branch):
            # At main's snapshot; on a table with none yet, an empty branch.
            loaded.manageSnapshots().createBranch(branch).commit()

    def remove_branch(self, table: str, branch: str) -> None:
        loaded = self.load_table(table)
        if loaded.refs().containsKey(branch):
            loaded.manageSnapshots().removeBranch(branch).commit()

    def fast_forward(self, table: str, branch: str) -> None:
        self.load_table(table).manageSnapshots().fastForwardBranch(MAIN, branch).removeBranch(
            branch
        ).commit()

    def set_main(self, table: str, snapshot_id: int) -> None:
        self.load_table(table).manageSnapshots().setCurrentSnapshot(snapshot_id).commit()

    def has_snapshot(self, table: str, snapshot_id: int) -> bool:
        return self.load_table(table).snapshot(snapshot_id) is not None

    def drop(self, table: str) -> None:
        self.session().sql(f"drop table if exists {table}")

    def set_session_branch(self, branch: str | None) -> None:
        spark = self.session()
        if branch is None:
            spark.conf.unset(WAP_CONF)
        else:
            spark.conf.set(WAP_CONF, branch)


def thrift_error(error: Exception) -> str:
    """The server's own message from a PyHive error (its repr carries the whole response)."""
    response = error.args[0] if error.args else None
    status = getattr(response, "status", None)
    message = getattr(status, "errorMessage", None) or str(error)
    return " ".join(str(message).split())[:300]


def _ident(table: str) -> str:
    """`schema.table` as a quoted Spark identifier (names come from the catalog itself)."""
    return ".".join(f"`{part.replace('`', '``')}`" for part in table.split("."))


class SqlIcebergCatalog:
    """The IcebergCatalog protocol in SQL, for a Spark Thrift server (the `spark` target).

    Needs, on the server: Iceberg's SQL extensions (`spark.sql.extensions`, for the branch DDL
    and the `CALL` procedures) and the catalog's table cache off (`cache-enabled` false):
    every Thrift session has a catalog of its own, and a cached table would show this
    connection `refs` as they were before a dbt session's commit. README, "Production",
    lists the settings; pipeline.cluster sets them on the test cluster.

    Only the tables of `schemas` (the project's, Settings.warehouse_schemas) are the
    warehouse's: a shared catalog holds other teams' tables, and the runner's own `ops`
    schema (the lease, the journal) is written outside any run's branch.
    """

    def __init__(self, connect: Callable[[], Cursor], schemas: Sequence[str]) -> None:
        self.connect = connect
        self.schemas = tuple(schemas)
        self._cursor: Cursor | None = None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement on the runner's connection; a refusal is a PublishError."""
        try:
            if self._cursor is None:
                self._cursor = self.connect()
            self._cursor.execute(sql)
            return [tuple(row) for row in self._cursor.fetchall()]
        except Exception as error:  # PyHive's and Thrift's errors share no base class
            raise PublishError(
                f"the Thrift server refused `{' '.join(sql.split())[:160]}`: "
                f"{thrift_error(error)} (branches and CALL need Iceberg's SQL extensions on "
                "the server: README, Production)"
            ) from None

    def _properties(self, table: str) -> dict[str, str]:
        return {
            str(key): str(value) for key, value in self.rows(f"show tblproperties {_ident(table)}")
        }

    def tables(self) -> list[str]:
        found = []
        listed = {database for (database,) in self.rows("show databases")}
        for database in (schema for schema in self.schemas if schema in listed):
            views = {row[1] for row in self.rows(f"show views in {_ident(database)}")}
            for _, name, temporary in self.rows(f"show tables in {_ident(database)}"):
                if temporary or name in views:
                    continue
                table = f"{database}.{name}"
                if self._properties(table).get("format", "").startswith("iceberg"):
                    found.append(table)
        return sorted(found)

    def _refs(self, table: str) -> dict[str, int]:
        return {
            str(name): int(snapshot)
            for name, snapshot in self.rows(
                f"select name, snapshot_id from {_ident(table)}.refs where type = 'BRANCH'"
            )
        }

    def main_snapshot(self, table: str) -> int | None:
        return self._refs(table).get(MAIN)

    def branches(self, table: str) -> dict[str, int]:
        return {name: snapshot for name, snapshot in self._refs(table).items() if name != MAIN}

    def prepare(self, table: str, branch: str, resume: str | None) -> None:
        if self._properties(table).get(WAP_PROPERTY) != "true":
            self.rows(f"alter table {_ident(table)} set tblproperties ('{WAP_PROPERTY}' = 'true')")
        refs = self._refs(table)
        if resume is not None and resume in refs:
            # No rename in SQL: the new name at the kept branch's snapshot, then the old one goes.
            self.rows(
                f"alter table {_ident(table)} create branch `{branch}` as of version {refs[resume]}"
            )
            self.remove_branch(table, resume)
        elif branch not in refs:
            self.rows(f"alter table {_ident(table)} create branch `{branch}`")

    def remove_branch(self, table: str, branch: str) -> None:
        self.rows(f"alter table {_ident(table)} drop branch if exists `{branch}`")

    def fast_forward(self, table: str, branch: str) -> None:
        # Two commits (the procedure, then the drop); a process that dies between them leaves
        # a stale branch, which the next `begin` removes.
        self.rows(
            f"call {CATALOG}.system.fast_forward(table => {sql_string(table)}, "
            f"branch => {sql_string(MAIN)}, to => {sql_string(branch)})"
        )
        self.remove_branch(table, branch)

    def set_main(self, table: str, snapshot_id: int) -> None:
        self.rows(
            f"call {CATALOG}.system.set_current_snapshot(table => {sql_string(table)}, "
            f"snapshot_id => {int(snapshot_id)})"
        )

    def has_snapshot(self, table: str, snapshot_id: int) -> bool:
        counted = self.rows(
            f"select count(*) from {_ident(table)}.snapshots where snapshot_id = {int(snapshot_id)}"
        )
        return int(counted[0][0]) > 0

    def drop(self, table: str) -> None:
        self.rows(f"drop table if exists {_ident(table)}")

    def set_session_branch(self, branch: str | None) -> None:
        """dbt's Thrift sessions read the branch from the environment when they open; every
        dbt invocation of the run opens its own."""
        if branch is None:
            os.environ.pop(WAP_BRANCH_ENV, None)
        else:
            os.environ[WAP_BRANCH_ENV] = branch


class PublishJournal(Protocol):
    """Where the publisher keeps what a dead process must leave for the next `begin`."""

    def read(self) -> dict[str, Any] | None: ...

    def write(self, content: dict[str, Any]) -> None:
        """Replace the journal in one step: never a half-written plan."""
        ...

    def clear(self) -> None: ...


class FileJournal:
    """A JSON file beside the in-process catalog (spark_local: one machine owns it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        loaded: dict[str, Any] = json.loads(self.path.read_text())
        return loaded

    def write(self, content: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(content, indent=1, sort_keys=True))
        partial.replace(self.path)  # rename: atomic

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class TableJournal:
    """One row of an Iceberg table in the warehouse (`ops.pipeline_publish_journal`): the
    runner that comes next may run on another host, and the warehouse is what every runner
    sees. Each write is one `insert overwrite`, one atomic Iceberg commit."""

    def __init__(self, connect: Callable[[], Cursor]) -> None:
        self.connect = connect
        self._cursor: Cursor | None = None

    def _execute(self, sql: str) -> Cursor:
        try:
            if self._cursor is None:
                self._cursor = self.connect()
                self._cursor.execute(f"create database if not exists {OPS_SCHEMA}")
                self._cursor.execute(
                    f"create table if not exists {JOURNAL_TABLE} (content string) using iceberg"
                )
            self._cursor.execute(sql)
        except Exception as error:  # PyHive's and Thrift's errors share no base class
            raise PublishError(
                f"the publish journal {JOURNAL_TABLE} cannot be read or written: "
                f"{thrift_error(error)}"
            ) from None
        return self._cursor

    def read(self) -> dict[str, Any] | None:
        rows = self._execute(f"select content from {JOURNAL_TABLE}").fetchall()
        if not rows:
            return None
        loaded: dict[str, Any] = json.loads(rows[0][0])
        return loaded

    def write(self, content: dict[str, Any]) -> None:
        text = json.dumps(content, sort_keys=True)
        self._execute(f"insert overwrite {JOURNAL_TABLE} select {sql_string(text)}")

    def clear(self) -> None:
        self._execute(f"delete from {JOURNAL_TABLE}")


class IcebergPublisher:
    """Publisher (pipeline.publish) of the spark targets: a WAP branch per run on every table.

    `begin` points a branch named after the run at `main` on every Iceberg table and sets the
    session's `spark.wap.branch`; dbt's writes and reads then use the branch (macros/spark/
    write_audit_publish.sql replaces the two statements that would touch `main`). A table that
    does not exist yet is created by dbt with its data on the branch and no `main`: readers see
    it empty until the first publish, the state "nothing published" it really is. A table whose
    `main` never appeared was left by a run that failed before its first publish: `begin` drops
    it, so dbt builds it from the start again instead of merging into an empty table.

    The journal (`<spark_dir>/publish/journal.json`, or a table on the Thrift target) holds
    what `main` was at `begin` and, while publishing, the plan: what a failed run or a publish
    killed halfway must be put back to.
    """

    def __init__(
        self,
        settings: Settings,
        catalog: IcebergCatalog | None = None,
        journal: PublishJournal | None = None,
    ) -> None:
        self.settings = settings
        self.catalog: IcebergCatalog = catalog or JvmIcebergCatalog(settings)
        self.journal: PublishJournal = journal or FileJournal(
            settings.resolve(settings.spark_dir) / "publish" / "journal.json"
        )
        self.log = logging.getLogger(LOGGER_NAME)

    def _put_back(self, before: dict[str, int | None], only: set[str] | None = None) -> list[str]:
        """Point `main` of every table (of `only`) back where `before` says; tables `before`
        does not know, or knew without `main`, were never published and are dropped."""
        put_back = []
        for table in self.catalog.tables():
            if only is not None and table not in only:
                continue
            was = before.get(table)
            now = self.catalog.main_snapshot(table)
            if now == was:
                continue
            if was is None:
                self.catalog.drop(table)
            else:
                self.catalog.set_main(table, was)
            put_back.append(table)
        return put_back

    def _recover(self) -> None:
        """Finish what a dead process left: a publish killed halfway is reverted."""
        journal = self.journal.read()
        if journal is None:
            return
        if journal.get("phase") == "publishing":
            plan: dict[str, dict[str, int | None]] = journal["plan"]
            reverted = self._put_back(
                {table: step["before"] for table, step in plan.items()}, only=set(plan)
            )
            self.log.warning(
                "run %s died while publishing: main of %d table(s) put back to the state "
                "published before it (%s)",
                journal["run_id"],
                len(reverted),
                ", ".join(reverted) or "none had moved",
            )
        self.journal.clear()

    # The Publisher protocol --------------------------------------------------------------------

    def begin(self, run_id: str, resume: str | None) -> Settings:
        previous = self.journal.read()
        if resume is not None and (previous is None or previous.get("run_id") != resume):
            raise PublishError(
                f"--retry cannot resume run {resume}: its unpublished Iceberg branches are not "
                "the ones kept (a later run started over); run without --retry"
            )
        kept = branch_name(resume) if resume else None
        began: dict[str, int | None] = dict(previous["begin"]) if kept and previous else {}
        if kept is None:
            self._recover()
        branch = branch_name(run_id)
        for table in self.catalog.tables():
            main = self.catalog.main_snapshot(table)
            branches = self.catalog.branches(table)
            if main is None and kept not in branches:
                self.catalog.drop(table)  # left by a run that failed before its first publish
                continue
            for stale in branches:
                if stale.startswith(BRANCH_PREFIX) and stale not in {kept, branch}:
                    self.catalog.remove_branch(table, stale)  # of a run that died
            self.catalog.prepare(table, branch, kept)
            began.setdefault(table, main)
        self.journal.write(
            {"run_id": run_id, "branch": branch, "phase": "building", "begin": began}
        )
        self.catalog.set_session_branch(branch)
        return self.settings

    def publish(self, run_id: str) -> dict[str, Any]:
        journal = self.journal.read()
        if journal is None or journal.get("run_id") != run_id:
            raise PublishError(f"run {run_id} did not begin an Iceberg publish: nothing to publish")
        branch: str = journal["branch"]
        began: dict[str, int | None] = journal["begin"]
        self.catalog.set_session_branch(None)
        plan: dict[str, dict[str, int | None]] = {}
        for table in self.catalog.tables():
            before = began.get(table)
            main = self.catalog.main_snapshot(table)
            if main != before:
                raise PublishError(
                    f"{table}: main moved from snapshot {before} to {main} during run {run_id}, "
                    f"outside its branch (is {WAP_PROPERTY} set on it?): not published"
                )
            plan[table] = {"before": before, "after": self.catalog.branches(table).get(branch)}
        self.journal.write({**journal, "phase": "publishing", "plan": plan})
        moved: list[str] = []
        try:
            for table, step in plan.items():
                if step["after"] is not None:
                    self.catalog.fast_forward(table, branch)
                    moved.append(table)
                    if len(moved) == 1:
                        failpoint("publish:fast-forwarded")  # one table new, the rest old
        except Exception as error:
            self._put_back({table: plan[table]["before"] for table in moved}, only=set(moved))
            self.journal.clear()
            raise PublishError(
                f"publishing run {run_id} failed at table {len(moved) + 1} of {len(plan)}: "
                f"{' '.join(str(error).split())[:300]}; the {len(moved)} table(s) already "
                "moved were put back, nothing is published"
            ) from None
        self.journal.clear()
        return {
            "engine": "iceberg",
            "snapshots": {
                table: step["after"] if step["after"] is not None else step["before"]
                for table, step in plan.items()
                if step["after"] is not None or step["before"] is not None
            },
        }

    def discard(self, run_id: str, keep_for_retry: bool) -> None:
        """Drop the run's branches; never raises past a warning, because the runner calls it
        while recording a failure: whatever is left, the next `begin` removes (stale branches,
        tables never published)."""
        try:
            self._discard(run_id, keep_for_retry)
        except Exception as error:
            self.log.warning(
                "run %s: its Iceberg branches could not all be removed (the next run removes "
                "them): %s",
                run_id,
                " ".join(str(error).split())[:300],
            )

    def _discard(self, run_id: str, keep_for_retry: bool) -> None:
        self.catalog.set_session_branch(None)
        journal = self.journal.read()
        if journal is None or journal.get("run_id") != run_id:
            return
        # A table without the WAP property writes `main` directly: what the failed run moved
        # is put back, whatever the macros missed.
        moved = self._put_back(journal["begin"])
        if moved:
            self.log.warning(
                "run %s wrote main of %s outside its branch; put back", run_id, ", ".join(moved)
            )
        if keep_for_retry:
            return
        branch: str = journal["branch"]
        for table in self.catalog.tables():
            self.catalog.remove_branch(table, branch)
            if self.catalog.main_snapshot(table) is None:
                self.catalog.drop(table)  # created by this run, never published
        self.journal.clear()

    def restore(self, published: dict[str, Any]) -> None:
        snapshots = published.get("snapshots")
        if published.get("engine") != "iceberg" or not isinstance(snapshots, dict):
            raise PublishError(f"the state {published} is not an Iceberg publish")
        self.catalog.set_session_branch(None)
        tables = set(self.catalog.tables())
        missing = [
            f"{table}@{snapshot}"
            for table, snapshot in sorted(snapshots.items())
            if table not in tables or not self.catalog.has_snapshot(table, int(snapshot))
        ]
        if missing:
            raise PublishError(
                "cannot restore: table or snapshot gone (dropped, or snapshots expired): "
                f"{', '.join(missing)}; nothing was changed"
            )
        for table, snapshot in sorted(snapshots.items()):
            if self.catalog.main_snapshot(table) != int(snapshot):
                self.catalog.set_main(table, int(snapshot))
