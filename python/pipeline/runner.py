"""`pipeline run`: the phases of a run, each a gate or a dbt invocation, in order.

    lock -> contract gate -> prepare -> freshness gate -> build seeds + staging -> volume gate
         -> null-rate gate -> the rest -> publish

A gate that fails stops the run before the next layer, so marts are never built from data
that failed a gate. Every dbt phase writes to the run's private state (publish.py) and only a
run in which everything passed publishes it: consumers never see a failed run's writes.
Every run, however it ends, is recorded in the history, the metrics file and the lineage
log, and ends with a summary. This module only orders the phases: the verdicts are pure
functions in gates.py and landing.py, dbt's artifacts are read by dbt.py and manifest.py,
and what a person sees is summary.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import duckdb
import yaml
from rich.console import Console

from pipeline import gates
from pipeline.config import REPORT_PATH, Settings, mask_secrets
from pipeline.dbt import DbtOutcome, invoke, read_json_artifact, release_duckdb
from pipeline.exits import ExitCode, StopRun, failpoint
from pipeline.history import History, NodeRecord, RunRecord, utc_now
from pipeline.landing import EntityContract, check_landing, summarize
from pipeline.lease import run_lock
from pipeline.lock import LockBusy
from pipeline.manifest import BUILT_TYPES, Manifest
from pipeline.notify import report_and_notify
from pipeline.observability import Lineage, RunSummary, write_metrics
from pipeline.publish import PublishError, publisher_for
from pipeline.state import StateArgs, state_args
from pipeline.summary import dbt_progress, summary_table
from pipeline.warehouse import load_null_counts, load_volumes, queries_for, relation_sizes

T = TypeVar("T")
STAGING_SELECTOR = "path:seeds path:models/staging"
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DBT_LEVELS = {"warn": logging.WARNING, "error": logging.ERROR}  # dbt events the log repeats
KEEP_RUN_FOLDERS = 20  # artifacts of the last runs, for --retry and for people
# The endings a person must look at; stale sources, locks and cancellations are retried later.
NOTIFIED = frozenset({ExitCode.DBT_ERROR, ExitCode.USAGE, ExitCode.VOLUME})


@dataclass(frozen=True)
class RunOptions:
    select: tuple[str, ...] = ()
    full_refresh: bool = False
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    retry: bool = False
    build: bool = True  # False for `pipeline gates`
    deep: bool = False  # every data test over whole tables, and the unit tests (e.g. weekly)

    def dbt_vars(self) -> dict[str, str]:
        if self.start_date is None or self.end_date is None:
            return {}
        return {
            "backfill_start": self.start_date.isoformat(),
            "backfill_end": self.end_date.isoformat(),
        }

    def describe(self) -> str:
        parts = ["run" if self.build else "gates"]
        parts += [f"--select {s}" for s in self.select]
        if self.full_refresh:
            parts.append("--full-refresh")
        if self.start_date:
            parts.append(f"--start-date {self.start_date} --end-date {self.end_date}")
        if self.retry:
            parts.append("--retry")
        if self.deep:
            parts.append("--deep")
        return " ".join(parts)


def intersect(phase: str, select: tuple[str, ...]) -> list[str]:
    """dbt selector for `phase` ∩ (union of user selectors): dbt's comma is intersection."""
    if not select:
        return [phase]
    return [f"{p},{s}" for p in phase.split() for s in " ".join(select).split()]


def _both(first: Callable[[Any], None], second: Callable[[Any], None], event: Any) -> None:
    first(event)
    second(event)


def _resumable(status: str | None, phase: str | None) -> bool:
    """Whether `pipeline run --retry` can continue a run that ended so: only a dbt build that
    finished with failures, whose run_results.json names every node it skipped."""
    return status == ExitCode.DBT_ERROR.name.lower() and phase in {"staging", "downstream"}


class Runner:
    def __init__(
        self,
        settings: Settings,
        options: RunOptions,
        logger: logging.Logger,
        console: Console | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.log = logger
        self.console = console or Console()
        self.history = History(settings.resolve(settings.history_path))
        self.summary = RunSummary(
            run_id=str(uuid.uuid4()),
            target=settings.target,
            started_at=dt.datetime.now(dt.UTC),
        )
        self.recent_runs: list[RunRecord] = []
        self.runs_dir = settings.resolve(settings.target_path) / "runs"
        self.run_dir = self.runs_dir / self.summary.run_id
        self.resumed_run = ""
        self.cancelled_by: int | None = None
        self.finishing = False
        self.state = StateArgs()  # --state/--defer when a selector uses state: (slim CI)
        self.publisher = publisher_for(settings)
        self.build_settings = settings  # where dbt writes: the run's private state, once prepared
        self.preparing: Future[Settings] | None = None  # that state, being made (_start_prepare)
        self.published: dict[str, Any] | None = None
        self.parsed: Any = None  # dbt's Manifest from the parse phase, reused by every invocation
        self.manifest: Manifest | None = None  # the same parse, as the runner reads it
        self.tests_since: dt.date | None = None  # a daily run's test scope (macros/test_scope.sql)
        self.landing_registered = False  # the freshness gate created the landing views
        self.summary.partial = bool(options.select) or not options.build

    # -- entry --------------------------------------------------------------------------------

    def execute(self) -> int:
        """Run under the lock; a busy lock is itself a recorded run with exit code 5."""
        started = self.summary.started_at.replace(tzinfo=None)
        self.recent_runs = self.history.runs(20)

        def record_start() -> None:
            self.history.start_run(
                self.summary.run_id, self.settings.target, self.options.describe(), started
            )

        try:
            with run_lock(self.settings, self.summary.run_id) as lock:
                # Recorded `running` only under the lock: any other `running` row the holder
                # finds belongs to a run that died (see _close_abandoned_runs).
                record_start()
                if lock.stale_holder:
                    self.log.warning(
                        "took over a stale lock left by %s",
                        lock.stale_holder,
                        extra={"fields": {"event": "stale_lock", "holder": lock.stale_holder}},
                    )
                return self._execute_locked()
        except LockBusy as busy:
            record_start()
            return self._finish(ExitCode.LOCKED, "lock", str(busy), observe=False)

    def _execute_locked(self) -> int:
        lineage = self._observe("lineage", lambda: Lineage(self.settings, self.summary))
        self._close_abandoned_runs(lineage)
        if lineage is not None:
            self._observe("lineage", lineage.start)
        self.log.info(
            "run %s started: %s on %s",
            self.summary.run_id,
            self.options.describe(),
            self.settings.target,
            extra={"fields": {"event": "run_started", "run_id": self.summary.run_id}},
        )
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in CANCEL_SIGNALS}
        try:
            self._phases()
            code = self._finish(ExitCode.SUCCESS, "done", None)
        except (StopRun, KeyboardInterrupt) as stop:
            if self.cancelled_by is not None:  # dbt may turn the interrupt into a failed node
                code = self._finish_cancelled()
            elif isinstance(stop, StopRun):
                code = self._finish(stop.code, stop.phase, stop.message)
            else:
                raise
        except Exception as error:  # a crash must still be recorded and reported as exit 1
            self.log.error(
                "run crashed: %s: %s",
                type(error).__name__,
                " ".join(str(error).split()),
                exc_info=self.log.isEnabledFor(logging.DEBUG),
            )
            code = self._finish(
                ExitCode.DBT_ERROR,
                self.summary.phase or "runner",
                f"{type(error).__name__}: {error}",
            )
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if self.published is None:
                self._await_prepare()
                self._discard()
        if lineage is not None:
            self._observe("lineage", lineage.finish)
        return code

    def _discard(self) -> None:
        """A run that published nothing leaves nothing: its private state goes, except after a
        failed dbt build, where `--retry` continues from it (the next other run drops it)."""
        keep = self.options.build and _resumable(self.summary.status, self.summary.phase)
        try:
            self._release()
            self.publisher.discard(self.summary.run_id, keep_for_retry=keep)
        except OSError as error:  # the next run removes it; the verdict stands
            self.log.warning(
                "the run's unpublished state could not be removed: %s",
                error,
                extra={"fields": {"event": "discard_failed"}},
            )

    def _on_signal(self, signum: int, _frame: object) -> None:
        """SIGTERM and SIGINT end the run cleanly: dbt is interrupted where it is (it cancels
        its open queries), then the run is recorded as cancelled like any other ending."""
        self.cancelled_by = signum
        if not self.finishing:  # the recording of the ending itself is never interrupted
            raise KeyboardInterrupt

    def _finish_cancelled(self) -> int:
        signum = self.cancelled_by or signal.SIGTERM
        code = ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED
        name = signal.Signals(signum).name
        return self._finish(
            code,
            self.summary.phase or "runner",
            f"cancelled by {name} during {self.summary.phase}: nothing more was built",
            status="cancelled",
        )

    def _close_abandoned_runs(self, lineage: Lineage | None) -> None:
        """Runs still `running` when this one holds the lock died without a word: say so."""
        now = self.summary.started_at.replace(tzinfo=None)
        for run_id, phase in self.history.abandon_running(self.summary.run_id, now):
            self.log.warning(
                "run %s was abandoned in phase %s (killed or lost power); marked abandoned",
                run_id,
                phase,
                extra={"fields": {"event": "abandoned_run", "run": run_id, "phase": phase}},
            )
            if lineage is not None:
                self._observe("lineage", partial(lineage.abort, run_id))

    def _dbt_event(self, event: Any) -> None:
        """dbt's own warnings and errors, as lines of this run's log (JSON in JSON mode)."""
        if event.info.name == "NodeFinished":  # a test's kill point: `built:fct_orders`
            failpoint(f"built:{event.data.node_info.node_name}")
        level = DBT_LEVELS.get(event.info.level)
        # A stack trace is for --debug; after a cancel, dbt's errors only echo the interrupt.
        trace = event.info.name.endswith("StackTrace") and not self.log.isEnabledFor(logging.DEBUG)
        if level is not None and not trace and self.cancelled_by is None:
            self.log.log(
                level,
                "dbt: %s",
                " ".join(str(event.info.msg).split()),
                extra={"fields": {"event": "dbt", "dbt_event": event.info.name}},
            )

    def _observe(self, what: str, report: Callable[[], T]) -> T | None:
        """Lineage and metrics are reports about a run: when one fails (an endpoint down, a
        path not writable) the run goes on, its exit code unchanged, and says so once."""
        try:
            return report()
        except Exception as error:
            self.log.warning(
                "%s could not be written, the run goes on: %s",
                what,
                mask_secrets(f"{type(error).__name__}: {error}"),
                extra={"fields": {"event": "observability_failed", "output": what}},
            )
            return None

    # -- phases -------------------------------------------------------------------------------

    def _phases(self) -> None:
        resume = self._phase_to_resume()
        self._prune_run_folders()
        if self.settings.target == "duckdb":
            self._timed("warehouse", self._check_warehouse_free)
            if resume is None:
                self._start_prepare()
        self.state = state_args(self.settings, self.options.select)  # exit 2 before any build
        manifest = self._timed("parse", self._parse)
        if self.options.select and self.options.build:
            self._timed("select", self._check_selection)
        self._timed("contract", lambda: self._contract_gate(manifest))
        self.build_settings = self._timed("prepare", self._prepare)
        self._timed("freshness", self._freshness_gate)
        if self.options.build and resume != "downstream":
            if resume == "staging":
                self._timed("staging", lambda: self._dbt("staging", self._retry_args("staging")))
            else:
                # cautious: a test that also reads a downstream model waits for the downstream phase
                staging = [
                    "--select",
                    *intersect(STAGING_SELECTOR, self.options.select),
                    "--indirect-selection",
                    "cautious",
                ]
                self._timed("staging", lambda: self._build("staging", staging))
        self._timed("volume", lambda: self._volume_gate(manifest))
        if self.options.build:
            self._timed("nulls", lambda: self._null_rate_gate(manifest))
            if resume == "downstream":
                self._timed(
                    "downstream", lambda: self._dbt("downstream", self._retry_args("downstream"))
                )
            else:
                selected = ["--select", *self.options.select] if self.options.select else []
                # buildable, not dbt's eager default: eager drops with the excluded staging nodes
                # every test that also reads one (a mart's relationships to a seed, its recency
                # against a staging model), and the staging phase (cautious) leaves them here.
                downstream = [
                    *selected,
                    "--exclude",
                    *STAGING_SELECTOR.split(),
                    "--indirect-selection",
                    "buildable",
                ]
                self._timed("downstream", lambda: self._build("downstream", downstream))
            self._timed("publish", self._publish)

    def _start_prepare(self) -> None:
        """On DuckDB, start the copy of the published file now, in a thread, so that it runs
        while dbt parses (about a second) instead of after: the copy grows with the history
        (on ext4 2.4 s for 1.3 GB), the parse does not. Nothing writes the published file
        meanwhile: the run lock and the writer check above keep other writers out, and parse
        and the contract gate do not open the warehouse."""
        self._release()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        self.preparing = pool.submit(self.publisher.begin, self.summary.run_id, None)
        pool.shutdown(wait=False)  # returns at once; the copy goes on to its end

    def _await_prepare(self) -> None:
        """A run that stops before `prepare` still waits for its copy, which it then discards."""
        if self.preparing is not None:
            self.preparing.exception()

    def _prepare(self) -> Settings:
        """The run's private state: every later phase reads and writes there, not the
        published warehouse (with --retry, the failed run's state it continues)."""
        try:
            if self.preparing is not None:
                return self.preparing.result()
            self._release()
            return self.publisher.begin(self.summary.run_id, self.resumed_run or None)
        except PublishError as error:
            code = ExitCode.USAGE if self.resumed_run else ExitCode.DBT_ERROR
            raise StopRun(code, "prepare", str(error)) from None

    def _release(self) -> None:
        if self.settings.target == "duckdb":
            release_duckdb()

    def _publish(self) -> None:
        """Everything passed: the run's state becomes the one consumers read, in one step."""
        try:
            self._release()
            state = self.publisher.publish(self.summary.run_id)
        except PublishError as error:
            raise StopRun(ExitCode.DBT_ERROR, "publish", str(error)) from None
        self.published = state
        self.history.record_publish(
            self.summary.run_id,
            self.settings.target,
            utc_now(),
            state,
        )
        self.log.info(
            "published: %s",
            state,
            extra={"fields": {"event": "published", "state": state}},
        )

    def _phase_to_resume(self) -> str | None:
        """With --retry: the dbt phase the last attempted run of the runner failed in.

        It is resumed from that run's own artifacts (target/runs/<run_id>/<phase>), whatever a
        person ran with dbt since. A run refused by the lock attempted nothing and is skipped;
        when the last attempted run did not fail in a dbt phase there is nothing to resume, and
        --retry says so (exit 2) rather than quietly doing something else. A run cancelled or
        killed in a dbt phase is not resumed either: dbt's retry rebuilds the failed and skipped
        nodes of a finished build's results, and would pass over the nodes such a run never
        started.
        """
        if not self.options.retry:
            return None
        attempted = next((run for run in self.recent_runs if run.status != "locked"), None)
        if attempted is None or not _resumable(attempted.status, attempted.phase):
            last = (
                "no run yet"
                if attempted is None
                else f"run {attempted.run_id} ended {attempted.status}"
            )
            raise StopRun(
                ExitCode.USAGE,
                "retry",
                f"--retry has nothing to resume: {last} (only a run whose build failed in a "
                "dbt phase can be resumed; a cancelled or killed one is run again); run "
                "without --retry",
            )
        self.resumed_run = attempted.run_id
        return attempted.phase

    def _retry_args(self, phase: str) -> list[str]:
        state = self.runs_dir / self.resumed_run / phase
        if not (state / "run_results.json").exists():
            raise StopRun(
                ExitCode.USAGE,
                "retry",
                f"--retry cannot resume run {self.resumed_run}: its artifacts are gone from "
                f"{state}; run without --retry",
            )
        return ["retry", "--state", str(state)]

    def _prune_run_folders(self) -> None:
        """Keep the artifacts of the last KEEP_RUN_FOLDERS runs, this one included."""
        if not self.runs_dir.exists():
            return
        folders = sorted(
            (folder for folder in self.runs_dir.iterdir() if folder.is_dir()),
            key=lambda folder: folder.stat().st_mtime,
        )
        for folder in folders[: max(0, len(folders) - KEEP_RUN_FOLDERS + 1)]:
            shutil.rmtree(folder, ignore_errors=True)

    def _timed(self, phase: str, step: Callable[[], T]) -> T:
        self.summary.phase = phase
        self.history.set_phase(self.summary.run_id, phase)
        failpoint(phase)
        started = time.perf_counter()
        try:
            return step()
        finally:
            self.summary.timings[phase] = (
                self.summary.timings.get(phase, 0.0) + time.perf_counter() - started
            )

    def _check_warehouse_free(self) -> None:
        """Another process writing the DuckDB file is a lock like ours: exit 5, retry later.

        The run builds in a copy of the published file, so readers never stand in its way;
        a writer would (its changes would be lost at publish, or half copied), and is named
        here, before any gate, instead of a dbt error (exit 1) halfway through a build.
        """
        path = self.settings.resolve(self.settings.warehouse_path)
        if not path.exists():
            return
        try:
            duckdb.connect(str(path), read_only=True).close()
        except duckdb.ConnectionException:
            return  # this process (dbt's cached instance) has it open: no other process does
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            detail = " ".join(str(error).split())
            raise StopRun(
                ExitCode.LOCKED,
                "warehouse",
                f"another process holds the warehouse file {path}: {detail}",
            ) from None

    def _parse(self) -> Manifest:
        """Parse the project once for the gates; a project dbt cannot parse is a usage error."""
        landing = self.settings.resolve(self.settings.landing_root)
        if not landing.is_dir():
            raise StopRun(
                ExitCode.USAGE,
                "parse",
                f"landing_root {landing} does not exist: set landing_root (pipeline.yml or "
                "PIPELINE_LANDING_ROOT) or generate the sample data",
            )
        # dbt parses into one folder kept across runs (under the lock), so its partial parse
        # re-reads only the files that changed: a full parse costs seconds on every run. The
        # run's own folder gets a copy of the manifest, what --retry and people read.
        cache = self.runs_dir.parent / "parse"
        outcome = invoke(
            self.settings,
            ["parse"],
            self.options.dbt_vars(),  # the vars every later invocation of the run passes
            target_path=cache,
            quiet=True,
            on_event=self._dbt_event,
        )
        if not outcome.success:
            raise StopRun(
                ExitCode.USAGE, "parse", f"dbt could not parse the project: {outcome.error}"
            )
        self.parsed = outcome.parsed
        (self.run_dir / "parse").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache / "manifest.json", self.run_dir / "parse" / "manifest.json")
        manifest = Manifest.load(self.run_dir / "parse" / "manifest.json")
        self.manifest = manifest
        self.summary.sources.update(
            {uid: source.relation_name for uid, source in manifest.sources.items()}
        )
        return manifest

    def _check_selection(self) -> None:
        """A selector that matches nothing, or that dbt cannot read, is a usage error (exit 2).

        A scheduler with a typo in its selector would otherwise succeed forever, building
        nothing. dbt's own selection is the judge, asked before any gate or build.
        """
        selection = " ".join(self.options.select)
        outcome = invoke(
            self.settings,
            ["ls", "--select", *self.options.select, *self.state.select, "--output", "name"],
            target_path=self.run_dir / "select",
            quiet=True,
            on_event=self._dbt_event,
            manifest=self.parsed,
        )
        if not outcome.success:
            raise StopRun(
                ExitCode.USAGE, "select", f"dbt cannot use --select {selection}: {outcome.error}"
            )
        if not outcome.listed:
            raise StopRun(
                ExitCode.USAGE,
                "select",
                f"--select {selection} does not match any enabled node: nothing would be built "
                "(check the selector's spelling)",
            )

    def _contract_gate(self, manifest: Manifest) -> None:
        """Every landing partition staging will read in this run, against the sources' contract.

        Runs first: a file that breaks the contract (a vanished or retyped column, nulls in a
        key, a timestamp from the future, garbage instead of Parquet) is named before any
        engine reads it, and nothing is built (exit 4).
        """
        contracts = [EntityContract.from_source(source) for source in manifest.landing_sources()]
        since = self._partitions_read_since(manifest, [contract.entity for contract in contracts])
        self.tests_since = self._tests_since(since)
        now = self.summary.started_at.astimezone(dt.UTC).replace(tzinfo=None)
        tolerance = dt.timedelta(minutes=self.settings.future_tolerance_minutes)
        violations = check_landing(
            contracts,
            self.settings.resolve(self.settings.landing_root),
            since,
            self.options.end_date,
            now,
            tolerance,
        )
        self.history.record_contract(self.summary.run_id, violations)
        for violation in violations[:50]:
            self.log.error(
                violation.message(),
                extra={
                    "fields": {
                        "event": "contract",
                        "entity": violation.entity,
                        "load_date": violation.load_date.isoformat(),
                        "file": violation.file,
                        "column": violation.column,
                    }
                },
            )
        if violations:
            raise StopRun(
                ExitCode.VOLUME,
                "contract",
                f"landing data breaks its contract, nothing was built: {summarize(violations)}",
            )

    def _tests_since(self, since: dict[str, dt.date | None]) -> dt.date | None:
        """The earliest `_loaded_at` date a row merged by this daily run can carry, or None
        when this run's tests must read whole tables.

        An incremental model recomputes keys loaded after its own watermark, the newest stored
        `_loaded_at` minus `lookback_days`; staging reads from the lookback window before the
        newest judged load (`since`, itself a day before that window). A day before the
        earliest of those is a superset of every row the run writes. Whole tables instead on
        --deep, a full refresh, a backfill, a run with --select (slim CI tests changed code),
        a first run (no judged load, or no warehouse yet).
        """
        options = self.options
        if options.deep or options.full_refresh or options.start_date or options.select:
            return None
        if not since or any(date is None for date in since.values()):
            return None
        if self.settings.target == "duckdb" and not (
            self.settings.resolve(self.settings.warehouse_path).exists()
        ):
            return None
        return min(date for date in since.values() if date is not None) - dt.timedelta(days=1)

    def _partitions_read_since(
        self, manifest: Manifest, entities: list[str]
    ) -> dict[str, dt.date | None]:
        """Per entity, the load date after which staging reads partitions in this run.

        A full refresh reads everything; a backfill its window; a daily run re-reads the
        lookback window before the newest load a successful run has judged.
        """
        if self.options.full_refresh:
            return dict.fromkeys(entities)
        if self.options.start_date is not None:
            return dict.fromkeys(entities, self.options.start_date - dt.timedelta(days=1))
        subjects = manifest.volume_subjects()
        past = self.history.volume_history(subjects)
        project = yaml.safe_load((self.settings.project_dir / "dbt_project.yml").read_text())
        lookback = dt.timedelta(days=int(project["vars"]["lookback_days"]) + 1)
        since: dict[str, dt.date | None] = dict.fromkeys(entities)
        for name, subject in subjects.items():
            if subject.entity in since and past[name]:
                since[subject.entity] = past[name][0][0] - lookback
        return since

    def _freshness_gate(self) -> None:
        outcome = invoke(
            self.build_settings,
            ["source", "freshness"],
            target_path=self.run_dir / "freshness",
            quiet=True,
            on_event=self._dbt_event,
            manifest=self.parsed,
        )
        # The views are in the run's private state now; the builds need not create them again.
        self.landing_registered = outcome.success
        checks = gates.freshness_checks(
            read_json_artifact(self.run_dir / "freshness" / "sources.json"),
            future_tolerance_seconds=60.0 * self.settings.future_tolerance_minutes,
        )
        self.summary.freshness = checks
        self.history.record_freshness(self.summary.run_id, checks)
        if not checks:
            raise StopRun(
                ExitCode.DBT_ERROR, "freshness", f"dbt source freshness failed: {outcome.error}"
            )
        for check in checks:
            level = (
                logging.ERROR
                if check.is_error
                else logging.WARNING
                if check.status == "warn"
                else logging.INFO
            )
            self.log.log(
                level,
                check.message(),
                extra={
                    "fields": {
                        "event": "freshness",
                        "source": check.source,
                        "status": check.status,
                        "age_s": check.age_seconds,
                    }
                },
            )
        broken = [c for c in checks if c.status == "runtime error"]
        if broken:
            raise StopRun(ExitCode.DBT_ERROR, "freshness", "; ".join(c.message() for c in broken))
        future = [c for c in checks if c.status == "future"]
        if future:
            raise StopRun(
                ExitCode.VOLUME,
                "freshness",
                "landing data from the future, nothing was built: "
                + "; ".join(c.message() for c in future),
            )
        stale = [c for c in checks if c.is_error]
        if stale:
            raise StopRun(
                ExitCode.STALE,
                "freshness",
                "stale source, nothing was built: " + "; ".join(c.message() for c in stale),
            )

    def _volume_gate(self, manifest: Manifest) -> None:
        subjects = manifest.volume_subjects()
        past = self.history.volume_history(subjects)
        since = {
            name: gates.new_load_since(past[name], self.options.start_date) for name in subjects
        }
        volumes = load_volumes(
            queries_for(self.build_settings),
            {name: subject.source_relation for name, subject in subjects.items()},
            since,
            self.options.end_date,
        )
        verdicts = gates.judge_volumes(
            {name: subject.policy for name, subject in subjects.items()},
            volumes,
            past,
            since,
            self.history.acceptances(),
        )
        self.summary.volume = verdicts
        failed = [v for v in verdicts if not v.passed]
        for verdict in verdicts if len(verdicts) <= 60 else failed:
            self.log.log(
                logging.INFO if verdict.passed else logging.ERROR,
                verdict.message(),
                extra={
                    "fields": {
                        "event": "volume",
                        "subject": verdict.subject,
                        "load_date": verdict.load_date.isoformat(),
                        "observed": verdict.observed,
                        "low": verdict.low,
                        "high": verdict.high,
                        "passed": verdict.passed,
                    }
                },
            )
        if failed:
            raise StopRun(
                ExitCode.VOLUME,
                "volume",
                "anomalous volume, downstream not built: " + "; ".join(v.message() for v in failed),
            )

    def _null_rate_gate(self, manifest: Manifest) -> None:
        """Null rate of every staging column in each new load (the volume gate's), judged by
        gates.judge_null_rates. Only after a build: it reads what staging just built."""
        subjects = manifest.null_rate_subjects()
        past = self.history.volume_history(subjects)
        queries = queries_for(self.build_settings)  # what staging built, unpublished
        counts = {
            name: load_null_counts(
                queries,
                subject.relation,
                subject.columns,
                gates.new_load_since(past[name], self.options.start_date),
                self.options.end_date,
            )
            for name, subject in subjects.items()
        }
        verdicts = gates.judge_null_rates(
            {name: subject.policy for name, subject in subjects.items()},
            counts,
            self.history.null_rate_history(subjects),
            self.history.acceptances(),
        )
        self.summary.null_rates = verdicts
        failed = [v for v in verdicts if not v.passed]
        self.log.info(
            "null rates: %d of %d columns per load ok", len(verdicts) - len(failed), len(verdicts)
        )
        for verdict in [v for v in verdicts if v.broken][:50]:
            self.log.log(
                logging.WARNING if verdict.passed else logging.ERROR,  # accepted: still said
                verdict.message(),
                extra={
                    "fields": {
                        "event": "null_rate",
                        "subject": verdict.subject,
                        "column": verdict.column,
                        "load_date": verdict.load_date.isoformat(),
                        "rate": verdict.rate,
                        "rules": list(verdict.broken),
                    }
                },
            )
        if failed:
            raise StopRun(
                ExitCode.VOLUME,
                "nulls",
                "anomalous null rates, downstream not built: "
                + "; ".join(v.message() for v in failed[:10]),
            )

    def _build(self, phase: str, selection: list[str]) -> None:
        args = ["build", *selection, *self.state.build]
        if self.options.full_refresh:
            args.append("--full-refresh")
        if self.tests_since is not None:
            # Unit tests prove the SQL, not the data: the same code gives the same verdict
            # every day. They run in CI, in slim CI (--select), on --deep and full refreshes.
            args += ["--exclude-resource-type", "unit_test"]
        self._dbt(phase, args)

    def _build_vars(self) -> dict[str, Any]:
        """The parse's vars, plus the daily test scope. Only builds get `tests_since`: the
        parse must see the same vars every day, or dbt's partial parse would start over."""
        build_vars: dict[str, Any] = dict(self.options.dbt_vars())
        if self.tests_since is not None:
            build_vars["tests_since"] = self.tests_since.isoformat()
        if self.landing_registered:
            build_vars["landing_registered"] = True
        return build_vars

    def _dbt(self, phase: str, args: list[str]) -> None:
        with dbt_progress(phase, enabled=self.settings.log_format != "json") as on_event:
            outcome = invoke(
                self.build_settings,
                args,
                self._build_vars(),
                target_path=self.run_dir / phase,
                quiet=True,
                on_event=partial(_both, on_event, self._dbt_event),
                manifest=self.parsed,
            )
        self._collect_nodes(outcome)
        if not outcome.success:
            failures = [
                f"{n.unique_id} ({n.status}): {(n.message or '').strip()}"
                for n in outcome.failed_nodes
            ]
            detail = (
                "; ".join(failures)
                or outcome.error
                or "dbt reported failure without a failing node"
            )
            raise StopRun(ExitCode.DBT_ERROR, phase, f"dbt {args[0]} failed in {phase}: {detail}")

    def _collect_nodes(self, outcome: DbtOutcome) -> None:
        # The run's one parse is what every invocation ran from (they write no manifest).
        manifest = self.manifest
        if manifest is None:
            raise RuntimeError("a dbt phase ran before the run's parse")
        self.summary.relations.update(
            {uid: rel for uid in manifest.nodes if (rel := manifest.relation(uid))}
        )
        self.summary.parents.update(
            {uid: list(node.parents) for uid, node in manifest.nodes.items()}
        )
        self.summary.tested.update(
            {uid: model for uid in manifest.nodes if (model := manifest.tested_model(uid))}
        )
        # Stored relations only: counting a view runs its query over every row beneath it
        # (0.3 s a run at 70 days of scale 1 for the two finance views), and a view stores
        # no rows of its own to report.
        built = {
            r.unique_id: manifest.relation(r.unique_id)
            for r in outcome.results
            if r.resource_type in BUILT_TYPES
            and r.status == "success"
            and getattr(manifest.nodes.get(r.unique_id), "materialized", None) != "view"
        }
        counting = time.perf_counter()
        sizes = relation_sizes(
            queries_for(self.build_settings), {k: v for k, v in built.items() if v}
        )
        self.summary.timings["row_counts"] = (
            self.summary.timings.get("row_counts", 0.0) + time.perf_counter() - counting
        )
        for result in outcome.results:
            self.summary.nodes.append(
                NodeRecord(
                    unique_id=result.unique_id,
                    name=result.name,
                    resource_type=result.resource_type,
                    layer=manifest.layer(result.unique_id),
                    status=result.status,
                    row_count=sizes.get(result.unique_id),
                    seconds=result.seconds,
                    message=result.message,
                )
            )

    # -- the end ------------------------------------------------------------------------------

    def _finish(
        self,
        code: ExitCode,
        phase: str,
        message: str | None,
        observe: bool = True,
        status: str | None = None,
    ) -> int:
        self.finishing = True
        summary = self.summary
        summary.ended_at = dt.datetime.now(dt.UTC)
        summary.exit_code = int(code)
        summary.status = status or ("success" if code == ExitCode.SUCCESS else code.name.lower())
        summary.phase = phase
        summary.message = message
        reporting = time.perf_counter()
        self.history.record_nodes(summary.run_id, summary.nodes)
        self.history.record_volume(summary.run_id, summary.volume)
        self.history.record_null_rates(summary.run_id, summary.null_rates)
        if message:
            self.log.error(
                message,
                extra={"fields": {"event": "run_failed", "exit_code": int(code), "phase": phase}},
            )
        if observe:
            whole = code == ExitCode.SUCCESS and not summary.partial
            last_success = summary.ended_at if whole else self.history.last_success()
            self._observe(
                "metrics",
                lambda: write_metrics(
                    self.settings.resolve(self.settings.metrics_path), summary, last_success
                ),
            )
            if self.settings.log_format != "json":
                self.console.print(summary_table(summary))
        summary.timings["report"] = time.perf_counter() - reporting
        self.history.finish_run(
            summary.run_id,
            summary.status,
            int(code),
            phase,
            message,
            summary.ended_at.replace(tzinfo=None),
            {name: round(seconds, 3) for name, seconds in summary.timings.items()},
        )
        if self.settings.notify_url and code in NOTIFIED:
            report_and_notify(
                self.settings.notify_url,
                summary,
                self.settings.resolve(self.settings.history_path),
                self.settings.resolve(REPORT_PATH),
                self.settings.resolve(self.settings.target_path),
            )
        self.log.info(
            "run %s finished: %s (exit %d) in %.1fs",
            summary.run_id,
            summary.status,
            int(code),
            summary.seconds,
            extra={
                "fields": {
                    "event": "run_finished",
                    "exit_code": int(code),
                    "seconds": round(summary.seconds, 3),
                }
            },
        )
        return int(code)
