"""`pipeline run`: dbt in layers, with a gate between them, and an exit code a scheduler acts on.

    lock -> freshness gate -> build seeds + staging -> volume gate -> build the rest

A gate that fails stops the run before the next layer, so marts are never built from data
that failed a gate. Every run, however it ends, is recorded in the history, the metrics file
and the lineage log, and ends with a summary.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline import gates
from pipeline.config import Settings
from pipeline.dbt import DbtOutcome, invoke, read_json_artifact
from pipeline.history import History, NodeRecord, RunRecord
from pipeline.lock import LockBusy, RunLock
from pipeline.observability import Lineage, RunSummary, write_metrics
from pipeline.warehouse import load_volumes, queries_for, relation_sizes

STAGING_SELECTOR = "path:seeds path:models/staging"
GATES_TARGET = "gates"


class ExitCode(IntEnum):
    """DESIGN.md's contract with schedulers."""

    SUCCESS = 0
    DBT_ERROR = 1
    USAGE = 2
    STALE = 3
    VOLUME = 4
    LOCKED = 5


class StopRun(Exception):
    """Ends the run early with an exit code and a message for stderr and the history."""

    def __init__(self, code: ExitCode, phase: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.phase = phase
        self.message = message


@dataclass(frozen=True)
class RunOptions:
    select: tuple[str, ...] = ()
    full_refresh: bool = False
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    retry: bool = False
    build: bool = True  # False for `pipeline gates`

    def dbt_vars(self) -> dict[str, str]:
        if self.start_date is None or self.end_date is None:
            return {}
        return {"backfill_start": self.start_date.isoformat(), "backfill_end": self.end_date.isoformat()}

    def describe(self) -> str:
        parts = ["run" if self.build else "gates"]
        parts += [f"--select {s}" for s in self.select]
        if self.full_refresh:
            parts.append("--full-refresh")
        if self.start_date:
            parts.append(f"--start-date {self.start_date} --end-date {self.end_date}")
        if self.retry:
            parts.append("--retry")
        return " ".join(parts)


def intersect(phase: str, select: tuple[str, ...]) -> list[str]:
    """dbt selector for `phase` ∩ (union of user selectors): dbt's comma is intersection."""
    if not select:
        return [phase]
    return [f"{p},{s}" for p in phase.split() for s in " ".join(select).split()]


@dataclass
class Manifest:
    """The parts of dbt's manifest.json the runner needs."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings, target_subdir: str | None = None) -> "Manifest":
        raw = read_json_artifact(settings, "manifest.json", target_subdir)
        return cls(nodes=raw.get("nodes", {}), sources=raw.get("sources", {}))

    def layer(self, unique_id: str) -> str:
        node = self.nodes.get(unique_id, {})
        kind = node.get("resource_type", unique_id.split(".")[0])
        if kind in {"seed", "snapshot"}:
            return kind
        if kind == "model":
            fqn = node.get("fqn", [])
            return fqn[1] if len(fqn) > 2 else "models"
        attached = node.get("attached_node") or next(
            (p for p in node.get("depends_on", {}).get("nodes", []) if p in self.nodes), None)
        if kind == "unit_test":
            attached = next(iter(node.get("depends_on", {}).get("nodes", [])), attached)
        return self.layer(attached) if attached and attached != unique_id else "tests"

    def relation(self, unique_id: str) -> str | None:
        node = self.nodes.get(unique_id) or self.sources.get(unique_id) or {}
        if node.get("config", {}).get("materialized") == "ephemeral":
            return None
        return node.get("relation_name")

    def staging_volume_subjects(self) -> dict[str, tuple[str, gates.VolumePolicy]]:
        """Staging models that read a source: subject name -> (source relation, policy)."""
        subjects = {}
        for unique_id, node in self.nodes.items():
            if node.get("resource_type") != "model" or self.layer(unique_id) != "staging":
                continue
            source_ids = [p for p in node.get("depends_on", {}).get("nodes", []) if p.startswith("source.")]
            if len(source_ids) != 1:
                continue
            relation = self.sources[source_ids[0]]["relation_name"]
            meta = node.get("config", {}).get("meta") or node.get("meta") or {}
            subjects[node["name"]] = (relation, gates.VolumePolicy.from_meta(node["name"], meta))
        return subjects


class Runner:
    def __init__(self, settings: Settings, options: RunOptions, logger: logging.Logger,
                 console: Console | None = None) -> None:
        self.settings = settings
        self.options = options
        self.log = logger
        self.console = console or Console()
        self.history = History(settings.resolve(settings.history_path))
        self.summary = RunSummary(run_id=str(uuid.uuid4()), target=settings.target,
                                  started_at=dt.datetime.now(dt.timezone.utc))
        self.recent_runs: list[RunRecord] = []

    # -- entry --------------------------------------------------------------------------------

    def execute(self) -> int:
        """Run under the lock; a busy lock is itself a recorded run with exit code 5."""
        started = self.summary.started_at.replace(tzinfo=None)
        self.recent_runs = self.history.runs(20)
        self.history.start_run(self.summary.run_id, self.settings.target, self.options.describe(), started)
        try:
            with RunLock(self.settings.resolve(self.settings.lock_path), self.summary.run_id) as lock:
                if lock.stale_holder:
                    self.log.warning("took over a stale lock left by %s", lock.stale_holder,
                                     extra={"fields": {"event": "stale_lock", "holder": lock.stale_holder}})
                return self._execute_locked()
        except LockBusy as busy:
            return self._finish(ExitCode.LOCKED, "lock", str(busy), observe=False)

    def _execute_locked(self) -> int:
        lineage = Lineage(self.settings, self.summary)
        lineage.start()
        self.log.info("run %s started: %s on %s", self.summary.run_id, self.options.describe(), self.settings.target,
                      extra={"fields": {"event": "run_started", "run_id": self.summary.run_id}})
        try:
            self._pipeline()
            code = self._finish(ExitCode.SUCCESS, "done", None)
        except StopRun as stop:
            code = self._finish(stop.code, stop.phase, stop.message)
        except Exception as error:  # a crash must still be recorded and reported as exit 1
            self.log.exception("run crashed")
            code = self._finish(ExitCode.DBT_ERROR, self.summary.phase or "runner", f"{type(error).__name__}: {error}")
        lineage.finish()
        return code

    # -- phases -------------------------------------------------------------------------------

    def _pipeline(self) -> None:
        resume = self._phase_to_resume()
        self._timed("freshness", self._freshness_gate)
        if self.options.build and resume != "downstream":
            if resume == "staging":
                self._timed("staging", lambda: self._dbt("staging", ["retry"]))
            else:
                # cautious: a test that also reads a downstream model waits for the downstream phase
                staging = ["--select", *intersect(STAGING_SELECTOR, self.options.select),
                           "--indirect-selection", "cautious"]
                self._timed("staging", lambda: self._build("staging", staging))
        self._timed("volume", self._volume_gate)
        if self.options.build:
            if resume == "downstream":
                self._timed("downstream", lambda: self._dbt("downstream", ["retry"]))
            else:
                selected = ["--select", *self.options.select] if self.options.select else []
                downstream = [*selected, "--exclude", *STAGING_SELECTOR.split()]
                self._timed("downstream", lambda: self._build("downstream", downstream))

    def _phase_to_resume(self) -> str | None:
        """With --retry: the dbt phase the last attempted run failed in, if it failed in one.

        A run refused by the lock attempted nothing and is skipped; a run that stopped at a
        gate or succeeded has nothing for `dbt retry` to resume, so a normal run follows.
        """
        if not self.options.retry:
            return None
        attempted = next((run for run in self.recent_runs if run.status != "locked"), None)
        if attempted is None or attempted.status == "success" or attempted.phase not in {"staging", "downstream"}:
            return None
        return attempted.phase

    def _timed(self, phase: str, step: Callable[[], None]) -> None:
        self.summary.phase = phase
        started = time.perf_counter()
        try:
            step()
        finally:
            self.summary.timings[phase] = self.summary.timings.get(phase, 0.0) + time.perf_counter() - started

    def _freshness_gate(self) -> None:
        outcome = invoke(self.settings, ["source", "freshness"], target_subdir=GATES_TARGET, quiet=True)
        checks = gates.freshness_checks(read_json_artifact(self.settings, "sources.json", GATES_TARGET))
        self.summary.freshness = checks
        self.history.record_freshness(self.summary.run_id, checks)
        if not checks:
            raise StopRun(ExitCode.DBT_ERROR, "freshness", f"dbt source freshness failed: {outcome.error}")
        for check in checks:
            level = logging.ERROR if check.is_error else logging.WARNING if check.status == "warn" else logging.INFO
            self.log.log(level, check.message(), extra={"fields": {
                "event": "freshness", "source": check.source, "status": check.status, "age_s": check.age_seconds}})
        broken = [c for c in checks if c.status == "runtime error"]
        if broken:
            raise StopRun(ExitCode.DBT_ERROR, "freshness", "; ".join(c.message() for c in broken))
        stale = [c for c in checks if c.is_error]
        if stale:
            raise StopRun(ExitCode.STALE, "freshness",
                          "stale source, nothing was built: " + "; ".join(c.message() for c in stale))

    def _volume_gate(self) -> None:
        manifest = Manifest.load(self.settings, GATES_TARGET)  # parsed by the freshness step
        subjects = manifest.staging_volume_subjects()
        self.summary.sources.update({sid: s["relation_name"] for sid, s in manifest.sources.items()})
        past = self.history.volume_history(subjects)
        start, end = self.options.start_date, self.options.end_date
        # New loads: those after the newest load a successful run has judged, or a backfill window.
        since = {name: (start - dt.timedelta(days=1) if start else (past[name][0][0] if past[name] else None))
                 for name in subjects}
        volumes = load_volumes(queries_for(self.settings), {name: rel for name, (rel, _) in subjects.items()},
                               since, end)
        # Every entity lands a batch each load: one that brought no rows on a day others did
        # (an empty file, a missing folder) is judged as 0 rows instead of going unseen.
        new_dates = sorted({day for by_date in volumes.values() for day in by_date})
        verdicts = []
        for name, (_, policy) in sorted(subjects.items()):
            for load_date in new_dates:
                if since[name] is not None and load_date <= since[name]:
                    continue
                earlier = [rows for day, rows in past[name] if day < load_date][: policy.window]
                observed = volumes.get(name, {}).get(load_date, 0)
                verdicts.append(gates.check_volume(name, load_date, observed, earlier, policy))
        self.summary.volume = verdicts
        failed = [v for v in verdicts if not v.passed]
        for verdict in verdicts if len(verdicts) <= 60 else failed:
            self.log.log(logging.INFO if verdict.passed else logging.ERROR, verdict.message(), extra={"fields": {
                "event": "volume", "subject": verdict.subject, "load_date": verdict.load_date.isoformat(),
                "observed": verdict.observed, "low": verdict.low, "high": verdict.high, "passed": verdict.passed}})
        if failed:
            raise StopRun(ExitCode.VOLUME, "volume",
                          "anomalous volume, downstream not built: " + "; ".join(v.message() for v in failed))

    def _build(self, phase: str, selection: list[str]) -> None:
        args = ["build", *selection]
        if self.options.full_refresh:
            args.append("--full-refresh")
        self._dbt(phase, args)

    def _dbt(self, phase: str, args: list[str]) -> None:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True,
                      disable=self.settings.log_format == "json") as progress:
            task = progress.add_task(f"{phase}: starting dbt", total=None)
            finished = [0]

            def on_event(event: Any) -> None:
                if event.info.name == "NodeFinished":
                    finished[0] += 1
                    node = event.data.node_info
                    progress.update(task, description=f"{phase}: {finished[0]} nodes done, last {node.node_name} "
                                                      f"({node.node_status})")

            outcome = invoke(self.settings, args, self.options.dbt_vars(), quiet=True, on_event=on_event)
        self._collect_nodes(outcome)
        if not outcome.success:
            failures = [f"{n.unique_id} ({n.status}): {(n.message or '').strip()}" for n in outcome.failed_nodes]
            detail = "; ".join(failures) or outcome.error or "dbt reported failure without a failing node"
            raise StopRun(ExitCode.DBT_ERROR, phase, f"dbt {args[0]} failed in {phase}: {detail}")

    def _collect_nodes(self, outcome: DbtOutcome) -> None:
        manifest = Manifest.load(self.settings)
        self.summary.relations.update({uid: rel for uid in manifest.nodes if (rel := manifest.relation(uid))})
        self.summary.parents.update({uid: n.get("depends_on", {}).get("nodes", []) for uid, n in manifest.nodes.items()})
        built = {r.unique_id: manifest.relation(r.unique_id) for r in outcome.results
                 if r.resource_type in {"model", "seed", "snapshot"} and r.status == "success"}
        counting = time.perf_counter()
        sizes = relation_sizes(queries_for(self.settings), {k: v for k, v in built.items() if v})
        self.summary.timings["row_counts"] = self.summary.timings.get("row_counts", 0.0) + time.perf_counter() - counting
        for result in outcome.results:
            self.summary.nodes.append(NodeRecord(
                unique_id=result.unique_id, name=result.name, resource_type=result.resource_type,
                layer=manifest.layer(result.unique_id), status=result.status,
                row_count=sizes.get(result.unique_id), seconds=result.seconds, message=result.message))

    # -- the end ------------------------------------------------------------------------------

    def _finish(self, code: ExitCode, phase: str, message: str | None, observe: bool = True) -> int:
        summary = self.summary
        summary.ended_at = dt.datetime.now(dt.timezone.utc)
        summary.exit_code = int(code)
        summary.status = "success" if code == ExitCode.SUCCESS else code.name.lower()
        summary.phase = phase
        summary.message = message
        reporting = time.perf_counter()
        self.history.record_nodes(summary.run_id, summary.nodes)
        self.history.record_volume(summary.run_id, summary.volume)
        if message:
            self.log.error(message, extra={"fields": {"event": "run_failed", "exit_code": int(code), "phase": phase}})
        if observe:
            last_success = summary.ended_at if code == ExitCode.SUCCESS else self.history.last_success()
            write_metrics(self.settings.resolve(self.settings.metrics_path), summary, last_success)
            self._print_summary()
        summary.timings["report"] = time.perf_counter() - reporting
        self.history.finish_run(summary.run_id, summary.status, int(code), phase, message,
                                summary.ended_at.replace(tzinfo=None),
                                {name: round(seconds, 3) for name, seconds in summary.timings.items()})
        self.log.info("run %s finished: %s (exit %d) in %.1fs", summary.run_id, summary.status, int(code),
                      summary.seconds, extra={"fields": {"event": "run_finished", "exit_code": int(code),
                                                         "seconds": round(summary.seconds, 3)}})
        return int(code)

    def _print_summary(self) -> None:
        summary = self.summary
        if self.settings.log_format == "json":
            return
        by_layer: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for node in summary.nodes:
            stats = by_layer[node.layer]
            if node.resource_type in {"model", "seed", "snapshot"}:
                stats["models"] += 1
                stats["rows"] += node.row_count or 0
            else:
                stats["tests"] += 1
                stats["failed"] += node.status in {"fail", "error"}
            stats["seconds"] += node.seconds
        table = Table(title=f"run {summary.run_id[:8]} on {summary.target}: {summary.status} (exit {summary.exit_code})")
        for column in ("layer", "models", "rows", "tests", "failed", "node seconds"):
            table.add_column(column, justify="left" if column == "layer" else "right")
        for layer in ("seed", "staging", "intermediate", "marts", "snapshot", "tests"):
            if layer in by_layer:
                s = by_layer[layer]
                table.add_row(layer, f"{s['models']:.0f}", f"{s['rows']:,.0f}", f"{s['tests']:.0f}",
                              f"{s['failed']:.0f}", f"{s['seconds']:.1f}")
        fresh = [c for c in summary.freshness]
        volume_failed = sum(not v.passed for v in summary.volume)
        table.caption = (f"freshness: {sum(not c.is_error for c in fresh)}/{len(fresh)} sources ok · "
                         f"volume: {len(summary.volume) - volume_failed}/{len(summary.volume)} loads ok · "
                         + " · ".join(f"{phase} {seconds:.1f}s" for phase, seconds in summary.timings.items())
                         + f" · total {summary.seconds:.1f}s")
        self.console.print(table)
