"""`pipeline`: the command a person or a scheduler runs. Thin glue over the other modules."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from pipeline import generator
from pipeline.config import ConfigError, Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
err = Console(stderr=True)
out = Console()

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="Settings file (default: pipeline.yml).")]
LandingOption = Annotated[Optional[Path], typer.Option("--landing-root", help="Landing zone folder.")]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as error:
        err.print(f"[red]configuration error:[/red] {error}")
        raise typer.Exit(2) from None


def _yesterday() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


@app.command()
def generate(
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 42,
    scale: Annotated[float, typer.Option(help="Daily volume; 1 = about 30,000 orders a day.")] = 0.05,
    days: Annotated[int, typer.Option(min=1, help="Days of history.")] = 30,
    end_date: Annotated[Optional[dt.datetime], typer.Option(formats=["%Y-%m-%d"], help="Last load date (default: yesterday, UTC).")] = None,
    append_day: Annotated[bool, typer.Option("--append-day", help="Add the next daily load to an existing landing zone.")] = False,
    landing_root: LandingOption = None,
    config: ConfigOption = None,
) -> None:
    """Write a deterministic landing zone of daily CDC loads (Parquet, partitioned by load date)."""
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
        raise typer.Exit(2) from None
    seconds = (dt.datetime.now() - started).total_seconds()
    total = sum(rows.values())
    out.print(f"{label} in {root}: {total:,} rows in {seconds:.2f}s ({total / max(seconds, 1e-9):,.0f} rows/s)")
    out.print(", ".join(f"{entity} {count:,}" for entity, count in rows.items()))


@app.command()
def run(
    target: Annotated[Optional[str], typer.Option(help="dbt target: duckdb, spark_local or spark.")] = None,
    config: ConfigOption = None,
) -> None:
    """Build the warehouse with dbt (seeds, models, snapshot, tests)."""
    from pipeline.dbt import invoke

    settings = _settings(config, target=target)
    outcome = invoke(settings, ["build"])
    for node in outcome.failed_nodes:
        err.print(f"[red]{node.status}[/red] {node.unique_id}: {node.message}")
    raise typer.Exit(0 if outcome.success else 1)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    main()
