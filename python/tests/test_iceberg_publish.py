"""The Iceberg publisher's bookkeeping against an in-memory catalog: no JVM, milliseconds.

test_spark.py proves the mechanism on real Iceberg tables; here the cases a real run can
hardly stage are forced: a process that dies between two fast-forwards, a fast-forward that
fails, a table written outside its branch, a retry that resumes a kept branch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyhive.exc import OperationalError

from conftest import make_settings
from pipeline.iceberg import IcebergPublisher, SqlIcebergCatalog, TableJournal, branch_name
from pipeline.publish import PublishError

_ids = itertools.count(100)


@dataclass
class FakeTable:
    refs: dict[str, int] = field(default_factory=dict)  # "main" and branches
    snapshots: set[int] = field(default_factory=set)
    wap: bool = False


class FakeCatalog:
    """Tables as refs to snapshot ids; writes follow the session branch like Iceberg's WAP."""

    def __init__(self) -> None:
        self.tables_: dict[str, FakeTable] = {}
        self.session_branch: str | None = None
        self.fail_fast_forward_of: str | None = None
        self.die_after_fast_forwards: int | None = None

    # what dbt would do
    def write(self, table: str) -> int:
        """A commit of the run's session: to its branch when WAP is on, to main otherwise."""
        state = self.tables_.setdefault(table, FakeTable(wap=True))
        snapshot = next(_ids)
        state.snapshots.add(snapshot)
        ref = self.session_branch if state.wap and self.session_branch else "main"
        state.refs[ref] = snapshot
        return snapshot

    # the IcebergCatalog protocol
    def tables(self) -> list[str]:
        return sorted(self.tables_)

    def main_snapshot(self, table: str) -> int | None:
        return self.tables_[table].refs.get("main")

    def branches(self, table: str) -> dict[str, int]:
        return {k: v for k, v in self.tables_[table].refs.items() if k != "main"}

    def prepare(self, table: str, branch: str, resume: str | None) -> None:
        state = self.tables_[table]
        state.wap = True
        if resume is not None and resume in state.refs:
            state.refs[branch] = state.refs.pop(resume)
        elif branch not in state.refs and "main" in state.refs:
            state.refs[branch] = state.refs["main"]

    def remove_branch(self, table: str, branch: str) -> None:
        self.tables_[table].refs.pop(branch, None)

    def fast_forward(self, table: str, branch: str) -> None:
        if table == self.fail_fast_forward_of:
            raise RuntimeError("Cannot fast-forward: main is not an ancestor")
        if self.die_after_fast_forwards == 0:
            raise SystemExit("killed")
        state = self.tables_[table]
        state.refs["main"] = state.refs.pop(branch)
        if self.die_after_fast_forwards is not None:
            self.die_after_fast_forwards -= 1

    def set_main(self, table: str, snapshot_id: int) -> None:
        self.tables_[table].refs["main"] = snapshot_id

    def has_snapshot(self, table: str, snapshot_id: int) -> bool:
        return snapshot_id in self.tables_[table].snapshots

    def drop(self, table: str) -> None:
        del self.tables_[table]

    def set_session_branch(self, branch: str | None) -> None:
        self.session_branch = branch


TABLES = ("marts.a", "marts.b", "staging.c")


@pytest.fixture
def published(tmp_path: Path) -> tuple[IcebergPublisher, FakeCatalog, dict[str, int | None]]:
    """A catalog after one successful run."""
    catalog = FakeCatalog()
    publisher = IcebergPublisher(make_settings(tmp_path, tmp_path / "landing"), catalog)
    publisher.begin("run-1", None)
    for table in TABLES:
        catalog.write(table)
    state = publisher.publish("run-1")
    mains = {table: catalog.main_snapshot(table) for table in TABLES}
    assert state == {"engine": "iceberg", "snapshots": mains}
    assert all(catalog.branches(table) == {} for table in TABLES)
    return publisher, catalog, mains


def _mains(catalog: FakeCatalog) -> dict[str, int | None]:
    return {table: catalog.main_snapshot(table) for table in catalog.tables()}


def test_first_run_failure_leaves_no_table_and_writes_only_branches(tmp_path: Path) -> None:
    catalog = FakeCatalog()
    publisher = IcebergPublisher(make_settings(tmp_path, tmp_path / "landing"), catalog)
    publisher.begin("run-1", None)
    catalog.write("marts.a")
    assert catalog.main_snapshot("marts.a") is None, "a first run's data is on its branch only"
    publisher.discard("run-1", keep_for_retry=False)
    assert catalog.tables() == [], "a table never published is dropped"
    assert catalog.session_branch is None


def test_a_publish_killed_between_two_fast_forwards_is_put_back_by_the_next_run(
    published: tuple[IcebergPublisher, FakeCatalog, dict[str, int | None]],
) -> None:
    publisher, catalog, before = published
    publisher.begin("run-2", None)
    for table in TABLES:
        catalog.write(table)
    catalog.die_after_fast_forwards = 1
    with pytest.raises(SystemExit):
        publisher.publish("run-2")
    assert _mains(catalog) != before, "one table moved before the process died"
    catalog.die_after_fast_forwards = None
    publisher.begin("run-3", None)  # a new process: the journal says a publish was cut short
    assert _mains(catalog) == before
    assert all(set(catalog.branches(t)) == {branch_name("run-3")} for t in TABLES)


def test_a_failed_fast_forward_puts_back_the_tables_already_moved(
    published: tuple[IcebergPublisher, FakeCatalog, dict[str, int | None]],
) -> None:
    publisher, catalog, before = published
    publisher.begin("run-2", None)
    for table in TABLES:
        catalog.write(table)
    catalog.fail_fast_forward_of = "marts.b"
    with pytest.raises(PublishError, match="table 2 of 3"):
        publisher.publish("run-2")
    assert _mains(catalog) == before


def test_a_table_written_outside_its_branch_is_refused_and_put_back(
    published: tuple[IcebergPublisher, FakeCatalog, dict[str, int | None]],
) -> None:
    publisher, catalog, before = published
    publisher.begin("run-2", None)
    catalog.tables_["marts.a"].wap = False  # the property was lost: writes go to main
    catalog.write("marts.a")
    catalog.write("marts.new")  # a new table created without the property
    catalog.tables_["marts.new"].refs = {"main": catalog.tables_["marts.new"].refs.pop("wap_run_2")}
    with pytest.raises(PublishError, match=r"marts\.a: main moved"):
        publisher.publish("run-2")
    publisher.discard("run-2", keep_for_retry=False)
    assert _mains(catalog) == before, "main put back, the unpublished new table dropped"


def test_a_retry_resumes_the_kept_branches_and_restore_goes_back(
    published: tuple[IcebergPublisher, FakeCatalog, dict[str, int | None]],
) -> None:
    publisher, catalog, before = published
    publisher.begin("run-2", None)
    written = catalog.write("marts.a")
    publisher.discard("run-2", keep_for_retry=True)
    assert _mains(catalog) == before
    with pytest.raises(PublishError, match="--retry cannot resume run other"):
        publisher.begin("run-3", "other")
    publisher.begin("run-3", "run-2")
    assert catalog.branches("marts.a") == {branch_name("run-3"): written}
    state = publisher.publish("run-3")
    assert state["snapshots"]["marts.a"] == written

    publisher.restore({"engine": "iceberg", "snapshots": before})
    assert _mains(catalog) == before
    with pytest.raises(PublishError, match="nothing was changed"):
        publisher.restore({"engine": "iceberg", "snapshots": {"marts.a": 1, "marts.b": 2}})
    assert _mains(catalog) == before


class RefusingCursor:
    """A Thrift server without Iceberg's SQL extensions: PyHive raises its error with the
    server's response as the argument, the message inside `status.errorMessage`."""

    def execute(self, operation: str) -> None:
        status = SimpleNamespace(errorMessage="[PARSE_SYNTAX_ERROR] Syntax error at 'branch'")
        raise OperationalError(SimpleNamespace(status=status))

    def fetchall(self) -> list[tuple[object, ...]]:
        raise AssertionError("nothing to fetch after a refused statement")


def test_the_sql_catalog_names_the_refused_statement_and_the_servers_reason() -> None:
    catalog = SqlIcebergCatalog(RefusingCursor, ["marts"])
    with pytest.raises(PublishError) as refused:
        catalog.prepare("marts.fct_orders", "wap_run_1", None)
    message = str(refused.value)
    assert "show tblproperties `marts`.`fct_orders`" in message
    assert "Syntax error at 'branch'" in message
    assert "SQL extensions" in message


def test_the_table_journal_names_itself_and_the_servers_reason() -> None:
    with pytest.raises(PublishError, match=r"journal ops\.pipeline_publish_journal .*branch"):
        TableJournal(RefusingCursor).read()
