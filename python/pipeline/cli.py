"""`pipeline`: the command a person or a scheduler runs. Thin glue over the other modules."""

from __future__ import annotations

import datetime as dt
import gc
import getpass
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import REPORT_PATH, ConfigError, Settings, load_settings
from pipeline.exits import ExitCode
from pipeline.history import History, HistoryError, utc_now
from pipeline.lease import run_lock
from pipeline.lock import LockBusy
from pipeline.observability import configure_logging
from pipeline.publish import PublishError, roll_back
from pipeline.runner import Runner, RunOptions

# Container allocations between two young-generation collections (CPython's default: 700).
GC_FIRST_GENERATION = 5000

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
# Errors are never wrapped: a path broken over two lines cannot be pasted, and cron mails and
# log collectors grep the one line (the terminal still folds it for the eye).
err = Console(stderr=True, soft_wrap=True)
out = Console()

DebugOption = Annotated[
    bool, typer.Option("--debug", help="Tracebacks with errors (one line each without).")
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Settings file (default: pipeline.yml).")
]
LandingOption = Annotated[Path | None, typer.Option("--landing-root", help="Landing zone folder.")]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as error:
        err.print(f"[red]configuration error:[/red] {error}")
        raise typer.Exit(ExitCode.USAGE) from None


def _yesterday() -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


@app.command()
def generate(
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same bytes.")
    ] = 42,
    scale: Annotated[
        float, typer.Option(help="Daily volume; 1 = about 30,000 orders a day.")
    ] = 0.05,
    days: Annotated[int, typer.Option(min=1, help="Days of history.")] = 30,
    end_date: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last load date (default: yesterday, UTC)."),
    ] = None,
    append_day: Annotated[
        bool,
        typer.Option("--append-day", help="Add the next daily load to an existing landing zone."),
    ] = False,
    landing_root: LandingOption = None,
    config: ConfigOption = None,
) -> None:
    """Write a deterministic landing zone of daily CDC loads (Parquet, partitioned by load date)."""
    from pipeline import generator  # numpy and pyarrow: every other command starts faster

    settings = _settings(config, landing_root=landing_root)
    root = settings.resolve(settings.landing_root)
    started = dt.datetime.now()
    try:
        if append_day:
            load_date, rows = generator.append_day(root)
            label = f"appended load {load_date.isoformat()}"
        else:
            last = end_date.date() if end_date else _yesterday()
            rows = generator.generate(root, seed=seed, scale=scale, days=days, end_date=last)
            label = f"{days} daily loads ending {last.isoformat()}"
    except (ValueError, FileNotFoundError) as error:
        err.print(f"[red]generate failed:[/red] {error}")
        raise typer.Exit(ExitCode.USAGE) from None
    seconds = (dt.datetime.now() - started).total_seconds()
    total = sum(rows.values())
    out.print(
        f"{label} in {root}: {total:,} rows in {seconds:.2f}s ({total / max(seconds, 1e-9):,.0f} "
        "rows/s)"
    )
    out.print(", ".join(f"{entity} {count:,}" for entity, count in rows.items()))


DateOption = Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"])]


def _run_options(
    select: list[str] | None,
    full_refresh: bool,
    start_date: dt.datetime | None,
    end_date: dt.datetime | None,
    retry: bool,
    build: bool,
    deep: bool = False,
) -> RunOptions:
    if (start_date is None) != (end_date is None):
        err.print("[red]usage error:[/red] --start-date and --end-date go together")
        raise typer.Exit(ExitCode.USAGE)
    if start_date and end_date and start_date > end_date:
        err.print(
            f"[red]usage error:[/red] --start-date {start_date.date()} is after --end-date "
            f"{end_date.date()}"
        )
        raise typer.Exit(ExitCode.USAGE)
    if retry and (full_refresh or start_date):
        err.print(
            "[red]usage error:[/red] --retry resumes the last run as it was; drop "
            "--full-refresh/--start-date"
        )
        raise typer.Exit(ExitCode.USAGE)
    return RunOptions(
        select=tuple(select or ()),
        full_refresh=full_refresh,
        start_date=start_date.date() if start_date else None,
        end_date=end_date.date() if end_date else None,
        retry=retry,
        build=build,
        deep=deep,
    )


@app.command()
def run(
    target: Annotated[
        str | None, typer.Option(help="dbt target: duckdb (default), spark_local or spark.")
    ] = None,
    select: Annotated[
        list[str] | None, typer.Option("--select", "-s", help="dbt selector; repeatable.")
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild incremental models from scratch.")
    ] = False,
    start_date: DateOption = None,
    end_date: DateOption = None,
    retry: Annotated[
        bool,
        typer.Option(
            "--retry", help="Resume the last run's failed and skipped nodes (gates still apply)."
        ),
    ] = False,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Run every data test over whole tables (a daily run tests what it wrote; "
            "README: when to use which).",
        ),
    ] = False,
    log_format: Annotated[str | None, typer.Option("--log-format", help="text or json.")] = None,
    debug: DebugOption = False,
    config: ConfigOption = None,
) -> None:
    """Contract and freshness gates, staging, volume and null-rate gates, then intermediate
    and marts with their tests.

    Exit codes: 0 ok, 1 dbt error, 2 usage, 3 stale source, 4 landing data judged bad
    (contract, volume or null rate), 5 locked.
    --start-date/--end-date reprocess exactly the loads in that window (a backfill).
    """
    settings = _settings(config, target=target, log_format=log_format)
    options = _run_options(select, full_refresh, start_date, end_date, retry, build=True, deep=deep)
    raise typer.Exit(_execute(settings, options, debug))


def _execute(settings: Settings, options: RunOptions, debug: bool) -> int:
    """One run through the runner; a history it cannot open is named in one line (exit 2)."""
    try:
        runner = Runner(settings, options, configure_logging(settings.log_format, debug), out)
    except HistoryError as error:
        err.print(f"[red]history error:[/red] {error}", highlight=False)
        return ExitCode.USAGE
    return runner.execute()


def _history(settings: Settings) -> History:
    try:
        return History(settings.resolve(settings.history_path))
    except HistoryError as error:
        err.print(f"[red]history error:[/red] {error}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None


@app.command()
def gates(
    target: Annotated[str | None, typer.Option(help="dbt target.")] = None,
    log_format: Annotated[str | None, typer.Option("--log-format", help="text or json.")] = None,
    debug: DebugOption = False,
    config: ConfigOption = None,
) -> None:
    """Run the contract, freshness and volume gates on what has landed, building nothing.

    The null-rate gate is not among them: it measures the staging models a run builds.
    """
    settings = _settings(config, target=target, log_format=log_format)
    options = _run_options(None, False, None, None, False, build=False)
    raise typer.Exit(_execute(settings, options, debug))


@app.command()
def history(
    last: Annotated[int, typer.Option("--last", min=1, help="How many runs.")] = 10,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Rebuild a damaged history file from its journal.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Show past runs, newest first (or rebuild the history from its journal)."""
    settings = _settings(config)
    if rebuild:
        path = settings.resolve(settings.history_path)
        try:
            replayed = History.rebuild(path)
        except FileNotFoundError as error:
            err.print(f"[red]history error:[/red] {error}", highlight=False)
            raise typer.Exit(ExitCode.USAGE) from None
        out.print(f"rebuilt {path} from {replayed:,} journal entries")
        return
    table = Table(title=f"last {last} runs ({settings.resolve(settings.history_path)})")
    for column in (
        "started (UTC)",
        "run",
        "target",
        "arguments",
        "status",
        "exit",
        "seconds",
        "phase",
        "published",
        "message",
    ):
        table.add_column(column, overflow="fold")
    runs = _history(settings)
    published = runs.published_by()
    for record in runs.runs(last):
        seconds = (
            ""
            if record.ended_at is None
            else f"{(record.ended_at - record.started_at).total_seconds():.1f}"
        )
        table.add_row(
            record.started_at.isoformat(sep=" ", timespec="seconds"),
            record.run_id[:8],
            record.target,
            record.arguments,
            record.status,
            "" if record.exit_code is None else str(record.exit_code),
            seconds,
            record.phase or "",
            published.get(record.run_id, ""),
            (record.message or "")[:300],
        )
    out.print(table)


@app.command()
def accept(
    entity: Annotated[
        str, typer.Option(help="Landing entity (orders) or staging model (stg_landing__orders).")
    ],
    load_date: Annotated[
        dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="The load to accept.")
    ],
    reason: Annotated[str, typer.Option(help="Why this load is real (recorded in the history).")],
    by: Annotated[str | None, typer.Option(help="Who accepts (default: the login name).")] = None,
    config: ConfigOption = None,
) -> None:
    """Accept an anomalous load the volume or null-rate gate stopped: the next run passes it
    (both gates, for that model's load) and learns from it.

    Who accepted which load and why goes into the history, for the next person to read.
    """
    settings = _settings(config)
    if not reason.strip():
        err.print("[red]usage error:[/red] --reason must say why the load is real")
        raise typer.Exit(ExitCode.USAGE)
    subject = entity if entity.startswith("stg_") else f"stg_landing__{entity}"
    who = by or getpass.getuser()
    _history(settings).accept(subject, load_date.date(), reason.strip(), who)
    out.print(
        f"accepted {subject} load {load_date.date().isoformat()} ({who}: {reason.strip()}); "
        "the next run passes it"
    )


@app.command()
def rollback(
    to: Annotated[
        str, typer.Option("--to", help="Run id (or its first characters) whose state to restore.")
    ],
    config: ConfigOption = None,
) -> None:
    """Publish again the state an earlier successful run published: the undo for a bad day.

    Consumers see the restored marts at once; the next run builds on them and judges the
    undone runs' loads again. Exit 5 while a run holds the lock, 2 for a run with nothing to
    restore (never published, or its DuckDB generation no longer kept).
    """
    settings = _settings(config)
    history_file = _history(settings)
    try:
        # The run's own lock: the warehouse's lease on `spark`, where runners on other hosts look.
        with run_lock(settings, f"rollback --to {to}"):
            restored, undone = roll_back(settings, history_file, to)
    except LockBusy as busy:
        err.print(f"[red]locked:[/red] {busy}", highlight=False)
        raise typer.Exit(ExitCode.LOCKED) from None
    except PublishError as error:
        err.print(f"[red]rollback error:[/red] {error}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None
    out.print(
        f"published the state of run {restored} again; rolled back: "
        f"{', '.join(run[:8] for run in undone) or 'no later run'}"
    )


@app.command()
def maintain(config: ConfigOption = None) -> None:
    """Compact the partitioned Iceberg tables and expire snapshots no rollback needs.

    Keeps every snapshot the last `keep_generations` publishes name, so `pipeline rollback`
    still reaches them. Takes the run lock (exit 5 while a run holds it); exit 2 on DuckDB,
    while a failed run's branches wait for `--retry`, or when the server refuses a step.
    """
    from pipeline.maintain import MaintainError, run_maintenance

    settings = _settings(config)
    history_file = _history(settings)
    run_id = str(uuid.uuid4())
    try:
        with run_lock(settings, "maintain"):
            # In the history like a run (`pipeline history`), after the lock: a refused
            # maintenance changed nothing, as a refused run.
            history_file.start_run(run_id, settings.target, "maintain", utc_now())
            published = history_file.recent_published_states(settings.keep_generations)
            try:
                reports = run_maintenance(settings, published)
            except MaintainError as error:
                history_file.finish_run(
                    run_id, "usage", ExitCode.USAGE, "maintain", str(error), utc_now(), {}
                )
                raise
            except Exception as error:  # a server lost mid-way: one line and a record, exit 1
                # The first lines name the table and the reason; a JVM's stack trace follows.
                failure = f"{type(error).__name__}: {' '.join(str(error).split())[:500]}"
                history_file.finish_run(
                    run_id, "dbt_error", ExitCode.DBT_ERROR, "maintain", failure, utc_now(), {}
                )
                err.print(f"[red]maintain failed:[/red] {failure}", highlight=False)
                raise typer.Exit(ExitCode.DBT_ERROR) from None
    except LockBusy as busy:
        err.print(f"[red]locked:[/red] {busy}", highlight=False)
        raise typer.Exit(ExitCode.LOCKED) from None
    except MaintainError as error:
        err.print(f"[red]maintain error:[/red] {error}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from None
    history_file.finish_run(
        run_id,
        "success",
        ExitCode.SUCCESS,
        "maintain",
        f"{len(reports)} tables: data files "
        f"{sum(r.files_before for r in reports)} -> {sum(r.files_after for r in reports)}, "
        f"snapshots {sum(r.snapshots_before for r in reports)} -> "
        f"{sum(r.snapshots_after for r in reports)}",
        utc_now(),
        {},
    )
    table = Table(
        title="pipeline maintain",
        caption="files: data files before -> after; MB rewritten; kept: snapshots kept "
        "for `pipeline rollback`",
    )
    for column in ("table", "files", "rewritten", "added", "MB", "snapshots", "kept"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for report in reports:
        table.add_row(
            report.table,
            f"{report.files_before} -> {report.files_after}",
            str(report.files_rewritten),
            str(report.files_added),
            f"{report.bytes_rewritten / 1e6:.1f}",
            f"{report.snapshots_before} -> {report.snapshots_after}",
            str(report.kept_for_rollback),
        )
    out.print(table)


@app.command()
def report(
    since: Annotated[
        dt.datetime | None,
        typer.Option(
            "--since",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"],
            help="Only runs started at or after this time (UTC).",
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option("--run", help="Focus this run (id or unique prefix); default the newest."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", help=f"HTML file to write (default {REPORT_PATH} in the project)."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write a self-contained HTML report of past runs.

    Runs, volume, freshness, models, tests and lineage, in one file that opens offline.
    """
    from pipeline.report import ReportError, write_report  # plotly: only this command needs it

    settings = _settings(config)
    try:
        written = write_report(
            settings.resolve(settings.history_path),
            output if output is not None else settings.resolve(REPORT_PATH),
            since,
            run,
            settings.resolve(settings.target_path),
        )
    except ReportError as error:
        err.print(f"[red]report:[/red] {error}")
        raise typer.Exit(ExitCode.USAGE) from None
    out.print(f"report written to {written}", soft_wrap=True)


cluster_app = typer.Typer(
    no_args_is_help=True,
    help="A one-machine Spark standalone cluster with a Thrift server, for the spark target.",
)
app.add_typer(cluster_app, name="cluster")
ClusterDirOption = Annotated[
    Path, typer.Option("--dir", help="Where the cluster keeps its logs, metastore and tables.")
]


@cluster_app.command("up")
def cluster_up(
    folder: ClusterDirOption = Path("data/cluster"),
    workers: Annotated[int, typer.Option(min=1, max=8, help="Spark Workers.")] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for it.")] = 180.0,
) -> None:
    """Start a Master, Workers and a Thrift server on 127.0.0.1, and write the spark target's
    environment to <dir>/cluster.env (`source` it, then `pipeline run --target spark`)."""
    from pipeline.cluster import ClusterError, LocalCluster, read_state

    if read_state(folder) is not None:
        err.print(f"[red]usage error:[/red] a cluster is recorded in {folder}: cluster down first")
        raise typer.Exit(ExitCode.USAGE)
    try:
        state = LocalCluster(folder, workers=workers, timeout=timeout).start()
    except ClusterError as error:
        err.print(f"[red]cluster failed to start (everything stopped):[/red] {error}")
        raise typer.Exit(ExitCode.DBT_ERROR) from None
    env_file = folder / "cluster.env"
    env_file.write_text(
        "".join(f"export {key}={value}\n" for key, value in {**state.env}.items())
        + "export COMMERCE_TARGET=spark\n"
    )
    out.print(
        f"cluster up: master {state.master_url}, Thrift server {state.env['COMMERCE_SPARK_HOST']}"
        f":{state.thrift_port}; source {env_file} to use it; stop with `pipeline cluster down`"
    )


@cluster_app.command("down")
def cluster_down(folder: ClusterDirOption = Path("data/cluster")) -> None:
    """Stop every process of the cluster recorded in <dir> (Thrift server, Workers, Master)."""
    from pipeline.cluster import stop_recorded

    stopped = stop_recorded(folder)
    (folder / "cluster.env").unlink(missing_ok=True)
    out.print(f"stopped: {', '.join(stopped)}" if stopped else f"no cluster recorded in {folder}")


def main() -> None:
    """Console-script entry point, with the garbage collector set for a short-lived process.

    A run holds a large graph of long-lived objects (the imported modules, dbt's manifest and
    graph) and makes millions of short-lived ones. With CPython's defaults the collector
    walks the long-lived ones again and again, about 0.9 s of a 10 s daily run at scale 1,
    and the interpreter's last collection at exit takes another 0.4 to 0.6 s. Frozen at start
    (what the CLI imports; dbt comes later, pipeline/dbt.py) and again on the way out, with a
    larger first generation, the run spends about 0.25 s collecting and exits in 0.05 s
    (bench/NOTES.md; a third freeze after the parse gained nothing). Reference counting still
    frees whatever is not in a cycle; what a cycle holds at exit is left to the operating
    system, so every file and connection is closed where it is used, never by a finalizer.
    """
    gc.freeze()
    gc.set_threshold(GC_FIRST_GENERATION, 20, 100)
    try:
        sys.exit(app())
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
