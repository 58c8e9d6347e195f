"""What a person sees while a run works and when it ends: a progress line and a summary table.

Kept apart from the runner so orchestration reads as phases, and so the console is the only
thing that knows about rich.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.observability import RunSummary

LAYERS = ("seed", "staging", "intermediate", "marts", "snapshot", "tests")


@contextmanager
def dbt_progress(phase: str, enabled: bool) -> Iterator[Callable[[Any], None]]:
    """A transient spinner on stderr; yields the dbt event callback that advances it."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    ) as progress:
        task = progress.add_task(f"{phase}: starting dbt", total=None)
        finished = 0

        def on_event(event: Any) -> None:
            nonlocal finished
            if event.info.name == "NodeFinished":
                finished += 1
                node = event.data.node_info
                progress.update(
                    task,
                    description=f"{phase}: {finished} nodes done, last "
                    f"{node.node_name} ({node.node_status})",
                )

        yield on_event


def summary_table(summary: RunSummary) -> Table:
    """Per layer: models and rows built, tests run and failed, node seconds; gates below."""
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
    table = Table(
        title=f"run {summary.run_id[:8]} on {summary.target}: {summary.status} "
        f"(exit {summary.exit_code})"
    )
    for column in ("layer", "models", "rows", "tests", "failed", "node seconds"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for layer in LAYERS:
        if layer in by_layer:
            s = by_layer[layer]
            table.add_row(
                layer,
                f"{s['models']:.0f}",
                f"{s['rows']:,.0f}",
                f"{s['tests']:.0f}",
                f"{s['failed']:.0f}",
                f"{s['seconds']:.1f}",
            )
    volume_failed = sum(not verdict.passed for verdict in summary.volume)
    table.caption = (
        "freshness: "
        f"{sum(not check.is_error for check in summary.freshness)}/{len(summary.freshness)} "
        f"sources ok · volume: {len(summary.volume) - volume_failed}/{len(summary.volume)} loads "
        "ok · "
        + " · ".join(f"{phase} {seconds:.1f}s" for phase, seconds in summary.timings.items())
        + f" · total {summary.seconds:.1f}s"
    )
    return table
