"""What a run tells the outside world: logs, Prometheus metrics and OpenLineage events.

Each output is built from the same run summary, after the fact, so observability never
changes what the run does and costs one pass over a few dozen nodes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run, parent_run
from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.transport import Transport
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings
from pipeline.gates import FreshnessCheck, NullRateVerdict, VolumeVerdict
from pipeline.history import NodeRecord

LOGGER_NAME = "pipeline"
PRODUCER = "https://github.com/commerce-warehouse/pipeline"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, message and any structured `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        return json.dumps(payload, default=str)


def configure_logging(log_format: str, debug: bool = False) -> logging.Logger:
    """Logs go to stderr in both formats; stdout is kept for the run summary.

    Without `debug`, an error is one line; tracebacks are for `--debug`.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    logger.propagate = False
    if log_format == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        # Plain, unwrapped lines: cron mails and log collectors grep them.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    return logger


@dataclass
class RunSummary:
    """Everything observable about one run, filled in as it goes."""

    run_id: str
    target: str
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    exit_code: int | None = None
    status: str = "running"
    phase: str | None = None
    message: str | None = None
    nodes: list[NodeRecord] = field(default_factory=list)
    freshness: list[FreshnessCheck] = field(default_factory=list)
    volume: list[VolumeVerdict] = field(default_factory=list)
    null_rates: list[NullRateVerdict] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # unique_id -> relation name
    relations: dict[str, str] = field(default_factory=dict)  # unique_id -> relation name
    parents: dict[str, list[str]] = field(default_factory=dict)  # unique_id -> parent unique_ids
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    tested: dict[str, str] = field(default_factory=dict)  # test unique_id -> model name
    partial: bool = False  # a --select or gates-only run: it did not rebuild the warehouse

    @property
    def seconds(self) -> float:
        end = self.ended_at or dt.datetime.now(dt.UTC)
        return (end - self.started_at).total_seconds()


MODEL_TYPES = frozenset({"model", "seed", "snapshot"})  # not tests, not hooks (operation)


def _previous_model_samples(path: Path) -> list[tuple[str, dict[str, str], float]]:
    """The per-model series of the metrics file being replaced (none if absent or unreadable)."""
    try:
        families = list(text_string_to_metric_families(path.read_text()))
    except (OSError, ValueError):
        return []
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in families
        if family.name.startswith("commerce_model_")
        for sample in family.samples
    ]


def _model_series(registry: CollectorRegistry, summary: RunSummary, path: Path) -> None:
    """Rows, build seconds and test counts per model, by model name (never a test's hash).

    A partial run rebuilt a part: the other models keep the series of the run that built them,
    read back from the file this one replaces.
    """
    rows = Gauge(
        "commerce_model_rows",
        "Rows in the table after the run that last built it (views are not counted)",
        ["target", "node", "layer"],
        registry=registry,
    )
    seconds = Gauge(
        "commerce_model_duration_seconds",
        "Build time of the model in the run that last built it",
        ["target", "node", "layer"],
        registry=registry,
    )
    tests = Gauge(
        "commerce_model_tests",
        "Data and unit tests of the model in the run that last tested it, by status",
        ["target", "node", "status"],
        registry=registry,
    )
    built = {node.name for node in summary.nodes if node.resource_type in MODEL_TYPES}
    tested = set()
    for node in summary.nodes:
        if node.resource_type in MODEL_TYPES:
            if node.row_count is not None:
                rows.labels(summary.target, node.name, node.layer).set(node.row_count)
            seconds.labels(summary.target, node.name, node.layer).set(node.seconds)
        elif (model := summary.tested.get(node.unique_id)) is not None:
            tested.add(model)
            tests.labels(summary.target, model, node.status).inc()
    for name, labels, value in _previous_model_samples(path):
        if labels.get("target") != summary.target:
            continue
        if name == "commerce_model_tests" and labels["node"] not in tested:
            tests.labels(**labels).set(value)
        elif name in {"commerce_model_rows", "commerce_model_duration_seconds"} and (
            labels["node"] not in built
        ):
            (rows if name == "commerce_model_rows" else seconds).labels(**labels).set(value)


def write_metrics(path: Path, summary: RunSummary, last_success: dt.datetime | None) -> None:
    """Prometheus textfile-collector format, written atomically (node_exporter reads it)."""
    registry = CollectorRegistry()
    labels = {"target": summary.target}
    Gauge(
        "commerce_run_exit_code", "Exit code of the last run", ["target"], registry=registry
    ).labels(**labels).set(summary.exit_code if summary.exit_code is not None else -1)
    Gauge(
        "commerce_run_duration_seconds", "Wall time of the last run", ["target"], registry=registry
    ).labels(**labels).set(summary.seconds)
    Gauge(
        "commerce_run_timestamp_seconds", "When the last run ended", ["target"], registry=registry
    ).labels(**labels).set((summary.ended_at or summary.started_at).timestamp())
    if last_success is not None:
        Gauge(
            "commerce_last_success_timestamp_seconds",
            "When the last successful run of the whole warehouse ended (not --select, not gates)",
            ["target"],
            registry=registry,
        ).labels(**labels).set(last_success.replace(tzinfo=dt.UTC).timestamp())
    _model_series(registry, summary, path)
    age = Gauge(
        "commerce_source_freshness_age_seconds",
        "Age of the newest _loaded_at per source",
        ["target", "source"],
        registry=registry,
    )
    gate = Gauge(
        "commerce_gate_passed",
        "1 when the gate passed for the subject, 0 when it failed",
        ["target", "gate", "subject"],
        registry=registry,
    )
    limit = Gauge(
        "commerce_source_freshness_error_after_seconds",
        "Age past which the source fails the freshness gate (its error_after)",
        ["target", "source"],
        registry=registry,
    )
    for check in summary.freshness:
        if check.age_seconds is not None:
            age.labels(summary.target, check.source).set(check.age_seconds)
        if check.error_after_seconds is not None:
            limit.labels(summary.target, check.source).set(check.error_after_seconds)
        gate.labels(summary.target, "freshness", check.source).set(0 if check.is_error else 1)
    observed = Gauge(
        "commerce_volume_rows",
        "Rows of the newest judged load per subject",
        ["target", "subject"],
        registry=registry,
    )
    for subject in sorted({verdict.subject for verdict in summary.volume}):
        verdicts = [verdict for verdict in summary.volume if verdict.subject == subject]
        observed.labels(summary.target, subject).set(
            max(verdicts, key=lambda v: v.load_date).observed
        )
        gate.labels(summary.target, "volume", subject).set(
            1 if all(v.passed for v in verdicts) else 0
        )
    _null_rate_series(registry, summary, gate)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def _null_rate_series(registry: CollectorRegistry, summary: RunSummary, gate: Gauge) -> None:
    """The newest judged load's null rate per column, and the gate's verdict per model: a
    dashboard sees a column empty out, an alert on commerce_gate_passed sees the stop."""
    rate = Gauge(
        "commerce_column_null_rate",
        "Share of null values per staging column in the newest judged load (0 to 1)",
        ["target", "model", "column"],
        registry=registry,
    )
    newest: dict[tuple[str, str], NullRateVerdict] = {}
    for verdict in summary.null_rates:
        key = (verdict.subject, verdict.column)
        if key not in newest or verdict.load_date > newest[key].load_date:
            newest[key] = verdict
    for (model, column), verdict in sorted(newest.items()):
        rate.labels(summary.target, model, column).set(verdict.rate)
    for model in sorted({verdict.subject for verdict in summary.null_rates}):
        gate.labels(summary.target, "null_rate", model).set(
            1 if all(v.passed for v in summary.null_rates if v.subject == model) else 0
        )


def lineage_transport(settings: Settings) -> Transport:
    if settings.lineage_url:
        return HttpTransport(
            # A lineage server that is down costs a run seconds, not minutes (the run goes on).
            HttpConfig(
                url=settings.lineage_url, timeout=5.0, retry={"total": 2, "backoff_factor": 0.2}
            )
        )
    if str(settings.lineage_path) == "-":
        return ConsoleTransport(ConsoleConfig())
    path = settings.resolve(settings.lineage_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileTransport(FileConfig(log_file_path=str(path), append=True))


def _dataset_name(relation: str) -> str:
    """OpenLineage names datasets `database.schema.table`, without the engine's quoting."""
    return relation.replace('"', "").replace("`", "")


class Lineage:
    """OpenLineage events for the pipeline run and, as its children, each model built."""

    JOB = "pipeline_run"

    def __init__(self, settings: Settings, summary: RunSummary) -> None:
        self.namespace = settings.lineage_namespace
        self.dataset_namespace = f"{settings.target}://commerce"
        self.summary = summary
        self.client = OpenLineageClient(transport=lineage_transport(settings))

    def _event(
        self,
        state: RunState,
        job: str,
        run_id: str,
        inputs: list[str],
        outputs: list[str],
        facets: dict[str, Any] | None = None,
    ) -> RunEvent:
        return RunEvent(
            eventType=state,
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=Run(runId=run_id, facets=facets or {}),
            job=Job(namespace=self.namespace, name=job),
            producer=PRODUCER,
            inputs=[
                InputDataset(namespace=self.dataset_namespace, name=_dataset_name(name))
                for name in inputs
            ],
            outputs=[
                OutputDataset(namespace=self.dataset_namespace, name=_dataset_name(name))
                for name in outputs
            ],
        )

    def start(self) -> None:
        self.client.emit(self._event(RunState.START, self.JOB, self.summary.run_id, [], []))

    def abort(self, run_id: str) -> None:
        """Close the START of a run that died without a word (SIGKILL, power loss)."""
        self.client.emit(self._event(RunState.ABORT, self.JOB, run_id, [], []))

    def finish(self) -> None:
        summary = self.summary
        parent = {
            "parent": parent_run.ParentRunFacet(
                run=parent_run.Run(runId=summary.run_id),
                job=parent_run.Job(namespace=self.namespace, name=self.JOB),
            )
        }
        built: list[str] = []
        for node in summary.nodes:
            if (
                node.resource_type not in {"model", "snapshot", "seed"}
                or node.unique_id not in summary.relations
            ):
                continue
            inputs = [
                summary.relations.get(p) or summary.sources.get(p)
                for p in summary.parents.get(node.unique_id, [])
            ]
            output = summary.relations[node.unique_id]
            state = RunState.COMPLETE if node.status == "success" else RunState.FAIL
            facets: dict[str, Any] = dict(parent)
            if state is RunState.FAIL and node.message:
                facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                    message=node.message, programmingLanguage="sql"
                )
            self.client.emit(
                self._event(
                    state,
                    f"{self.JOB}.{node.name}",
                    str(uuid.uuid4()),
                    [name for name in inputs if name],
                    [output],
                    facets,
                )
            )
            if state is RunState.COMPLETE:
                built.append(output)
        final = (
            RunState.ABORT
            if summary.status == "cancelled"
            else RunState.COMPLETE
            if summary.exit_code == 0
            else RunState.FAIL
        )
        facets = {}
        if final is RunState.FAIL and summary.message:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=summary.message, programmingLanguage="python"
            )
        self.client.emit(
            self._event(
                final,
                self.JOB,
                summary.run_id,
                sorted(summary.sources.values()),
                sorted(built),
                facets,
            )
        )
