"""`pipeline report`: one self-contained HTML page of what the runs did, read from the history.

Who it is for: the person paged by a failed run, and anyone asking "is the warehouse healthy?".
The page answers with runs over time (status, exit code, seconds per phase), rows landed per
load against the volume gate's band, null rates of the columns that ever held one against the
null-rate gate's band, source age against the freshness limit, rows and build
seconds per model, test failures (failing tests first) and the lineage graph coloured by the
focused run's outcome.

Design choices:
- Read-only SQL on the history file, so a report can be drawn while the scheduler runs and can
  never change what the volume gate learns from.
- Tolerant of the schema: a missing table or column reads as empty or NULL, because the
  history schema grows on other branches (new run statuses, new columns) and an old or new
  history must still render.
- One file, no network: plotly's offline bundle is embedded once, so the report can be mailed,
  attached to a ticket or opened on a machine without internet access.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import networkx as nx
import plotly.graph_objects as go
import plotly.offline
from jinja2 import Environment, select_autoescape
from plotly.subplots import make_subplots

from pipeline.manifest import node_name

CONNECT_ATTEMPTS = 20  # a writer holds the file for well under a second at a time

# Run statuses the runner writes today, and those the history is gaining ('cancelled',
# 'abandoned'); anything else falls back to grey rather than failing the report.
STATUS_COLOURS = {
    "success": "#2ca02c",
    "running": "#1f77b4",
    "stale": "#ff7f0e",
    "volume": "#d62728",
    "dbt_error": "#b00020",
    "usage": "#8c564b",
    "locked": "#9467bd",
    "cancelled": "#bcbd22",
    "abandoned": "#7f7f7f",
}
NODE_COLOURS = {
    "success": "#2ca02c",
    "pass": "#2ca02c",
    "warn": "#ff7f0e",
    "error": "#d62728",
    "fail": "#d62728",
    "runtime error": "#d62728",
    "skipped": "#bbbbbb",
    "not run": "#e5e5e5",
    "source": "#1f77b4",
}
BUILT_TYPES = ("model", "seed", "snapshot")
TEST_TYPES = ("test", "unit_test")
FAILING = ("fail", "error", "runtime error")
PHASE_ORDER = (
    "prepare",
    "freshness",
    "staging",
    "volume",
    "nulls",
    "downstream",
    "publish",
    "row_counts",
    "report",
)


class ReportError(ValueError):
    """The report cannot be drawn (no history, unknown run); the message names the reason."""


# -- reading the history -----------------------------------------------------------------------


class HistoryReader:
    """Read-only SQL over the history file; missing tables and columns read as empty or NULL."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        rows = con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'main'"
        ).fetchall()
        self.columns: dict[str, set[str]] = defaultdict(set)
        for table, column in rows:
            self.columns[table].add(column)

    def has(self, table: str, column: str | None = None) -> bool:
        return table in self.columns and (column is None or column in self.columns[table])

    def select(
        self, table: str, wanted: Sequence[str], tail: str = "", params: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """`select wanted from table tail`, with NULL for each column the table lacks.

        `tail` may only name columns the caller checked with `has()` (or that every known
        schema has); it is code, never user input, which travels in `params`.
        """
        if table not in self.columns:
            return []
        present = self.columns[table]
        items = [f'"{c}"' if c in present else f'null as "{c}"' for c in wanted]
        sql = f'select {", ".join(items)} from "{table}" {tail}'
        cursor = self.con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _connect_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """DuckDB refuses a read-only open while a run holds its short write connection: wait a bit."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException:
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


@dataclasses.dataclass
class ReportData:
    """Everything the page draws, already filtered to the runs in scope."""

    runs: list[dict[str, Any]]
    focus: dict[str, Any] | None
    nodes: list[dict[str, Any]]
    gates: list[dict[str, Any]]
    parents: dict[str, list[str]]
    parents_from: str
    since: dt.datetime | None
    null_rates: list[dict[str, Any]]


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """History timestamps are naive UTC; an aware `since` is converted, a naive one taken as UTC."""
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def _phase_seconds(raw: Any) -> dict[str, float]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return (
        {str(k): float(v) for k, v in value.items() if isinstance(v, (int, float))}
        if isinstance(value, dict)
        else {}
    )


# Where the runner leaves a run's dbt artifacts: target/runs/<run_id>/<phase>/. `parse` holds
# the whole project; the others only if parse is gone. target/manifest.json is the layout of
# runners before per-run folders (and of plain `dbt` calls).
MANIFEST_PHASES = ("parse", "downstream", "staging", "select", "freshness")


def find_manifest(target_path: Path | None, run_id: str | None) -> Path | None:
    """The manifest that describes `run_id` best: its own, else the newest dbt left."""
    if target_path is None:
        return None
    candidates = (
        [target_path / "runs" / run_id / phase / "manifest.json" for phase in MANIFEST_PHASES]
        if run_id
        else []
    )
    candidates.append(target_path / "manifest.json")
    return next((path for path in candidates if path.is_file()), None)


def _parents_from_manifest(manifest_path: Path | None) -> dict[str, list[str]]:
    if manifest_path is None:
        return {}
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return {}
    return {
        uid: list(node.get("depends_on", {}).get("nodes", []))
        for uid, node in manifest.get("nodes", {}).items()
        if node.get("resource_type") in BUILT_TYPES
    }


def read_history(
    history_path: Path,
    since: dt.datetime | None = None,
    run_id: str | None = None,
    target_path: Path | None = None,
) -> ReportData:
    """The runs in scope (started at or after `since`), their nodes and gate checks, and the
    lineage parents: from the history when it records them, else from the focused run's
    manifest under `target_path` (the runner's `target_path` setting)."""
    if not history_path.exists():
        raise ReportError(f"no run history at {history_path}: run `pipeline run` first")
    with _connect_read_only(history_path) as con:
        reader = HistoryReader(con)
        run_columns = [
            "run_id",
            "target",
            "arguments",
            "started_at",
            "ended_at",
            "status",
            "exit_code",
            "phase",
            "message",
            "phase_seconds",
        ]
        where, params = "", []
        if since is not None and reader.has("runs", "started_at"):
            where, params = "where started_at >= ?", [_naive_utc(since)]
        order = "order by started_at" if reader.has("runs", "started_at") else ""
        runs = reader.select("runs", run_columns, f"{where} {order}", params)
        publishes = (
            reader.select("publishes", ["run_id", "state", "restored_from"])
            if reader.has("publishes", "run_id")
            else []
        )
        published = {row["run_id"]: _published_label(row) for row in publishes}
        for run in runs:
            run["phase_seconds"] = _phase_seconds(run["phase_seconds"])
            run["published"] = published.get(run["run_id"], "")
        focus = _focus(runs, run_id)
        run_ids = [run["run_id"] for run in runs]
        node_columns = [
            "run_id",
            "unique_id",
            "name",
            "resource_type",
            "layer",
            "status",
            "row_count",
            "seconds",
            "message",
            "parents",
        ]
        nodes = (
            reader.select("node_runs", node_columns, "where list_contains(?, run_id)", [run_ids])
            if reader.has("node_runs", "run_id")
            else []
        )
        gate_columns = [
            "run_id",
            "gate",
            "subject",
            "load_date",
            "observed",
            "low",
            "high",
            "warn_after",
            "passed",
            "status",
            "detail",
        ]
        gates = (
            reader.select("gate_checks", gate_columns, "where list_contains(?, run_id)", [run_ids])
            if reader.has("gate_checks", "run_id")
            else []
        )
        # Drawn with the volume chart's code: the same keys, subject naming model and column.
        null_columns = [
            "run_id",
            "subject",
            "column_name",
            "load_date",
            "null_rate",
            "low",
            "high",
            "passed",
            "detail",
        ]
        measured = (
            reader.select("null_rates", null_columns, "where list_contains(?, run_id)", [run_ids])
            if reader.has("null_rates", "run_id")
            else []
        )
        null_rates = [
            {
                **row,
                "subject": f"{row['subject']}.{row['column_name']}",
                "observed": row["null_rate"],
            }
            for row in measured
        ]
    parents: dict[str, list[str]] = {}
    parents_from = "none"
    if focus is not None:
        for node in nodes:
            if node["run_id"] == focus["run_id"] and node["parents"] is not None:
                raw = (
                    json.loads(node["parents"])
                    if isinstance(node["parents"], str)
                    else node["parents"]
                )
                parents[node["unique_id"]] = list(raw or [])
        parents_from = "history" if parents else "none"
    if not parents:
        manifest_path = find_manifest(target_path, focus["run_id"] if focus else None)
        parents = _parents_from_manifest(manifest_path)
        parents_from = f"manifest {manifest_path}" if parents else "none"
    return ReportData(runs, focus, nodes, gates, parents, parents_from, since, null_rates)


def _published_label(row: dict[str, Any]) -> str:
    """What a run made visible: its DuckDB file generation, or how many Iceberg snapshots."""
    state = json.loads(row["state"]) if isinstance(row["state"], str) else dict(row["state"])
    if "generation" in state:
        what = f"file generation {str(state['generation']).split('/')[0][:8]}"
    else:
        what = f"{len(state.get('snapshots', {}))} Iceberg snapshots"
    return f"{what} (rollback to {str(row['restored_from'])[:8]})" if row["restored_from"] else what


def _focus(runs: list[dict[str, Any]], run_id: str | None) -> dict[str, Any] | None:
    """The run the page is about: the one asked for (a unique prefix will do), else the newest."""
    if run_id is None:
        return runs[-1] if runs else None
    matches = [run for run in runs if str(run["run_id"]).startswith(run_id)]
    if len(matches) != 1:
        found = "no run" if not matches else f"{len(matches)} runs"
        raise ReportError(
            f"--run {run_id}: {found} in scope match (pipeline history lists run ids)"
        )
    return matches[0]


# -- charts ------------------------------------------------------------------------------------


def _run_label(run: dict[str, Any]) -> str:
    """Category axis label: runs minutes apart would be slivers on a time axis."""
    started = run["started_at"]
    when = started.strftime("%m-%d %H:%M:%S") if isinstance(started, dt.datetime) else str(started)
    return f"{when} {str(run['run_id'])[:8]}"


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    # The legend stays at plotly's default place, right of the plot, where it never covers a title.
    fig.update_layout(
        title=title, height=height, margin=dict(l=60, r=20, t=70, b=60), template="plotly_white"
    )
    return fig


def _mark_focus(fig: go.Figure, data: ReportData, **where: Any) -> None:
    if data.focus is not None and len(data.runs) > 1:
        fig.add_vline(x=_run_label(data.focus), line_dash="dot", line_color="#555", **where)


def runs_figure(data: ReportData) -> go.Figure:
    """Seconds per phase stacked per run, with the run's status and exit code on top."""
    labels = [_run_label(run) for run in data.runs]
    seen = {phase for run in data.runs for phase in run["phase_seconds"]}
    # The runner's order bottom-up; a phase added later goes on top, by name.
    phases = [p for p in PHASE_ORDER if p in seen] + sorted(seen - set(PHASE_ORDER))
    fig = go.Figure()
    for phase in phases:
        fig.add_bar(
            name=phase, x=labels, y=[run["phase_seconds"].get(phase, 0.0) for run in data.runs]
        )
    totals = [_duration(run) for run in data.runs]
    for status in sorted({str(run["status"]) for run in data.runs}):
        picked = [i for i, run in enumerate(data.runs) if str(run["status"]) == status]
        fig.add_scatter(
            name=f"status {status}",
            mode="markers+text",
            x=[labels[i] for i in picked],
            y=[totals[i] for i in picked],
            text=[
                f"exit {data.runs[i]['exit_code']}" if data.runs[i]["exit_code"] is not None else ""
                for i in picked
            ],
            textposition="top center",
            marker=dict(size=12, symbol="diamond", color=STATUS_COLOURS.get(status, "#7f7f7f")),
            hovertext=[
                f"{data.runs[i]['run_id']}<br>{status} exit {data.runs[i]['exit_code']} "
                f"phase {data.runs[i]['phase']}<br>published: "
                f"{data.runs[i].get('published') or 'nothing'}"
                for i in picked
            ],
            hoverinfo="text",
        )
    fig.update_layout(barmode="stack", yaxis_title="seconds (diamond: wall time)")
    _mark_focus(fig, data)
    return _layout(fig, "Runs: seconds per phase, status and exit code")


def _duration(run: dict[str, Any]) -> float:
    if isinstance(run["started_at"], dt.datetime) and isinstance(run["ended_at"], dt.datetime):
        return float((run["ended_at"] - run["started_at"]).total_seconds())
    return float(sum(run["phase_seconds"].values()))


def volume_figure(data: ReportData) -> go.Figure:
    """Per staging model: rows per load, the band the gate allowed, the loads that stopped a run."""
    checks = [g for g in data.gates if g["gate"] == "volume" and g["load_date"] is not None]
    return _band_figure(
        data, checks, "volume", "rows landed", "Volume gate: rows per load vs the allowed band"
    )


def null_rate_figure(data: ReportData) -> go.Figure:
    """Per staging column that ever held a null or stopped a run: its share of nulls per load
    against the band the gate allowed. Always-complete columns (most of them) would be flat
    lines at 0 and are left out."""
    shown = {str(g["subject"]) for g in data.null_rates if g["observed"] or g["passed"] is False}
    checks = [g for g in data.null_rates if g["subject"] in shown and g["load_date"] is not None]
    return _band_figure(
        data,
        checks,
        "null-rate",
        "null rate",
        "Null-rate gate: share of nulls per load vs the allowed band (columns ever null)",
    )


def _band_figure(
    data: ReportData, checks: list[dict[str, Any]], gate: str, observed: str, title: str
) -> go.Figure:
    """Per subject: the observed value per load, the band the gate allowed, the loads that
    stopped a run.

    A load judged by several runs is drawn with its latest judgement; a red cross marks every
    judgement that failed, so a load that stopped a run and later passed (data fixed) still shows.
    """
    started = {run["run_id"]: run["started_at"] for run in data.runs}
    subjects = sorted({str(g["subject"]) for g in checks})
    fig = make_subplots(
        rows=max(len(subjects), 1),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        subplot_titles=subjects or [f"no {gate} checks in scope"],
    )
    for row, subject in enumerate(subjects, start=1):
        mine = sorted(
            (g for g in checks if g["subject"] == subject),
            key=lambda g: (g["load_date"], started.get(g["run_id"]) or dt.datetime.min),
        )
        latest: dict[Any, dict[str, Any]] = {}
        for g in mine:
            latest[g["load_date"]] = g
        days = sorted(latest)
        first = row == 1
        # The band as one closed polygon over the loads that had both bounds (plotly's
        # fill-between would bridge the loads judged before the history was long enough),
        # and its edges dashed, so a one-sided band (declared min_rows only) still shows.
        both = [d for d in days if latest[d]["low"] is not None and latest[d]["high"] is not None]
        if both:
            fig.add_scatter(
                row=row,
                col=1,
                x=both + both[::-1],
                y=[latest[d]["high"] for d in both] + [latest[d]["low"] for d in both[::-1]],
                fill="toself",
                fillcolor="rgba(44,160,44,0.15)",
                line=dict(width=0),
                mode="lines",
                name="allowed band",
                legendgroup="band",
                showlegend=first,
                hoverinfo="skip",
            )
        for bound in ("low", "high"):
            # Markers too: a band learned for one load only (the first with enough history)
            # is a point.
            fig.add_scatter(
                row=row,
                col=1,
                x=days,
                y=[latest[d][bound] for d in days],
                mode="lines+markers",
                marker=dict(size=5, symbol="line-ew-open", color="#2ca02c"),
                line=dict(width=1, dash="dash", color="#2ca02c"),
                name=f"band {bound}",
                legendgroup="band",
                showlegend=False,
                hoverinfo="x+y+name",
            )
        fig.add_scatter(
            row=row,
            col=1,
            x=days,
            y=[latest[d]["observed"] for d in days],
            mode="lines+markers",
            name=observed,
            legendgroup="observed",
            showlegend=first,
            line=dict(color="#1f77b4"),
            hovertext=[str(latest[d]["detail"] or "") for d in days],
            hoverinfo="x+y+text",
        )
        failed = [g for g in mine if g["passed"] is False]
        if failed:
            fig.add_scatter(
                row=row,
                col=1,
                x=[g["load_date"] for g in failed],
                y=[g["observed"] for g in failed],
                mode="markers",
                marker=dict(symbol="x", size=13, color="#d62728"),
                name="stopped a run",
                legendgroup="stopped",
                showlegend=True,
                hovertext=[f"run {str(g['run_id'])[:8]}: {g['detail'] or ''}" for g in failed],
                hoverinfo="x+y+text",
            )
    return _layout(fig, title, height=max(260 * len(subjects), 320))


def freshness_figure(data: ReportData) -> go.Figure:
    """Age of each source's newest load at each run, in hours, against its error (and warn)
    limit."""
    labels = {run["run_id"]: _run_label(run) for run in data.runs}
    checks = [g for g in data.gates if g["gate"] == "freshness" and g["run_id"] in labels]
    order = {run["run_id"]: i for i, run in enumerate(data.runs)}
    fig = go.Figure()
    limits: dict[tuple[str, float], list[str]] = defaultdict(list)
    for source in sorted({str(g["subject"]) for g in checks}):
        mine = sorted(
            (g for g in checks if g["subject"] == source), key=lambda g: order[g["run_id"]]
        )
        fig.add_scatter(
            name=source,
            mode="lines+markers",
            x=[labels[g["run_id"]] for g in mine],
            y=[None if g["observed"] is None else g["observed"] / 3600 for g in mine],
            marker=dict(
                color=["#d62728" if g["passed"] is False else "#2ca02c" for g in mine], size=9
            ),
            hovertext=[str(g["detail"] or "") for g in mine],
            hoverinfo="x+y+text",
        )
        for key, kind in (("high", "error after"), ("warn_after", "warn after")):
            for value in {g[key] for g in mine if g[key] is not None}:
                limits[(kind, value / 3600)].append(source)
    for (kind, hours), sources in sorted(limits.items()):
        fig.add_hline(
            y=hours,
            line_dash="dash" if kind == "error after" else "dot",
            line_color="#d62728" if kind == "error after" else "#ff7f0e",
            annotation_text=f"{kind} {hours:g}h ({len(sources)} sources)",
            annotation_position="top left",
        )
    fig.update_layout(yaxis_title="age of newest load (hours)")
    _mark_focus(fig, data)
    title = "Freshness: source age per run vs its limit"
    if not any(kind == "warn after" for kind, _ in limits):
        title += " (history records no warn limit)"
    return _layout(fig, title)


def _built_nodes(data: ReportData) -> list[dict[str, Any]]:
    return [n for n in data.nodes if n["resource_type"] in BUILT_TYPES]


def model_figure(data: ReportData, field: str, title: str, axis: str) -> go.Figure:
    """One line per model over the runs that built it (a run that skipped it leaves a gap)."""
    labels = [_run_label(run) for run in data.runs]
    index = {run["run_id"]: i for i, run in enumerate(data.runs)}
    series: dict[str, list[Any]] = {}
    layers: dict[str, str] = {}
    for node in _built_nodes(data):
        values = series.setdefault(str(node["name"]), [None] * len(labels))
        values[index[node["run_id"]]] = node[field]
        layers[str(node["name"])] = str(node["layer"])
    fig = go.Figure()
    for name in sorted(series, key=lambda n: (layers[n], n)):
        fig.add_scatter(
            name=name,
            x=labels,
            y=series[name],
            mode="lines+markers",
            legendgroup=layers[name],
            legendgrouptitle_text=layers[name],
            connectgaps=False,
        )
    fig.update_layout(yaxis_title=axis)
    _mark_focus(fig, data)
    return _layout(fig, title, height=520)


def _test_name(unique_id: str, name: str) -> str:
    """dbt names a generic test's node by a hash suffix (test.commerce.<readable>.<hash>):
    show the readable part."""
    parts = unique_id.split(".")
    return parts[2] if parts[0] == "test" and len(parts) == 4 else name


def tests_figure(data: ReportData) -> go.Figure:
    """Tests × runs: failing tests sorted to the top, so the culprit is the first row read."""
    labels = [_run_label(run) for run in data.runs]
    index = {run["run_id"]: i for i, run in enumerate(data.runs)}
    grid: dict[str, list[float | None]] = {}
    notes: dict[str, list[str]] = {}
    for node in data.nodes:
        if node["resource_type"] not in TEST_TYPES:
            continue
        name = _test_name(str(node["unique_id"]), str(node["name"]))
        status = str(node["status"])
        grid.setdefault(name, [None] * len(labels))[index[node["run_id"]]] = (
            2.0 if status in FAILING else 1.0 if status == "warn" else 0.0
        )
        notes.setdefault(name, [""] * len(labels))[index[node["run_id"]]] = (
            f"{status}: {(node['message'] or '')[:200]}"
        )
    names = sorted(
        grid, key=lambda n: (-sum(v == 2.0 for v in grid[n]), -sum(v == 1.0 for v in grid[n]), n)
    )
    # Every test that ever failed or warned, then a few passing ones for scale: a wall of
    # green rows adds nothing to read.
    troubled = [n for n in names if any(v and v > 0 for v in grid[n])]
    shown = troubled + [n for n in names if n not in troubled][: max(0, 25 - len(troubled))]
    failures = [sum(1 for n in grid if grid[n][i] == 2.0) for i in range(len(labels))]
    fig = make_subplots(
        rows=2,
        cols=1,
        row_heights=[0.2, 0.8],
        shared_xaxes=True,
        vertical_spacing=0.04,
        subplot_titles=[
            "failing tests per run",
            f"tests by run ({len(shown)} of {len(names)}, failing first)",
        ],
    )
    fig.add_bar(
        row=1,
        col=1,
        x=labels,
        y=failures,
        marker_color="#d62728",
        name="failing tests",
        showlegend=False,
    )
    # Reversed so the most failing test is on top of the heatmap.
    fig.add_heatmap(
        row=2,
        col=1,
        x=labels,
        y=list(reversed(shown)),
        z=[grid[n] for n in reversed(shown)],
        text=[notes[n] for n in reversed(shown)],
        hoverinfo="x+y+text",
        zmin=0,
        zmax=2,
        showscale=False,
        colorscale=[[0, "#2ca02c"], [0.5, "#ff7f0e"], [1, "#d62728"]],
        xgap=1,
        ygap=1,
    )
    return _layout(fig, "Tests: failures over time", height=max(360, 140 + 18 * len(shown)))


def lineage_figure(data: ReportData) -> go.Figure:
    """Sources and models as a layered graph (parents left), coloured by the focused run.

    Nodes come from the focused run and the known parent lists; a model the run never reached
    (it stopped at a gate) shows as "not run".
    """
    focus_id = data.focus["run_id"] if data.focus else None
    status = {
        n["unique_id"]: str(n["status"]) for n in _built_nodes(data) if n["run_id"] == focus_id
    }
    graph = nx.DiGraph()
    graph.add_nodes_from(status)
    for child, parents in data.parents.items():
        graph.add_node(child)
        for parent in parents:
            if parent.split(".")[0] in (*BUILT_TYPES, "source"):
                graph.add_edge(parent, child)
    graph.remove_nodes_from(
        [n for n in list(graph) if str(n).split(".")[0] not in (*BUILT_TYPES, "source")]
    )
    fig = go.Figure()
    if graph.number_of_nodes() == 0:
        return _layout(fig, "Lineage: no nodes recorded for this run")
    if not nx.is_directed_acyclic_graph(graph):
        graph.remove_edges_from(list(nx.find_cycle(graph)))
    for depth, generation in enumerate(nx.topological_generations(graph)):
        for node in generation:
            graph.nodes[node]["depth"] = depth
    positions = nx.multipartite_layout(graph, subset_key="depth", align="vertical", scale=1.0)
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for parent, child in graph.edges:
        edge_x += [positions[parent][0], positions[child][0], None]
        edge_y += [positions[parent][1], positions[child][1], None]
    fig.add_scatter(
        x=edge_x,
        y=edge_y,
        mode="lines",
        line=dict(width=0.7, color="#aaaaaa"),
        hoverinfo="skip",
        showlegend=False,
    )

    def state(node: str) -> str:
        return "source" if node.startswith("source.") else status.get(node, "not run")

    for name in sorted({state(n) for n in graph}):
        picked = [n for n in graph if state(n) == name]
        fig.add_scatter(
            name=name,
            mode="markers+text",
            x=[positions[n][0] for n in picked],
            y=[positions[n][1] for n in picked],
            text=[node_name(n) for n in picked],
            textposition="middle right",
            textfont=dict(size=9),
            marker=dict(
                size=12, color=NODE_COLOURS.get(name, "#7f7f7f"), line=dict(width=1, color="#333")
            ),
            hovertext=[f"{n}<br>{name}" for n in picked],
            hoverinfo="text",
        )
    # Room on the right for the labels of the last layer (they are drawn right of their marker).
    xs = [positions[n][0] for n in graph]
    fig.update_xaxes(
        visible=False, range=[min(xs) - 0.05, max(xs) + 0.1 + 0.2 * (max(xs) - min(xs))]
    )
    fig.update_yaxes(visible=False)
    run = f"run {str(focus_id)[:8]} ({data.focus['status']})" if data.focus else "no run"
    return _layout(
        fig,
        f"Lineage coloured by {run}; parents from {data.parents_from}",
        height=max(420, 24 * max(len(g) for g in nx.topological_generations(graph))),
    )


# -- the page ----------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>commerce warehouse: run report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin-bottom: 1.5rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
td.msg { max-width: 60rem; white-space: pre-wrap; word-break: break-word; }
.status { font-weight: 600; }
section { margin-bottom: 2rem; }
</style>
<script>{{ plotly_js | safe }}</script>
</head><body>
<h1>commerce warehouse: run report</h1>
<p>Generated {{ generated }} UTC from {{ history_path }}: {{ runs | length }} runs
{%- if since %} since {{ since }}{% endif %}.</p>
{% if focus %}
<section id="focus"><h2>Run {{ focus.run_id }}</h2>
<p><span class="status" style="color: {{ colour(focus.status) }}">{{ focus.status }}</span>,
exit {{ blank(focus.exit_code) }}, phase {{ blank(focus.phase) }}, started {{ focus.started_at }},
{{ blank(focus.arguments) }} on {{ blank(focus.target) }}</p>
{% if focus.message %}<pre class="msg">{{ focus.message }}</pre>{% endif %}
{% if failing %}<table><tr><th>failing node</th><th>status</th><th>message</th></tr>
{% for node in failing %}<tr><td>{{ node.unique_id }}</td><td>{{ node.status }}</td>
<td class="msg">{{ node.message }}</td></tr>{% endfor %}
</table>{% endif %}
</section>
{% endif %}
{% for div in charts %}<section>{{ div | safe }}</section>
{% endfor %}
<section id="runs"><h2>Runs, newest first</h2>
<table><tr><th>started (UTC)</th><th>run</th><th>status</th><th>exit</th><th>phase</th>
<th>seconds</th><th>published</th><th>message</th></tr>
{% for run in runs | reverse %}<tr><td>{{ run.started_at }}</td><td>{{ run.run_id[:8] }}</td>
<td class="status" style="color: {{ colour(run.status) }}">{{ run.status }}</td>
<td>{{ blank(run.exit_code) }}</td><td>{{ blank(run.phase) }}</td>
<td>{{ "%.1f" | format(duration(run)) }}</td><td>{{ run.published or "nothing" }}</td>
<td class="msg">{{ (run.message or "")[:500] }}</td></tr>
{% endfor %}</table></section>
</body></html>
"""


def render(data: ReportData, history_path: Path) -> str:
    """The page as a string: plotly's bundle once, then each chart as a div (no per-chart copy)."""
    figures = [
        runs_figure(data),
        volume_figure(data),
        null_rate_figure(data),
        freshness_figure(data),
        model_figure(data, "row_count", "Rows per model after each run", "rows"),
        model_figure(data, "seconds", "Build seconds per model", "seconds"),
        tests_figure(data),
        lineage_figure(data),
    ]
    charts = [
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"chart-{i}",
            config={"displaylogo": False, "responsive": True},
        )
        for i, fig in enumerate(figures)
    ]
    focus_id = data.focus["run_id"] if data.focus else None
    failing = [
        n for n in data.nodes if n["run_id"] == focus_id and str(n["status"]) in (*FAILING, "warn")
    ]
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(PAGE)
    return template.render(
        plotly_js=plotly.offline.get_plotlyjs(),
        charts=charts,
        runs=data.runs,
        focus=data.focus,
        failing=failing,
        since=data.since,
        history_path=str(history_path),
        duration=_duration,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        colour=lambda status: STATUS_COLOURS.get(str(status), "#7f7f7f"),
        blank=lambda value: "" if value is None else value,
    )  # an unfinished or sparse run shows gaps, not "None"


def write_report(
    history_path: Path,
    output: Path,
    since: dt.datetime | None = None,
    run_id: str | None = None,
    target_path: Path | None = None,
) -> Path:
    """Write the HTML report of the runs in `history_path` to `output` and return its path.

    `since` keeps runs started at or after it (naive means UTC); `run_id` (or a unique prefix)
    is the run the page focuses on, the newest in scope by default; `target_path` (dbt's
    artifacts, the runner's `target_path` setting) supplies lineage parents from the run's
    manifest when the history does not record them. Raises ReportError when there is
    no history or the run is unknown. Written to a temp file then renamed, so a reader (a
    browser, a web server) never sees half a page.
    """
    data = read_history(history_path, since, run_id, target_path)
    page = render(data, history_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(output)
    return output


__all__ = [
    "ReportData",
    "ReportError",
    "read_history",
    "render",
    "write_report",
]
