"""Write-audit-publish on DuckDB through the real CLI (issue 16).

Consumers see only audited states: the published marts are exactly those of the last
successful run, whatever a failed run did (a mart test failed, a model errored, the process
was killed at any point, the disk filled up), and after the upstream repairs its data the
next run publishes what a full refresh gives. `pipeline rollback` republishes an earlier
state. Every case starts from a copy of one baseline built once per module.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import NEW_DAY, Checksums, Project, copy_project
from pipeline import PROJECT_DIR, generator
from pipeline.exits import FAILPOINT_ENV
from pipeline.lock import RunLock
from pipeline.publish import clone_file

UNKNOWN_ID = 99_999_999


def _new_part(project: Project, entity: str) -> Path:
    assert generator.append_day(project.settings.landing_root)[0] == NEW_DAY
    return project.settings.landing_root / entity / f"load_date={NEW_DAY}" / "part-0000.parquet"


def _rewrite_first(
    path: Path, where: Callable[[dict[str, object]], bool], **values: object
) -> None:
    """Change the first row matching `where`, keeping the file's schema; keeps the original
    beside it (original.bak) for the upstream's fix."""
    shutil.copy(path, path.with_name("original.bak"))
    table = pq.read_table(path)
    rows = table.to_pylist()
    index = next(i for i, row in enumerate(rows) if where(row))
    rows[index].update(values)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def _repair(path: Path) -> None:
    path.with_name("original.bak").replace(path)


def _order_for_a_customer_that_never_lands(project: Project) -> Path:
    part = _new_part(project, "orders")
    _rewrite_first(part, lambda row: True, customer_id=UNKNOWN_ID)
    return part


def _line_for_an_order_that_never_lands(project: Project) -> Path:
    part = _new_part(project, "order_items")
    _rewrite_first(part, lambda row: True, order_id=UNKNOWN_ID)
    return part


def _payment_for_an_order_that_never_lands(project: Project) -> Path:
    part = _new_part(project, "payments")
    _rewrite_first(part, lambda row: True, order_id=UNKNOWN_ID)
    return part


def _payment_bigger_than_its_order(project: Project) -> Path:
    part = _new_part(project, "payments")
    # A new completed payment of a million dollars: no generated order costs that much.
    _rewrite_first(part, lambda row: row["payment_status"] == "completed", amount_cents=100_000_000)
    return part


MART_FAULTS = {
    # fault -> the test that must name it: tests below staging, run after staging and the
    # volume gate passed (each fault is a valid row that only the joined layers can judge)
    "customer_never_lands": (_order_for_a_customer_that_never_lands, "fct_orders_customer_id"),
    "order_never_lands_for_a_line": (
        _line_for_an_order_that_never_lands,
        "not_null_int_order_items_priced_currency_code",
    ),
    "order_never_lands_for_a_payment": (_payment_for_an_order_that_never_lands, "payments"),
    "payment_bigger_than_its_order": (
        _payment_bigger_than_its_order,
        "assert_orders_never_paid_more_than_their_total",
    ),
}


def _published_runs(project: Project) -> set[str]:
    return set(project.history.published_by())


def _assert_nothing_published(project: Project, before: Checksums, published: set[str]) -> None:
    assert project.warehouse.checksums() == before, "a mart changed after a failed run"
    assert _published_runs(project) == published, "the failed run recorded a publish"


@pytest.mark.parametrize("fault", sorted(MART_FAULTS))
def test_a_failed_mart_test_publishes_nothing_and_the_repair_equals_a_full_refresh(
    baseline: tuple[Path, Checksums], reference: Checksums, tmp_path: Path, fault: str
) -> None:
    damage, named = MART_FAULTS[fault]
    project = copy_project(baseline, tmp_path)
    published = _published_runs(project)
    part = damage(project)

    code, _, stderr = project.pipeline("run")
    assert code == 1, stderr
    assert named in stderr, stderr
    run = project.history.runs(1)[0]
    assert (run.status, run.phase) == ("dbt_error", "downstream")
    _assert_nothing_published(project, baseline[1], published)

    _repair(part)
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert project.warehouse.checksums() == reference


def _broken_project_dir(tmp_path: Path) -> Path:
    """A copy of the dbt project in which one mart fails at run time (a cast dbt compiles
    but DuckDB cannot execute), after other marts have been built."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("dbt_project.yml", "models", "macros", "seeds", "snapshots", "tests", "profiles"):
        source = PROJECT_DIR / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        else:
            shutil.copy(source, copy / name)
    model = copy / "models" / "marts" / "core" / "dim_products.sql"
    sql = model.read_text()
    assert sql.rstrip().endswith("from final"), "the mart's last line moved: update this test"
    model.write_text(sql.rstrip() + "\nwhere cast('not a number' as integer) is not null\n")
    return copy


def test_a_model_error_in_the_marts_publishes_nothing(
    baseline: tuple[Path, Checksums], reference: Checksums, tmp_path: Path
) -> None:
    project = copy_project(baseline, tmp_path)
    published = _published_runs(project)
    generator.append_day(project.settings.landing_root)
    broken = tmp_path / "broken.yml"
    settings = yaml.safe_load(project.config.read_text())
    settings["project_dir"] = str(_broken_project_dir(tmp_path))
    broken.write_text(yaml.safe_dump(settings))

    code, _, stderr = project.pipeline("run", config=broken)
    assert code == 1, stderr
    assert "dim_products" in stderr and "Conversion Error" in stderr
    _assert_nothing_published(project, baseline[1], published)

    code, _, stderr = project.pipeline("run")  # the real project: the model is fixed
    assert code == 0, stderr
    assert project.warehouse.checksums() == reference


def _start_run(
    config: Path, max_file_bytes: int | None = None, failpoint: str | None = None
) -> subprocess.Popen[str]:
    """`pipeline run` in its own process. `max_file_bytes` caps every file it writes, the way
    a full disk would (RLIMIT_FSIZE, set in the child before it starts); `failpoint` kills it
    with SIGKILL at that point (pipeline.exits.failpoint)."""
    limit = (
        ""
        if max_file_bytes is None
        else f"resource.setrlimit(resource.RLIMIT_FSIZE, ({max_file_bytes}, {max_file_bytes})); "
    )
    code = (
        f"import resource, runpy, sys; {limit}"
        f"sys.argv = ['pipeline', 'run', '--config', {str(config)!r}]; "
        "runpy.run_module('pipeline.cli', run_name='__main__')"
    )
    env = {**os.environ, FAILPOINT_ENV: failpoint} if failpoint else None
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _assert_next_run_repairs(project: Project, reference: Checksums) -> None:
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert project.warehouse.checksums() == reference
    generations = project.settings.warehouse_path.with_name("warehouse.generations")
    assert not list(generations.glob("*.unpublished")), "the killed run's copy was left behind"


@pytest.mark.parametrize("point", ["staging", "publish", "publish:renamed"])
def test_sigkill_at_each_step_leaves_the_published_state_whole(
    baseline: tuple[Path, Checksums], reference: Checksums, tmp_path: Path, point: str
) -> None:
    """Killed while staging merges, as the publish starts, and between its steps (the other
    phases' starts are the same case: the private copy is simply never renamed)."""
    project = copy_project(baseline, tmp_path)
    generator.append_day(project.settings.landing_root)
    process = _start_run(project.config, failpoint=point)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, stderr
    assert project.warehouse.checksums() == baseline[1], f"a mart changed, killed at {point}"
    _assert_next_run_repairs(project, reference)


def test_sigkill_after_the_rename_leaves_the_new_state_whole(
    baseline: tuple[Path, Checksums], reference: Checksums, tmp_path: Path
) -> None:
    """Killed after the published file was swapped: consumers see the new, audited state."""
    project = copy_project(baseline, tmp_path)
    generator.append_day(project.settings.landing_root)
    process = _start_run(project.config, failpoint="publish:linked")
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, stderr
    assert project.warehouse.checksums() == reference
    _assert_next_run_repairs(project, reference)


def test_sigkill_in_the_middle_of_the_marts_leaves_the_published_state_whole(
    baseline: tuple[Path, Checksums], reference: Checksums, tmp_path: Path
) -> None:
    """Killed as soon as dbt has built one mart of the day in the run's copy, others to come
    (a failpoint on dbt's NodeFinished: a sleep raced the faster downstream phase)."""
    project = copy_project(baseline, tmp_path)
    generator.append_day(project.settings.landing_root)
    process = _start_run(project.config, failpoint="built:fct_orders")
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, f"the run ended before the kill: {stderr}"
    run = project.history.runs(1)[0]
    assert (run.status, run.phase) == ("running", "downstream"), "killed elsewhere than the marts"
    assert project.warehouse.checksums() == baseline[1]
    _assert_next_run_repairs(project, reference)


def test_a_run_stopped_before_prepare_removes_the_copy_it_started(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    """On DuckDB the copy to build in starts before the parse, in a thread (runner.py,
    _start_prepare). A run that the contract gate stops before `prepare` waits for that copy
    to end, removes it, and leaves the published file as it was."""
    project = copy_project(baseline, tmp_path)
    _rewrite_first(_new_part(project, "orders"), lambda row: True, order_id=None)
    code, _, stderr = project.pipeline("run")
    assert code == 4 and "order_id" in stderr, stderr
    assert project.history.runs(1)[0].phase == "contract"
    generations = project.settings.warehouse_path.with_name("warehouse.generations")
    assert not list(generations.glob("*.unpublished")), "the stopped run's copy was left behind"
    assert project.warehouse.checksums() == baseline[1]


def test_the_cli_starts_without_importing_dbt() -> None:
    """The copy to build in starts before the parse, and dbt's import (about a second) runs
    while it does only because nothing `pipeline` imports at start imports dbt: the first
    invocation does (pipeline/dbt.py). A module-level `from dbt ...` anywhere in the runner's
    imports would quietly put the import back in front of the copy."""
    probe = (
        "import sys, pipeline.cli; "
        "print(sorted(m for m in sys.modules if m == 'dbt' or m.startswith('dbt.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]", f"importing pipeline.cli imported dbt modules: {loaded[:300]}"


def test_a_full_disk_publishes_nothing(
    baseline: tuple[Path, Checksums], reference: Checksums, tmp_path: Path
) -> None:
    """The file-size limit stands in for a full disk: every write past it fails (EFBIG; Python
    ignores SIGXFSZ), so the build in the private copy fails as it would on a full disk."""
    project = copy_project(baseline, tmp_path)
    generator.append_day(project.settings.landing_root)
    process = _start_run(project.config, project.settings.warehouse_path.stat().st_size)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    _assert_nothing_published(project, baseline[1], _published_runs(project))

    code, _, stderr = project.pipeline("run")  # space again
    assert code == 0, stderr
    assert project.warehouse.checksums() == reference


def test_a_reader_keeps_its_view_while_a_run_publishes(
    baseline: tuple[Path, Checksums], reference: Checksums, tmp_path: Path
) -> None:
    """A consumer reading the published file never blocks a run (exit 0, not 5) and keeps a
    consistent view of the state it opened; a new connection sees the new state."""
    project = copy_project(baseline, tmp_path)
    generator.append_day(project.settings.landing_root)
    count = "select count(*) from marts.fct_orders"
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
            f"print(con.sql('{count}').fetchone()[0], flush=True); sys.stdin.readline(); "
            f"print(con.sql('{count}').fetchone()[0], flush=True)",
            str(project.settings.warehouse_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdin is not None and reader.stdout is not None
        before = int(reader.stdout.readline())
        code, _, stderr = project.pipeline("run")
        reader.stdin.write("\n")
        reader.stdin.flush()
        during = int(reader.stdout.readline())
    finally:
        reader.kill()
        reader.wait()
    assert code == 0, stderr
    assert before == during == baseline[1]["fct_orders"][0]
    with duckdb.connect(str(project.settings.warehouse_path), read_only=True) as con:
        assert con.sql(count).fetchone() == (reference["fct_orders"][0],)


def test_rollback_republishes_an_earlier_state_and_the_next_run_judges_again(
    baseline: tuple[Path, Checksums], reference: Checksums, tmp_path: Path
) -> None:
    project = copy_project(baseline, tmp_path)
    (first,) = _published_runs(project)
    generator.append_day(project.settings.landing_root)
    assert project.pipeline("run")[0] == 0
    assert project.warehouse.checksums() == reference
    bad_day = project.history.runs(1)[0].run_id

    code, stdout, stderr = project.pipeline("rollback", "--to", first[:8])
    assert code == 0, stderr
    assert first in stdout and bad_day[:8] in stdout
    assert project.warehouse.checksums() == baseline[1]
    statuses = {run.run_id: run.status for run in project.history.runs(5)}
    assert statuses[bad_day] == "rolled_back" and statuses[first] == "success"
    _, listing, _ = project.pipeline("history")
    assert "rollback" in listing

    # The rolled-back day is judged again and published again.
    code, _, stderr = project.pipeline("run")
    assert code == 0, stderr
    assert f"volume ok: stg_landing__orders load {NEW_DAY}" in stderr
    assert project.warehouse.checksums() == reference


def test_a_run_prunes_old_generations_as_it_starts_but_never_the_published_one(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    """keep_generations: a run deletes the generations older than the newest keep - 1 as it
    starts (while dbt parses), so that `keep` remain once it publishes. The published one is
    never deleted, even when a rollback made an older generation the published one."""
    project = copy_project(baseline, tmp_path)
    project.config.write_text(project.config.read_text() + "keep_generations: 2\n")
    generations = project.settings.warehouse_path.with_name("warehouse.generations")

    def kept() -> set[str]:
        return {path.name for path in generations.iterdir()}

    def run() -> str:
        code, _, stderr = project.pipeline("run")
        assert code == 0, stderr
        return project.history.runs(1)[0].run_id

    (first,) = _published_runs(project)
    generator.append_day(project.settings.landing_root)
    second = run()
    assert kept() == {first, second}
    assert project.pipeline("rollback", "--to", first)[0] == 0
    third = run()
    # `second` is the newest the run keeps (keep - 1 = 1); `first` was published when it began.
    assert kept() == {first, second, third}
    fourth = run()
    assert kept() == {third, fourth}
    assert (generations / fourth / "warehouse.duckdb").samefile(project.settings.warehouse_path)
    assert project.pipeline("rollback", "--to", third)[0] == 0


def test_rollback_refuses_what_it_cannot_restore(
    baseline: tuple[Path, Checksums], tmp_path: Path
) -> None:
    project = copy_project(baseline, tmp_path)
    code, _, stderr = project.pipeline("rollback", "--to", "no-such-run")
    assert code == 2 and "--to no-such-run: no run that published a state" in stderr
    (first,) = _published_runs(project)
    with RunLock(project.settings.lock_path, "another run"):
        code, _, stderr = project.pipeline("rollback", "--to", first)
    assert code == 5, stderr
    # Pruned (keep_generations): the state is named, not half restored.
    shutil.rmtree(project.settings.warehouse_path.with_name("warehouse.generations") / first)
    code, _, stderr = project.pipeline("rollback", "--to", first)
    assert code == 2 and "keep_generations" in stderr
    assert project.warehouse.checksums() == baseline[1]


def test_a_run_executes_every_test_the_project_declares(baseline: tuple[Path, Checksums]) -> None:
    """Each phase selects its own tests; together they must be all of them. A test that reads
    a staging node and a mart (a mart's relationship to a seed, its recency against staging)
    once fell between the phases: the staging phase waits for the mart, and dbt's default
    indirect selection dropped it from the downstream phase with the excluded staging nodes."""
    project = Project(baseline[0], baseline[0] / "landing")
    (run,) = project.history.runs(last=1)
    assert run.status == "success"
    executed = {
        node.unique_id
        for node in project.history.nodes(run.run_id)
        if node.resource_type in ("test", "unit_test") and node.status in ("pass", "success")
    }
    listed = project.warehouse.dbt(
        "ls",
        "--resource-type",
        "test",
        "--resource-type",
        "unit_test",
        "--output",
        "json",
        "--output-keys",
        "unique_id",
    ).listed
    declared = {json.loads(line)["unique_id"] for line in listed}
    assert len(declared) > 100  # the project's data and unit tests, not an empty listing
    assert declared - executed == set()


def test_the_copy_a_run_builds_in_is_whole_on_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`clone_file` makes the private copy: the kernel's copy_file_range (a reflink on XFS and
    btrfs), `shutil.copyfile` where that is refused, and an error, never a short copy."""
    source = tmp_path / "published.duckdb"
    source.write_bytes(os.urandom(3 * 2**20 + 17))
    clone_file(source, tmp_path / "kernel.duckdb")
    assert (tmp_path / "kernel.duckdb").read_bytes() == source.read_bytes()

    def refused(*_: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refused)
    clone_file(source, tmp_path / "fallback.duckdb")
    assert (tmp_path / "fallback.duckdb").read_bytes() == source.read_bytes()

    monkeypatch.setattr(os, "copy_file_range", lambda *_: 0)  # the source ends early
    with pytest.raises(OSError, match="ended 3145745 bytes early"):
        clone_file(source, tmp_path / "short.duckdb")
