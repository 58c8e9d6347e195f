"""`make bench`: what users pay as the warehouse grows, measured side by side in one run.

Every timed step runs in its own process so its wall time and peak RSS (from wait4) are its
own. Each figure is the median of `--runs` runs (default 3), with min and max beside it;
the one-more-day and overhead figures, whose ratios are goals, take `--incremental-runs`
(default 5) runs each, the two sides of a ratio taking turns.
Results go to bench/results.json and a table in bench/README.md.

    PYTHONPATH=python python -m bench [--scales 0.1,1,3] [--days 5] [--incremental-scale 0.5] ...
    PYTHONPATH=python python -m bench floor MANIFEST DB_PATH   # internal: the no-dbt floor
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import yaml

from pipeline import PROJECT_DIR, generator
from pipeline.history import History
from pipeline.publish import clone_file

BENCH_DIR = PROJECT_DIR / "bench"


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_rss_mb: float


# A forked child starts with its parent's peak RSS (Linux carries the high-water mark across
# fork and exec), and this process holds generated data. So every timed command is started
# by a tiny launcher that imports nothing heavy: the command's peak is then its own.
_LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - started
open(sys.argv[1], "w").write(json.dumps({"seconds": seconds, "rss_kb": usage.ru_maxrss}))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(command: list[str], log: Path, env: dict[str, str] | None = None) -> Sample:
    """Run a command to completion; its own wall time and peak resident memory."""
    report = log.with_suffix(".measure.json")
    with log.open("ab") as sink:
        code = subprocess.call(
            [sys.executable, "-c", _LAUNCHER, str(report), *command],
            stdout=sink,
            stderr=sink,
            cwd=PROJECT_DIR,
            env={**os.environ, **(env or {})},
        )
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}; see {log}")
    measured = json.loads(report.read_text())
    return Sample(measured["seconds"], measured["rss_kb"] / 1024)


def summarize(samples: list[Sample]) -> dict[str, Any]:
    seconds = [s.seconds for s in samples]
    return {
        "median_s": round(statistics.median(seconds), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "runs_s": [round(s, 3) for s in seconds],
        "peak_rss_mb": round(max(s.peak_rss_mb for s in samples), 1),
    }


def copy_tree(source: Path, target: Path) -> None:
    """Copy a folder with its hard links kept, so that a restored warehouse is what runs leave
    (the published file a link of its generation): shutil.copytree makes two files of it, and
    the next publish, replacing the published one, then freed 1.3 GB that no run frees."""
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


class Workspace:
    """A landing zone, warehouse and history in a temp folder, and the CLI pointed at them."""

    def __init__(self, root: Path, target: str = "duckdb", project: Path | None = None) -> None:
        self.root = root
        # Another copy of the project (bench_lookback): its python/ is put first on the path,
        # so `pipeline` runs that copy's dbt project.
        self.env = {"PYTHONPATH": str(project / "python")} if project else None
        self.landing = root / "landing"
        self.config = root / "pipeline.yml"
        self.log = root / "commands.log"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            yaml.safe_dump(
                {
                    "target": target,
                    "landing_root": str(self.landing),
                    "warehouse_path": str(root / "state" / "warehouse.duckdb"),
                    "history_path": str(root / "state" / "history.duckdb"),
                    "lock_path": str(root / "state" / "pipeline.lock"),
                    "target_path": str(root / "state" / "target"),
                    "metrics_path": str(root / "state" / "commerce.prom"),
                    "lineage_path": str(root / "state" / "lineage.jsonl"),
                    "spark_dir": str(root / "state" / "spark"),
                }
            )
        )

    def pipeline(self, *args: str) -> Sample:
        return run_measured(
            [sys.executable, "-m", "pipeline.cli", "run", *args, "--config", str(self.config)],
            self.log,
            self.env,
        )

    def dbt(
        self, *args: str, target_path: Path | None = None, database: Path | None = None
    ) -> Sample:
        env = {
            "DBT_PROFILES_DIR": str(PROJECT_DIR / "profiles"),
            "COMMERCE_LANDING_ROOT": str(self.landing),
            "COMMERCE_DUCKDB_PATH": str(database or self.root / "state" / "warehouse.duckdb"),
        }
        dbt = str(Path(sys.executable).with_name("dbt"))
        target = target_path or self.root / "state" / "target"
        return run_measured([dbt, *args, "--quiet", "--target-path", str(target)], self.log, env)

    def reset_state(self) -> None:
        shutil.rmtree(self.root / "state", ignore_errors=True)

    def save(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)
        copy_tree(self.root / "state", self.root / name / "state")
        copy_tree(self.landing, self.root / name / "landing")

    def restore(self, name: str) -> None:
        """Put back a saved warehouse and landing zone; dbt's parse cache stays, as it does
        between a scheduler's daily runs (the runner keeps it in target/parse)."""
        cache = self.root / "state" / "target" / "parse"
        kept = self.root / "parse-cache"
        shutil.rmtree(kept, ignore_errors=True)
        if cache.is_dir():
            shutil.move(cache, kept)
        for part in ("state", "landing"):
            shutil.rmtree(self.root / part, ignore_errors=True)
            copy_tree(self.root / name / part, self.root / part)
        if kept.is_dir():
            shutil.rmtree(cache, ignore_errors=True)
            shutil.move(kept, cache)
        # The copies above are gigabytes of dirty pages at 70 days (the warehouse and its kept
        # generations); flushed now, they are not written back during the run timed next.
        os.sync()

    def next_day(self) -> None:
        """Put back the saved warehouse and landing zone, then add the next daily load: the
        state every timed one-more-day run starts from."""
        self.restore("before")
        generator.append_day(self.landing)

    def last_run_build_args(self) -> dict[str, Any]:
        """The arguments of the last run's downstream build (its run_results.json): which
        selection and vars the runner built with."""
        run_dir = sorted(
            (self.root / "state" / "target" / "runs").iterdir(), key=lambda p: p.stat().st_mtime
        )[-1]
        args: dict[str, Any] = json.loads(
            (run_dir / "downstream" / "run_results.json").read_text()
        )["args"]
        return args

    def last_run_phases(self) -> dict[str, float]:
        return History(self.root / "state" / "history.duckdb").runs(1)[0].phase_seconds

    def last_run_top_nodes(self, limit: int = 10) -> list[dict[str, Any]]:
        """The slowest nodes of the last run, from the run history (seconds dbt measured)."""
        with duckdb.connect(str(self.root / "state" / "history.duckdb"), read_only=True) as con:
            rows = con.execute(
                "select name, resource_type, seconds from node_runs where run_id = "
                "(select run_id from runs order by started_at desc limit 1) "
                "order by seconds desc limit ?",
                [limit],
            ).fetchall()
            totals = con.execute(
                "select resource_type, count(*), sum(seconds) from node_runs where run_id = "
                "(select run_id from runs order by started_at desc limit 1) group by all "
                "order by 3 desc"
            ).fetchall()
        return [
            {"name": name, "type": kind, "seconds": round(seconds, 3)}
            for name, kind, seconds in rows
        ] + [
            {"name": f"all {count} {kind}s", "type": "total", "seconds": round(seconds, 3)}
            for kind, count, seconds in totals
        ]


def generate(landing: Path, scale: float, days: int, end_date: dt.date) -> int:
    shutil.rmtree(landing, ignore_errors=True)
    return sum(
        generator.generate(landing, seed=42, scale=scale, days=days, end_date=end_date).values()
    )


def yesterday() -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def repeat(
    runs: int, step: Callable[[], Sample], before: Callable[[], None] | None = None
) -> list[Sample]:
    samples = []
    for _ in range(runs):
        if before:
            before()
        samples.append(step())
    return samples


# ------------------------------------------------------------------------------------------------
# The floor: the marts built from dbt's compiled SQL straight in DuckDB, no dbt at all.


def build_floor(manifest_path: Path, db_path: Path) -> None:
    """Replay the compiled models of a full-refresh build in dependency order.

    Seeds are loaded from their CSV files and the snapshot is its first run (every customer's
    current version), so the floor does the same transformation work as dbt, minus dbt. The
    landing views already exist in `db_path`: the project's own macro made them.
    """
    manifest = json.loads(manifest_path.read_text())
    nodes = {
        uid: n
        for uid, n in manifest["nodes"].items()
        if n["resource_type"] in {"model", "seed", "snapshot"}
    }
    con = duckdb.connect(str(db_path))
    for schema in {n["schema"] for n in nodes.values()}:
        con.execute(f"create schema if not exists {schema}")
    done: set[str] = set()

    def build(uid: str) -> None:
        if uid in done or uid not in nodes:
            return
        node = nodes[uid]
        for parent in node.get("depends_on", {}).get("nodes", []):
            build(parent)
        relation = node["relation_name"]
        if node["resource_type"] == "seed":
            types = node["config"].get("column_types") or {}
            columns = ", ".join(f"'{c}': '{t}'" for c, t in types.items())
            path = PROJECT_DIR / node["original_file_path"]
            con.execute(
                f"create or replace table {relation} as select * from read_csv('{path}', header "
                "= true"
                + (
                    f", columns = {{{columns}}}"
                    if columns and len(types) == len(node["columns"])
                    else ""
                )
                + ")"
            )
        elif node["resource_type"] == "snapshot":
            parent = nodes[node["depends_on"]["nodes"][0]]["relation_name"]
            con.execute(
                f"create or replace table {relation} as select *, md5(cast(customer_id as "
                "varchar)) as "
                f"dbt_scd_id, updated_at as dbt_updated_at, updated_at as dbt_valid_from, "
                f"cast(null as timestamp) as dbt_valid_to from {parent}"
            )
        else:
            kind = "view" if node["config"]["materialized"] == "view" else "table"
            con.execute(f"create or replace {kind} {relation} as {node['compiled_code']}")
        done.add(uid)

    for uid in sorted(nodes):
        build(uid)
    con.close()


# ------------------------------------------------------------------------------------------------
# The benchmark sections.


def bench_generator(work: Path, runs: int, days: int) -> dict[str, Any]:
    seconds, rows = [], 0
    for run in range(runs):
        started = time.perf_counter()
        rows = generate(work / f"gen{run}", scale=1.0, days=days, end_date=yesterday())
        seconds.append(time.perf_counter() - started)
        shutil.rmtree(work / f"gen{run}")
    median = statistics.median(seconds)
    return {
        "scale": 1,
        "days": days,
        "rows": rows,
        "rows_per_s": round(rows / median),
        "min_rows_per_s": round(rows / max(seconds)),
        "max_rows_per_s": round(rows / min(seconds)),
        "runs_s": [round(s, 3) for s in seconds],
    }


def bench_full_builds(work: Path, scales: list[float], days: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scale in scales:
        space = Workspace(work / f"full-{scale:g}")
        rows = generate(space.landing, scale, days, yesterday())
        pipeline = repeat(runs, partial(space.pipeline, "--full-refresh"), space.reset_state)
        # Every model's full-refresh SQL (the runner's last phase compiled only its own nodes).
        space.dbt("compile", "--full-refresh", target_path=space.root / "compiled")
        manifest = space.root / "compiled" / "manifest.json"
        floor_db = space.root / "floor" / "warehouse.duckdb"

        def floor(
            space: Workspace = space, manifest: Path = manifest, floor_db: Path = floor_db
        ) -> Sample:
            shutil.rmtree(floor_db.parent, ignore_errors=True)
            floor_db.parent.mkdir(parents=True)
            # The landing views come from the project's own macro, untimed like dbt's hooks.
            space.dbt(
                "run-operation",
                "register_landing_sources",
                target_path=space.root / "floor-target",
                database=floor_db,
            )
            return run_measured(
                [sys.executable, "-m", "bench", "floor", str(manifest), str(floor_db)],
                space.log,
                {"PYTHONPATH": str(PROJECT_DIR / "python")},
            )

        floor_samples = repeat(runs, floor)
        _check_floor_matches(space.root / "state" / "warehouse.duckdb", floor_db)
        publish = bench_publish_copy(space.root / "state" / "warehouse.duckdb", runs)
        out[f"{scale:g}"] = {
            "landing_rows": rows,
            "days": days,
            "pipeline_full_refresh": summarize(pipeline),
            "floor": summarize(floor_samples),
            "publish_copy": publish,
            "ratio": round(
                statistics.median(s.seconds for s in pipeline)
                / statistics.median(s.seconds for s in floor_samples),
                2,
            ),
        }
        shutil.rmtree(space.root)
    return out


def bench_publish_copy(warehouse: Path, runs: int) -> dict[str, Any]:
    """What write-audit-publish adds to a DuckDB run: the copy of the published file a run
    builds in (publish.py; the rename that publishes is a metadata operation)."""
    copy = warehouse.with_name("publish-copy.duckdb")
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        clone_file(warehouse, copy)
        seconds.append(time.perf_counter() - started)
        copy.unlink()
    return {
        "file_mb": round(warehouse.stat().st_size / 2**20, 1),
        "median_s": round(statistics.median(seconds), 3),
        "runs_s": [round(value, 3) for value in seconds],
    }


def _check_floor_matches(dbt_db: Path, floor_db: Path) -> None:
    """The floor must build the same marts, or the ratio compares different work."""
    with (
        duckdb.connect(str(dbt_db), read_only=True) as dbt_con,
        duckdb.connect(str(floor_db), read_only=True) as floor_con,
    ):
        for (mart,) in dbt_con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        ).fetchall():
            query = f"select count(*), sum(hash(t)) from marts.{mart} as t"
            if dbt_con.execute(query).fetchone() != floor_con.execute(query).fetchone():
                raise RuntimeError(f"floor and dbt disagree on marts.{mart}")


def bench_incremental(
    work: Path,
    scale: float,
    histories: list[int],
    runs: int,
    target: str = "duckdb",
    label: str = "inc",
    full_refresh_runs: int | None = None,
) -> dict[str, Any]:
    """One more daily load on top of each history, against a full refresh of the same data.

    Every measured run starts from the same saved warehouse (its parse cache kept, as a
    scheduler's runs keep it) and appends the same next day. The histories take turns, run
    by run (7 days, 70 days, 7 days, ...), so that a slow spell of this shared machine falls
    on both sides of the ratio instead of on whichever history was measured during it.
    """
    spaces: dict[int, Workspace] = {}
    for days in histories:
        space = Workspace(work / f"{label}-{days}d", target=target)
        generate(space.landing, scale, days, yesterday() - dt.timedelta(days=1))
        space.pipeline()  # the warehouse as it stands before today's load
        # Two more runs (nothing new) leave keep_generations (3) published files, as a
        # scheduler's daily runs do: each measured run then deletes the oldest, as theirs do.
        for _ in range(2):
            space.pipeline()
        space.save("before")
        spaces[days] = space

    incremental: dict[int, list[Sample]] = {days: [] for days in histories}
    for _ in range(runs):
        for days, space in spaces.items():
            space.next_day()
            incremental[days].append(space.pipeline())
    out: dict[str, Any] = {}
    for days, space in spaces.items():
        phases = space.last_run_phases()
        top = space.last_run_top_nodes()
        full = repeat(
            full_refresh_runs or runs,
            partial(space.pipeline, "--full-refresh"),
            space.next_day,
        )
        out[f"{days}d"] = {
            "history_days": days,
            "scale": scale,
            "incremental": summarize(incremental[days]),
            "full_refresh": summarize(full),
            "incremental_over_full_refresh": round(
                statistics.median(s.seconds for s in incremental[days])
                / statistics.median(s.seconds for s in full),
                3,
            ),
            "incremental_phases_s": phases,
            "incremental_top_nodes": top,
        }
        if days == histories[0] and target == "duckdb":
            out["_overhead_state"] = space  # reused by the runner-overhead section
        else:
            shutil.rmtree(space.root)
    first, last = f"{histories[0]}d", f"{histories[-1]}d"
    out["ratio_longest_over_shortest"] = round(
        out[last]["incremental"]["median_s"] / out[first]["incremental"]["median_s"], 3
    )
    return out


def project_copy(target: Path, lookback_days: int) -> Path:
    """This project's dbt and Python files in `target`, with another `lookback_days`."""
    target.mkdir(parents=True)
    for part in (
        "dbt_project.yml",
        "models",
        "macros",
        "seeds",
        "snapshots",
        "tests",
        "profiles",
        "python",
    ):
        source = PROJECT_DIR / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / part)
    project = target / "dbt_project.yml"
    text, count = re.subn(
        r"^(\s+lookback_days:) \d+$", rf"\1 {lookback_days}", project.read_text(), flags=re.M
    )
    if count != 1:
        raise RuntimeError(f"expected one lookback_days in {project}, found {count}")
    project.write_text(text)
    return target


def bench_lookback(space: Workspace, work: Path, runs: int, history_days: int) -> dict[str, Any]:
    """What the lookback window costs one more day: the project as it is against a copy with
    `lookback_days: 0`, on the same saved state and the same appended day, taking turns.

    For information, not a goal: the window is what lets late and re-delivered partitions
    land, and a run without it would drop them. The difference is what reading only new or
    changed partitions could save (docs/design.md, "Cost grows with new data")."""
    lookback = int(
        yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())["vars"]["lookback_days"]
    )
    project = project_copy(work / "lookback-0-project", 0)
    bare = Workspace(work / "lookback-0", project=project)
    copy_tree(space.root / "before", bare.root / "before")
    sides = {"window": space, "no_window": bare}

    bare.next_day()
    bare.pipeline()  # unmeasured: the copy's first run parses its project from scratch
    samples: dict[str, list[Sample]] = {name: [] for name in sides}
    phases: dict[str, dict[str, float]] = {}
    for _ in range(runs):
        for name, side in sides.items():
            side.next_day()
            samples[name].append(side.pipeline())
            phases[name] = side.last_run_phases()
    # The runner scopes the day's tests from lookback_days: equal scopes would mean both sides
    # ran the same project, and the difference would measure nothing.
    scopes = {
        name: (side.last_run_build_args().get("vars") or {}).get("tests_since")
        for name, side in sides.items()
    }
    if scopes["window"] is None or scopes["window"] == scopes["no_window"]:
        raise RuntimeError(f"both sides ran with the same lookback: tests_since {scopes}")
    shutil.rmtree(bare.root, ignore_errors=True)
    shutil.rmtree(project, ignore_errors=True)
    window, no_window = (statistics.median(s.seconds for s in samples[n]) for n in sides)
    return {
        "history_days": history_days,
        "lookback_days": lookback,
        "with_window": summarize(samples["window"]),
        "without_window": summarize(samples["no_window"]),
        "window_s": round(window - no_window, 3),
        "last_run_phases_s": phases,
    }


def bench_small_run(work: Path, runs: int) -> dict[str, Any]:
    """The fixed cost: one more day on `make run`'s default data (scale 0.05, 30 days)."""
    result = bench_incremental(work, 0.05, [30], runs, label="small")
    shutil.rmtree(result.pop("_overhead_state").root, ignore_errors=True)
    small: dict[str, Any] = result["30d"]
    return small


def bench_overhead(space: Workspace, runs: int) -> dict[str, Any]:
    """`pipeline run` vs one bare `dbt build` of the same selection on the same state (today's
    load already merged): the same daily test scope and the same exclusions as the runner's
    builds, so the difference is what the runner adds (gates, its invocations, history).
    The bare build's arguments are the ones the runner's last downstream build used."""
    space.pipeline()  # a run whose artifacts say which selection and vars the runner builds
    args = space.last_run_build_args()
    same = ["--exclude-resource-type", "unit_test"] if "unit_test" in str(args) else []
    if args.get("vars"):
        same += ["--vars", json.dumps(args["vars"])]
    pipeline: list[Sample] = []
    bare: list[Sample] = []
    for _ in range(runs):  # taking turns, as the histories do
        pipeline.append(space.pipeline())
        bare.append(space.dbt("build", *same))
    phases = space.last_run_phases()
    ratio = statistics.median(s.seconds for s in pipeline) / statistics.median(
        s.seconds for s in bare
    )
    gate_seconds = phases.get("freshness", 0) + phases.get("volume", 0)
    return {
        "pipeline_run": summarize(pipeline),
        "dbt_build": summarize(bare),
        "ratio": round(ratio, 3),
        "phases_s": phases,
        "gates_s": round(gate_seconds, 3),
        "history_and_observability_s": round(
            phases.get("report", 0) + phases.get("row_counts", 0), 3
        ),
    }


def bench_spark(work: Path, scale: float, histories: list[int], runs: int) -> dict[str, Any]:
    """The same one-more-day measure on spark_local, for information."""
    result = bench_incremental(work, scale, histories, runs, target="spark_local", label="spark")
    result["scale"] = scale
    return result


# ------------------------------------------------------------------------------------------------
# Report


def machine() -> dict[str, Any]:
    memory_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024**2, 1),
        "platform": platform.platform(),
        # Other work on a shared machine inflates every figure: the load beside them says so.
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "versions": {
            pkg: version(pkg)
            for pkg in ("dbt-core", "dbt-duckdb", "duckdb", "dbt-spark", "pyspark")
        },
    }


ENGINE_RATE_RUNS = 3


def engine_rates(work: Path) -> dict[str, int]:
    """DuckDB's speed on this machine today, in rows a second on 2 threads, for the two kinds
    of work a daily run is made of, on the generator's events (7 days at scale 1): a scan and
    aggregate of the landing Parquet, and a dedupe by `event_id` with a window, as staging
    does. The host behind this 2-core machine changes between sessions, and with it every
    figure in seconds: these rates say how fast the one that took a report was. Best of
    `ENGINE_RATE_RUNS` (the report names the count), the engine alone, no dbt."""
    landing = work / "engine-rates"
    generate(landing, 1.0, 7, yesterday())
    events = f"read_parquet('{landing}/events/*/*.parquet')"
    queries = {
        "scan_aggregate": (
            f"select event_type, count(*), count(customer_id), max(event_at) from {events} "
            "group by event_type"
        ),
        "dedup_window": (
            "select count(*) from (select event_id, session_id, customer_id, event_type, "
            f"event_at, page, _loaded_at from {events} qualify row_number() over "
            "(partition by event_id order by _loaded_at desc, event_at desc) = 1)"
        ),
    }
    rates = {}
    with duckdb.connect() as con:
        con.execute("set threads = 2")
        rows = con.execute(f"select count(*) from {events}").fetchone()[0]  # type: ignore[index]
        for name, sql in queries.items():
            best = float("inf")
            for _ in range(ENGINE_RATE_RUNS):
                started = time.perf_counter()
                con.execute(sql).fetchall()
                best = min(best, time.perf_counter() - started)
            rates[name] = round(rows / best)
    shutil.rmtree(landing)
    return rates


def _loads(machine_figures: dict[str, Any], when: str) -> str:
    loads = machine_figures.get(f"load_average_at_{when}")
    return " / ".join(str(load) for load in loads) if loads else "not measured"


def _spread(summary: dict[str, Any]) -> str:
    return (
        f"{summary['median_s']} s ({summary['min_s']}–{summary['max_s']}, "
        f"peak {summary['peak_rss_mb']} MB)"
    )


def _incremental_lines(engine: str, detail: dict[str, Any] | None, goal: bool = True) -> list[str]:
    if not detail:
        return []
    histories = sorted(
        (value for key, value in detail.items() if key.endswith("d") and isinstance(value, dict)),
        key=lambda value: value["history_days"],
    )
    first, last = histories[0], histories[-1]
    lines = [
        f"| {engine}: one more day, {last['history_days']} / {first['history_days']} days of "
        f"history, scale {first['scale']:g} | {detail['ratio_longest_over_shortest']} | "
        + ("≤ 1.2 |" if goal else "information |")
    ]
    for run in histories:
        lines.append(
            f"| ... {run['history_days']} days: one more day vs full refresh | "
            f"{_spread(run['incremental'])} vs {_spread(run['full_refresh'])}: "
            f"{run['incremental_over_full_refresh']} | "
            + ("≤ 0.25 at the longest, about 10 s |" if goal else "information |")
        )
    return lines


def _header_lines(results: dict[str, Any]) -> list[str]:
    """The report's opening: the machine, how figures were taken, and how fast the engine was."""
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {m['date']} on {m['cpus']} cores ({m.get('cpu', 'CPU not recorded')}), "
        f"{m['memory_gib']} GiB, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f"; load average (1, 5, 15 min) {_loads(m, 'start')} at the start, "
        f"{_loads(m, 'end')} at the end.",
        f"Each figure is the median of {results['settings']['runs']} runs (min–max); the "
        "one-more-day and runner-overhead figures of "
        f"{results['settings'].get('incremental_runs', results['settings']['runs'])}, "
        "the two sides of each ratio taking turns run by run. Raw timings: results.json. "
        "Regenerate with `make bench`.",
        "",
    ]
    rates = m.get("engine_rows_per_s")
    if rates:
        lines += [
            "How fast this machine was (DuckDB alone, 2 threads, 7 days of generated events at "
            f"scale 1, best of {ENGINE_RATE_RUNS}): scan and aggregate "
            f"{rates['scan_aggregate'] / 1e6:.0f}M rows/s, dedupe by `event_id` with a window "
            f"{rates['dedup_window'] / 1e6:.1f}M "
            "rows/s. The host behind these 2 cores changes between sessions: seconds from "
            "different runs compare only as far as these rates do.",
            "",
        ]
    return lines


def write_report(results: dict[str, Any]) -> None:
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = _header_lines(results)
    if results.get("sections_note"):  # rows kept from an earlier run, when one ran in parts
        lines += [f"Not every row is from this run: {results['sections_note']}", ""]
    lines += [
        "| measure | value | goal |",
        "| --- | --- | --- |",
    ]
    if "generator_rows_per_s" in results:
        lines.append(
            f"| generator, scale 1 | {results['generator_rows_per_s']:,} rows/s | ≥ 2,000,000 |"
        )
    for scale, ratio in results.get("dbt_over_floor", {}).items():
        detail = results["full_build"][scale]
        lines.append(
            f"| full build scale {scale}: pipeline run --full-refresh / no-dbt floor | {ratio} "
            f"({detail['pipeline_full_refresh']['median_s']} s / {detail['floor']['median_s']} s, "
            f"peak {detail['pipeline_full_refresh']['peak_rss_mb']} MB) | ≤ 1.5 at scale 1 |"
        )
    for scale, detail in results.get("full_build", {}).items():
        if "publish_copy" in detail:
            copy = detail["publish_copy"]
            lines.append(
                f"| write-audit-publish on DuckDB, scale {scale}: copy of the warehouse file "
                f"per run | {copy['median_s']} s for {copy['file_mb']} MB (full build "
                f"{detail['pipeline_full_refresh']['median_s']} s) | information |"
            )
    lines += _incremental_lines("DuckDB", results.get("incremental"))
    lookback = results.get("lookback")
    if lookback:
        lines.append(
            f"| ... {lookback['history_days']} days: the same day without the lookback window "
            f"(`lookback_days` {lookback['lookback_days']} → 0) | "
            f"{_spread(lookback['with_window'])} against {_spread(lookback['without_window'])}: "
            f"the window costs {lookback['window_s']} s | information |"
        )
    small = results.get("small_run")
    if small:
        lines.append(
            f"| fixed cost: one more day on `make run`'s data (scale {small['scale']:g}, "
            f"{small['history_days']} days) | {_spread(small['incremental'])} "
            f"(full refresh {small['full_refresh']['median_s']} s) | as low as it goes |"
        )
    over = results.get("runner_overhead")
    if over:
        lines.append(
            f"| runner overhead: pipeline run / one bare dbt build of the same selection | "
            f"{results['runner_overhead_ratio']} ({over['pipeline_run']['median_s']} s / "
            f"{over['dbt_build']['median_s']} s; gates {over['gates_s']} s, "
            f"history+observability {over['history_and_observability_s']} s) | ≤ 1.05 |"
        )
    lines += _incremental_lines(
        "Spark (spark_local, wall time includes JVM start)", results.get("spark"), goal=False
    )
    if "cluster" in results:
        from bench.cluster import report_lines

        lines += report_lines(results["cluster"])
    for title, detail in (("DuckDB", results.get("incremental")), ("small run", small)):
        runs = (
            [detail]
            if title == "small run"
            else [value for key, value in (detail or {}).items() if key.endswith("d")]
        )
        for run in runs:
            if not run or "incremental_top_nodes" not in run:
                continue
            lines += [
                "",
                f"Slowest nodes of one incremental run, {title}, scale {run['scale']:g}, "
                f"{run['history_days']} days of history (seconds dbt measured; phases: "
                + ", ".join(f"{k} {v}" for k, v in run["incremental_phases_s"].items())
                + "):",
                "",
                "| node | type | seconds |",
                "| --- | --- | --- |",
            ]
            lines += [
                f"| {node['name']} | {node['type']} | {node['seconds']} |"
                for node in run["incremental_top_nodes"]
            ]
    notes = results.get("notes")
    (BENCH_DIR / "README.md").write_text(
        "\n".join(lines) + "\n" + (f"\n{notes}\n" if notes else "")
    )


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--incremental-runs",
        type=int,
        default=5,
        help="one-more-day runs per history, and runs of the overhead figure: they take "
        "turns, and their ratios are the goals, so they get more runs than --runs",
    )
    parser.add_argument("--scales", default="0.1,1,3", help="full-build scale factors")
    parser.add_argument("--days", type=int, default=5, help="days of history for full builds")
    parser.add_argument("--generator-days", type=int, default=10)
    parser.add_argument("--incremental-scale", type=float, default=1.0)
    parser.add_argument(
        "--incremental-days",
        default="7,70",
        help="days of history, comma-separated: one more day is measured on top of each",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the old quick variant: incremental at scale 0.5 with 3 and 30 days",
    )
    parser.add_argument(
        "--full-refresh-runs",
        type=int,
        default=None,
        help="runs of the full refresh each one-more-day figure is compared with (default --runs)",
    )
    parser.add_argument("--spark-scale", type=float, default=0.1)
    parser.add_argument("--spark-days", default="7,70")
    parser.add_argument(
        "--spark-runs", type=int, default=1, help="runs per Spark figure (a JVM run is slow)"
    )
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--cluster-scales", default="0.1,1", help="cluster side by side; '' skips")
    parser.add_argument(
        "--cluster-days", type=int, default=3, help="history of the cluster figures"
    )
    parser.add_argument("--skip-full-builds", action="store_true")
    parser.add_argument("--skip-generator", action="store_true")
    parser.add_argument(
        "--skip-lookback",
        action="store_true",
        help="skip what the lookback window costs (one more day with lookback_days 0)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "floor":
        build_floor(Path(argv[1]), Path(argv[2]))
        return
    args = _arguments(argv)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="commerce-bench-") as tmp:
        work = Path(tmp)
        results: dict[str, Any] = {"machine": machine(), "settings": vars(args)}
        results["machine"]["engine_rows_per_s"] = engine_rates(work)
        if args.quick:
            args.incremental_scale, args.incremental_days = 0.5, "3,30"
        if not args.skip_generator:
            print("generator ...", flush=True)
            results["generator"] = bench_generator(work, args.runs, args.generator_days)
            results["generator_rows_per_s"] = results["generator"]["rows_per_s"]
        if not args.skip_full_builds:
            print("full builds (and the publish copy) ...", flush=True)
            results["full_build"] = bench_full_builds(
                work, [float(s) for s in args.scales.split(",")], args.days, args.runs
            )
            results["dbt_over_floor"] = {
                scale: r["ratio"] for scale, r in results["full_build"].items()
            }
        print("one more day vs history ...", flush=True)
        histories = [int(d) for d in args.incremental_days.split(",")]
        incremental = bench_incremental(
            work,
            args.incremental_scale,
            histories,
            args.incremental_runs,
            full_refresh_runs=args.full_refresh_runs or args.runs,
        )
        overhead_space = incremental.pop("_overhead_state")
        results["incremental"] = incremental
        results["incremental_ratio"] = incremental["ratio_longest_over_shortest"]
        print("runner overhead ...", flush=True)
        results["runner_overhead"] = bench_overhead(overhead_space, args.incremental_runs)
        results["runner_overhead_ratio"] = results["runner_overhead"]["ratio"]
        if not args.skip_lookback:
            print("lookback window ...", flush=True)
            results["lookback"] = bench_lookback(
                overhead_space, work, args.incremental_runs, histories[0]
            )
        shutil.rmtree(overhead_space.root, ignore_errors=True)
        print("small run ...", flush=True)
        results["small_run"] = bench_small_run(work, args.runs)
        if not args.skip_spark:
            print("spark ...", flush=True)
            results["spark"] = bench_spark(
                work,
                args.spark_scale,
                [int(d) for d in args.spark_days.split(",")],
                args.spark_runs,
            )
        if args.cluster_scales:
            from bench.cluster import bench_cluster

            print("cluster (DuckDB, spark_local, Spark standalone + Thrift) ...", flush=True)
            scales = [float(s) for s in args.cluster_scales.split(",")]
            results["cluster"] = bench_cluster(
                work, scales, args.cluster_days, Workspace, generate, summarize
            )
        results["bench_seconds"] = round(time.perf_counter() - started, 1)
        results["machine"]["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    notes_file = BENCH_DIR / "NOTES.md"
    results["notes"] = notes_file.read_text() if notes_file.exists() else ""
    write_report(results)
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
