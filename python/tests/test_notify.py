"""Failure notifications against a real HTTP server on 127.0.0.1, and against nothing at all."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.notify import FailureNotice, notify_failure, report_and_notify


class Webhook:
    """A local webhook that records what it receives and answers with `status` after `delay`."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, Any]]] = []
        self.status = 200
        self.delay = 0.0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(
                    (self.path, self.headers.get("Content-Type", ""), json.loads(body))
                )
                time.sleep(hook.delay)
                try:
                    self.send_response(hook.status)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (the timeout test): nothing to answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/sekrit-token"
        # A short poll so shutdown() returns at once, not after serve_forever's default 0.5 s.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()
        hook.thread.join(timeout=5)


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The `pipeline` logger may or may not propagate (configure_logging turns it off), so the
    capture is attached to it directly and propagation is off: each record is seen once."""
    logger = logging.getLogger("pipeline")
    saved = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.level, logger.propagate = saved


FAILURE = FailureNotice(
    run_id="1b2c3d4e-run",
    exit_code=4,
    phase="volume",
    message="anomalous volume, downstream not built: stg_landing__orders load 2026-11-21 "
    "brought 51 rows; expected [900, 1,300]",
    target="duckdb",
)


def test_one_message_names_run_exit_phase_culprit_and_report(
    webhook: Webhook, warnings: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    notify_failure(webhook.url, FAILURE, report=report)
    assert len(webhook.received) == 1
    path, content_type, payload = webhook.received[0]
    assert path == "/services/T000/B000/sekrit-token"
    assert content_type == "application/json"
    text = payload["text"]
    for expected in (
        "1b2c3d4e-run",
        "exit 4",
        "volume anomaly",
        "phase volume",
        "stg_landing__orders",
        "brought 51 rows",
        report.resolve().as_uri(),
    ):
        assert expected in text, (expected, text)
    assert any(report.resolve().as_uri() in json.dumps(block) for block in payload["blocks"])
    assert "sekrit-token" not in warnings.text, "a webhook token must never reach the log"
    assert [r.levelname for r in warnings.records] == ["INFO"]


def test_a_refusing_webhook_is_a_warning_not_an_exception(
    webhook: Webhook, warnings: pytest.LogCaptureFixture
) -> None:
    webhook.status = 500
    notify_failure(webhook.url, FAILURE)
    assert len(webhook.received) == 1
    assert [r.levelname for r in warnings.records] == ["WARNING"]
    assert "HTTP 500" in warnings.text and "sekrit-token" not in warnings.text


def test_a_slow_webhook_times_out_with_a_warning(
    webhook: Webhook, warnings: pytest.LogCaptureFixture
) -> None:
    webhook.delay = 2.0
    started = time.monotonic()
    notify_failure(webhook.url, FAILURE, timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert [r.levelname for r in warnings.records] == ["WARNING"]
    assert "Timeout" in warnings.text


@pytest.mark.parametrize("url", ["http://alice:pa55word@127.0.0.1:9/hook", "not a url at all"])
def test_an_unreachable_notifier_does_not_raise_and_leaks_no_credentials(
    url: str, warnings: pytest.LogCaptureFixture
) -> None:
    notify_failure(url, FAILURE, timeout=1.0)
    assert [r.levelname for r in warnings.records] == ["WARNING"]
    assert "did not arrive" in warnings.text
    assert "pa55word" not in warnings.text and "alice" not in warnings.text


def test_report_and_notify_links_a_report_focused_on_the_run(
    webhook: Webhook, warnings: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    history = tmp_path / "history.duckdb"
    with duckdb.connect(str(history)) as con:
        con.execute(
            "create table runs (run_id varchar, started_at timestamp, ended_at timestamp, "
            "status varchar, "
            "exit_code integer, phase varchar, message varchar)"
        )
        con.execute(
            "insert into runs values "
            "('0-older', '2026-11-20 00:30', '2026-11-20 00:31', 'success', 0, "
            "'done', null), (?, '2026-11-21 00:30', '2026-11-21 00:31', 'volume', 4, 'volume', ?)",
            [FAILURE.run_id, FAILURE.message],
        )
    report = tmp_path / "out" / "report.html"
    report_and_notify(webhook.url, FAILURE, history, report)
    assert f"Run {FAILURE.run_id}</h2>" in report.read_text(encoding="utf-8"), (
        "focused on the failed run"
    )
    ((_, _, payload),) = webhook.received
    assert report.resolve().as_uri() in payload["text"]
    assert [r.levelname for r in warnings.records] == ["INFO"]


def test_report_and_notify_still_notifies_when_the_report_fails(
    webhook: Webhook, warnings: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    report_and_notify(
        webhook.url, FAILURE, tmp_path / "no-history.duckdb", tmp_path / "report.html"
    )
    ((_, _, payload),) = webhook.received
    assert "Report:" not in payload["text"] and FAILURE.run_id in payload["text"]
    assert [r.levelname for r in warnings.records] == ["WARNING", "INFO"]
    assert "no run history" in warnings.records[0].getMessage()


def test_a_run_a_person_must_look_at_is_notified_once_through_the_cli(
    webhook: Webhook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wired end to end: an exit 4 run posts one message naming the run; a good run posts none."""
    from conftest import TODAY, make_project

    project = make_project(tmp_path, days=5, end_date=TODAY - dt.timedelta(days=1))
    monkeypatch.setenv("PIPELINE_NOTIFY_URL", webhook.url)
    path = next((project.settings.landing_root / "orders").glob("load_date=*/part-0000.parquet"))
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["updated_at"]), path)
    code, _, stderr = project.pipeline("run")
    assert code == 4, stderr
    assert len(webhook.received) == 1
    text = json.dumps(webhook.received[0][2])
    run = project.history.runs(1)[0]
    assert run.run_id in text and "exit 4" in text
    assert "sekrit-token" not in stderr
