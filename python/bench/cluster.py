"""`make bench`: the same runner on DuckDB, spark_local and a one-machine Spark cluster.

Kept apart from bench/__main__.py (which owns the other sections) so the cluster figures are
one call and two report lines there. For each scale: a full build (`pipeline run
--full-refresh` of a few daily loads) and one more day (`pipeline run` after the next load),
on each engine, side by side. The cluster is started once (pipeline.cluster) and stopped
however the section ends; its Thrift server is handed to the timed commands through the
COMMERCE_SPARK_* environment, as in production.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import generator
from pipeline.cluster import LocalCluster

ENGINES = ("duckdb", "spark_local", "spark")


def bench_cluster(
    work: Path,
    scales: list[float],
    days: int,
    workspace: Callable[[Path, str], Any],
    generate: Callable[[Path, float, int, dt.date], int],
    summarize: Callable[[list[Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Seconds of a full build and of one more day per scale and engine (one run each: a
    cluster build at scale 1 takes minutes on 2 cores)."""
    out: dict[str, Any] = {}
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    with LocalCluster(work / "cluster") as state:
        saved = {key: os.environ.get(key) for key in state.env}
        os.environ.update(state.env)
        try:
            for scale in scales:
                figures: dict[str, Any] = {}
                for engine in ENGINES:
                    space = workspace(work / f"cluster-{scale}-{engine}", engine)
                    rows = generate(space.landing, scale, days, end)
                    full = space.pipeline("--full-refresh")
                    generator.append_day(space.landing)
                    day = space.pipeline()
                    figures[engine] = {
                        "landing_rows": rows,
                        "full_build": summarize([full]),
                        "one_more_day": summarize([day]),
                    }
                out[str(scale)] = {"days": days, **figures}
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return out


def report_lines(results: dict[str, Any]) -> list[str]:
    """Rows of bench/README.md's table: the three engines side by side per scale."""
    lines = []
    for scale, figures in results.items():
        for measure, label in (("full_build", "full build"), ("one_more_day", "one more day")):
            side = " / ".join(
                f"{figures[engine][measure]['median_s']} s"
                for engine in ENGINES
                if engine in figures
            )
            lines.append(
                f"| {label}, scale {scale} ({figures['days']} days): DuckDB / spark_local / "
                f"cluster (2 Workers, Thrift) | {side} | information |"
            )
    return lines
