"""The HTML report, drawn from a real history (four `pipeline run`s through the CLI) and opened
in headless Chromium: no JavaScript error, every chart drawn, and the facts we caused on the page.

Runs made, oldest first (the report must show exactly these):
  1. a load with an unknown order_status           -> exit 1 (staging test fails)
  2. bad row removed, `run --full-refresh`          -> exit 0
  3. next day appended, its orders cut to 5%        -> exit 4 (volume gate)
  4. orders restored                                -> exit 0
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from conftest import make_landing
from pipeline import PROJECT_DIR, generator
from pipeline import report as report_module
from pipeline.cli import app as pipeline_app
from pipeline.report import ReportError, read_history, write_report

TODAY = dt.datetime.now(dt.UTC).date()
EXPECTED_EXITS = [1, 0, 4, 0]  # oldest first, as caused below
# order_status is tested against the order_statuses seed (a relationships test): "lost" is not
# there.
BAD_TEST = "relationships_stg_landing__orders_order_status__order_status__ref_order_statuses_"
CHARTS = 8  # runs, volume, null rates, freshness, model rows, model seconds, tests, lineage
ARTIFACTS = PROJECT_DIR / "build" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (.ci/run installs Debian's chromium package)"
)


@dataclass
class History:
    config: Path
    history_path: Path
    target: Path
    third_run_not_before: dt.datetime
    truncated_rows: int
    truncated_load: dt.date


def _pipeline(config: Path, *args: str) -> int:
    result = CliRunner().invoke(pipeline_app, [*args, "--config", str(config)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """Four real runs with the exit codes of EXPECTED_EXITS (asserted as they happen)."""
    root = tmp_path_factory.mktemp("report-project")
    landing = make_landing(root / "landing", days=20, end_date=TODAY - dt.timedelta(days=2))
    config = root / "pipeline.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "landing_root": str(landing),
                "warehouse_path": str(root / "warehouse.duckdb"),
                "history_path": str(root / "history.duckdb"),
                "lock_path": str(root / "pipeline.lock"),
                "target_path": str(root / "target"),
                "metrics_path": str(root / "metrics" / "commerce.prom"),
                "lineage_path": str(root / "lineage" / "events.jsonl"),
            }
        )
    )

    last = landing / "orders" / f"load_date={TODAY - dt.timedelta(days=2)}"
    good = pq.read_table(last / "part-0000.parquet")
    row = good.slice(0, 1).to_pylist()
    row[0].update(order_id=99_999_999, order_status="lost")
    pq.write_table(
        good.schema.empty_table().from_pylist(row, schema=good.schema), last / "part-0001.parquet"
    )
    assert _pipeline(config, "run") == 1

    (last / "part-0001.parquet").unlink()
    assert _pipeline(config, "run", "--full-refresh") == 0

    load_date, _ = generator.append_day(landing)
    orders = landing / "orders" / f"load_date={load_date}" / "part-0000.parquet"
    original = pq.read_table(orders)
    kept = max(1, int(original.num_rows * 0.05))
    pq.write_table(original.slice(0, kept), orders)
    third = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert _pipeline(config, "run") == 4

    pq.write_table(original, orders)
    assert _pipeline(config, "run") == 0
    return History(config, root / "history.duckdb", root / "target", third, kept, load_date)


# -- reading the page --------------------------------------------------------------------------


class PageFacts(HTMLParser):
    """Plotly charts (and whether each drew an SVG), the runs table, and the JS-error record."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[bool] = []
        self._chart_depth: int | None = None
        self._div_depth = 0
        self.table_rows: list[list[str]] = []
        self._in_runs = False
        self._cell: list[str] | None = None
        self._pre_errors = False
        self.js_errors: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "div":
            self._div_depth += 1
            if "js-plotly-plot" in classes and self._chart_depth is None:
                self._chart_depth = self._div_depth
                self.charts.append(False)
        if tag == "svg" and "main-svg" in classes and self._chart_depth is not None:
            self.charts[-1] = True
        if tag == "section" and attributes.get("id") == "runs":
            self._in_runs = True
        if self._in_runs and tag == "tr":
            self.table_rows.append([])
        if self._in_runs and tag == "td":
            self._cell = []
        if tag == "pre" and attributes.get("id") == "js-errors":
            self._pre_errors = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            if self._chart_depth == self._div_depth:
                self._chart_depth = None
            self._div_depth -= 1
        if tag == "section":
            self._in_runs = False
        if tag == "td" and self._cell is not None:
            self.table_rows[-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "pre":
            self._pre_errors = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._pre_errors:
            self.js_errors = json.loads(data)


def page_facts(html_text: str) -> PageFacts:
    facts = PageFacts()
    facts.feed(html_text)
    return facts


# Records uncaught errors, rejected promises and console.error into the DOM after load, where
# --dump-dom can read them. Injected into a copy: the report itself carries no test hook.
ERROR_HOOK = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push("error: " + e.message); });
window.addEventListener("unhandledrejection", function (e) {
  window.__errors.push("rejection: " + e.reason); });
var __consoleError = console.error;
console.error = function () {
  window.__errors.push("console: " + Array.from(arguments).join(" "));
  __consoleError.apply(console, arguments); };
window.addEventListener("load", function () { setTimeout(function () {
  var pre = document.createElement("pre"); pre.id = "js-errors";
  pre.textContent = JSON.stringify(window.__errors);
  document.body.appendChild(pre); }, 500); });
</script>"""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=15000",
]


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium call with a new empty profile (never the machine's own)."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,  # the caller asserts on the return code with Chromium's stderr
        )


def open_in_browser(report: Path, work: Path) -> tuple[PageFacts, str]:
    """The DOM after scripts ran, parsed, and Chromium's stderr (console messages land there)."""
    hooked = work / f"hooked-{report.name}"
    hooked.write_text(
        report.read_text(encoding="utf-8").replace("<head>", "<head>" + ERROR_HOOK, 1),
        encoding="utf-8",
    )
    result = chromium(hooked, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    return page_facts(result.stdout), result.stderr


# -- tests -------------------------------------------------------------------------------------


@needs_chromium
def test_the_error_hook_catches_a_javascript_error(tmp_path: Path) -> None:
    """Without this, 'no JS errors' below could pass because the hook never reported."""
    page = tmp_path / "broken.html"
    page.write_text("<html><head></head><body><script>undefinedFunction();</script></body></html>")
    facts, _ = open_in_browser(page, tmp_path)
    assert facts.js_errors is not None and any("undefinedFunction" in e for e in facts.js_errors), (
        facts.js_errors
    )


@needs_chromium
def test_report_renders_every_chart_without_errors(history: History, tmp_path: Path) -> None:
    report = write_report(
        history.history_path, tmp_path / "report.html", target_path=history.target
    )
    text = report.read_text(encoding="utf-8")
    # plotly's bundle mentions its CDN in strings; what matters is that no tag loads anything.
    assert "<script src=" not in text and "<link " not in text, "the report must not load anything"

    facts, stderr = open_in_browser(report, tmp_path)
    assert facts.js_errors == [], facts.js_errors
    assert "Uncaught" not in stderr, [line for line in stderr.splitlines() if "Uncaught" in line]
    assert len(facts.charts) == CHARTS and all(facts.charts), facts.charts

    # The runs table, newest first: the exit codes this module caused, nothing else.
    exits = [int(row[3]) for row in facts.table_rows if row]
    assert exits == list(reversed(EXPECTED_EXITS))
    statuses = [row[2] for row in facts.table_rows if row]
    assert statuses == ["success", "volume", "success", "dbt_error"]
    # What each run published: a successful run its own file generation, a failed one nothing.
    published = [(row[1], row[6]) for row in facts.table_rows if row]
    assert [text for _, text in published] == [
        f"file generation {run}" if status == "success" else "nothing"
        for (run, _), status in zip(published, statuses, strict=True)
    ]

    shot = tmp_path / "report.png"
    result = chromium(
        report, f"--screenshot={shot}", "--window-size=1400,7000", "--hide-scrollbars"
    )
    assert result.returncode == 0 and shot.stat().st_size > 50_000, result.stderr[-2000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")
    shutil.copy(report, ARTIFACTS / "report.html")


def test_volume_chart_marks_the_load_that_stopped_a_run(history: History) -> None:
    figure = report_module.volume_figure(read_history(history.history_path))
    stopped = [trace for trace in figure.data if trace.name == "stopped a run"]
    assert len(stopped) == 1, "exactly one load, in one model, stopped a run"
    assert [str(x) for x in stopped[0].x] == [history.truncated_load.isoformat()]
    assert list(stopped[0].y) == [history.truncated_rows]


def test_null_rate_chart_shows_the_columns_ever_null_and_not_the_complete_ones(
    history: History,
) -> None:
    figure = report_module.null_rate_figure(read_history(history.history_path))
    titles = {annotation.text for annotation in figure.layout.annotations}
    # anonymous events are the landing's only nulls (about a sixth of them, never none)
    assert titles == {"stg_landing__events.customer_id"}
    (observed,) = [trace for trace in figure.data if trace.name == "null rate"]
    assert all(0 < rate < 1 for rate in observed.y)


def test_focusing_the_failed_run_puts_its_failing_test_on_top(
    history: History, tmp_path: Path
) -> None:
    with duckdb.connect(str(history.history_path), read_only=True) as con:
        row = con.execute("select run_id from runs order by started_at limit 1").fetchone()
    assert row is not None
    (first_run,) = row
    data = read_history(history.history_path, run_id=first_run[:8], target_path=history.target)
    assert data.focus is not None and data.focus["exit_code"] == EXPECTED_EXITS[0]
    heatmap = report_module.tests_figure(data).data[1]
    assert str(heatmap.y[-1]) == BAD_TEST, "the top row is the test that failed"
    assert list(heatmap.z[-1]) == [2.0, 0.0, 0.0, 0.0], (
        "failed in run 1, passed in every later run (staging runs in each)"
    )
    assert all(2.0 not in row for row in heatmap.z[:-1]), "no other test failed in these runs"

    assert f"runs/{first_run}/" in data.parents_from, "lineage from the focused run's own manifest"
    # Run 1 built staging (its models succeeded; a test on one of them failed) and stopped:
    # every mart is "not run", every staging model green, every landing source drawn as a source.
    lineage = {
        trace.name: set(trace.text)
        for trace in report_module.lineage_figure(data).data
        if trace.name
    }
    assert {"fct_orders", "dim_customers.v2", "fct_daily_revenue"} <= lineage["not run"]
    assert "stg_landing__orders" in lineage["success"] and "fct_orders" not in lineage["success"]
    assert {"orders", "order_items", "payments", "customers", "products", "events"} <= lineage[
        "source"
    ]

    page = write_report(
        history.history_path,
        tmp_path / "focus.html",
        run_id=first_run[:8],
        target_path=history.target,
    ).read_text(encoding="utf-8")
    assert f"Run {first_run}" in page and BAD_TEST in page


def test_report_command_filters_by_since_and_rejects_an_unknown_run(
    history: History, tmp_path: Path
) -> None:
    output = tmp_path / "since.html"
    before = hashlib.sha256(history.history_path.read_bytes()).hexdigest()
    result = CliRunner().invoke(
        pipeline_app,
        [
            "report",
            "--config",
            str(history.config),
            "--output",
            str(output),
            "--since",
            history.third_run_not_before.strftime("%Y-%m-%dT%H:%M:%S"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [row for row in page_facts(output.read_text(encoding="utf-8")).table_rows if row]
    assert [int(row[3]) for row in rows] == list(reversed(EXPECTED_EXITS[2:]))
    assert hashlib.sha256(history.history_path.read_bytes()).hexdigest() == before, (
        "the report only reads"
    )

    result = CliRunner().invoke(
        pipeline_app,
        [
            "report",
            "--config",
            str(history.config),
            "--output",
            str(output),
            "--run",
            "no-such-run",
        ],
    )
    assert result.exit_code == 2 and "no run" in result.output


def test_a_sparse_or_extended_history_still_renders(tmp_path: Path) -> None:
    """An older or newer schema: runs without phase_seconds or message, a status the runner
    does not write yet, no node_runs and no gate_checks tables at all."""
    path = tmp_path / "history.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "create table runs (run_id varchar, started_at timestamp, ended_at timestamp, "
            "status varchar, "
            "exit_code integer, phase varchar, operator varchar)"
        )
        con.execute(
            "insert into runs values "
            "('r-cancelled', '2026-11-01 00:30', '2026-11-01 00:31', 'cancelled', 130, "
            "'staging', 'ops'),"
            "('r-abandoned', '2026-11-02 00:30', null, 'abandoned', null, null, 'ops')"
        )
    page = write_report(path, tmp_path / "report.html").read_text(encoding="utf-8")
    facts = page_facts(page)
    assert [row[2:4] for row in facts.table_rows if row] == [
        ["abandoned", ""],
        ["cancelled", "130"],
    ]
    assert len(facts.charts) == 0 and page.count('class="plotly-graph-div"') == CHARTS

    with pytest.raises(ReportError, match="no run history"):
        write_report(tmp_path / "missing.duckdb", tmp_path / "nothing.html")
