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
    """Per layer: models built, failed and skipped, rows; tests run, failed and skipped; seconds.

    A failed model counts as failed here, not only a failed test: a run that stopped on a
    contract error in a mart must not read "failed 0".
    """
    by_layer: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for node in summary.nodes:
        if node.resource_type == "exposure":  # a consumer in the graph: nothing ran
            continue
        stats = by_layer[node.layer]
        kind = "models" if node.resource_type in {"model", "seed", "snapshot"} else "tests"
        if node.status in {"error", "fail", "runtime error"}:
            stats[f"{kind} failed"] += 1
        elif node.status == "skipped":
            stats[f"{kind} skipped"] += 1
        else:
            stats[kind] += 1
            if kind == "models":
                stats["rows"] += node.row_count or 0
        stats["seconds"] += node.seconds
    table = Table(
        title=f"run {summary.run_id[:8]} on {summary.target}: {summary.status} "
        f"(exit {summary.exit_code})"
    )
    columns = (
        "models",
        "models failed",
        "models skipped",
        "rows",
        "tests",
        "tests failed",
        "tests skipped",
    )
    table.add_column("layer", justify="left")
    for column in (*columns, "node seconds"):
        table.add_column(column, justify="right")
    for layer in LAYERS:
        if layer in by_layer:
            s = by_layer[layer]
            table.add_row(
                layer, *(f"{s[column]:,.0f}" for column in columns), f"{s['seconds']:.1f}"
            )
    volume_failed = sum(not verdict.passed for verdict in summary.volume)
    fresh_ok = sum(not check.is_error for check in summary.freshness)
    nulls_failed = sum(not verdict.passed for verdict in summary.null_rates)
    table.caption = (
        f"freshness: {fresh_ok}/{len(summary.freshness)} sources ok · "
        f"volume: {len(summary.volume) - volume_failed}/{len(summary.volume)} loads ok · "
        f"null rates: {len(summary.null_rates) - nulls_failed}/{len(summary.null_rates)} ok · "
        + " · ".join(f"{phase} {seconds:.1f}s" for phase, seconds in summary.timings.items())
        + f" · total {summary.seconds:.1f}s"
    )
    return table
