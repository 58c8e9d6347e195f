"""Tell people a run failed: one JSON message to a Slack-compatible incoming webhook.

Why a push and not only the metrics: the Prometheus alerts tell on-call that something is
wrong; this message tells whoever reads the channel which run, which phase and which node or
source to look at, with the report one click away, before they open a terminal.

A notification is a courtesy, never part of the run's outcome: an unreachable or slow webhook
is logged as a warning and the run's exit code stays what it was. Webhook URLs carry secrets
(`user:pass@`, or a token in the path as Slack's do), so only scheme and host are ever logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

LOGGER_NAME = "pipeline"
TIMEOUT_SECONDS = 5.0
MAX_CULPRIT_CHARS = 2500  # Slack rejects a section text over 3,000 characters

# What each exit code means, as README's table says; kept here so notifying needs no dbt import.
EXIT_MEANINGS = {
    0: "success",
    1: "dbt error",
    2: "usage or configuration error",
    3: "stale source",
    4: "volume anomaly",
    5: "another run holds the lock",
}


class RunOutcome(Protocol):
    """What a notification needs from a run; observability.RunSummary already has it."""

    @property
    def run_id(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def phase(self) -> str | None: ...
    @property
    def message(self) -> str | None: ...
    @property
    def target(self) -> str: ...


@dataclass(frozen=True)
class FailureNotice:
    """A failed run as the notifier sees it, for callers that hold no RunSummary."""

    run_id: str
    exit_code: int | None
    phase: str | None
    message: str | None
    target: str = "duckdb"


def safe_url(url: str) -> str:
    """The URL as it may appear in a log: scheme and host only (no credentials, no path token)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def _report_link(report: Path | str | None) -> str | None:
    if report is None:
        return None
    if isinstance(report, Path):
        return report.resolve().as_uri()
    return report


def failure_message(summary: RunOutcome, report: Path | str | None = None) -> dict[str, Any]:
    """The webhook payload: `text` for any Slack-compatible receiver, `blocks` for Slack."""
    code = summary.exit_code
    meaning = EXIT_MEANINGS.get(code, "unknown exit code") if code is not None else "no exit code"
    culprit = (summary.message or "no message recorded").strip()
    if len(culprit) > MAX_CULPRIT_CHARS:
        culprit = culprit[:MAX_CULPRIT_CHARS] + "…"
    link = _report_link(report)
    headline = (
        f"commerce warehouse run {summary.run_id} failed on {summary.target}: "
        f"exit {code} ({meaning}) in phase {summary.phase or 'unknown'}"
    )
    text = f"{headline}\nCulprit: {culprit}" + (f"\nReport: {link}" if link else "")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{culprit}```"}},
    ]
    if link:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Report: <{link}>"}]}
        )
    return {"text": text, "blocks": blocks}


def notify_failure(
    url: str,
    summary: RunOutcome,
    report: Path | str | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> None:
    """POST one failure message to `url`; never raises, logs a warning when it does not arrive."""
    log = logging.getLogger(LOGGER_NAME)
    payload = failure_message(summary, report)
    try:
        response = requests.post(url, json=payload, timeout=timeout)
        response.raise_for_status()
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        log.warning(
            "failure notification to %s was refused: HTTP %s",
            safe_url(url),
            status,
            extra={
                "fields": {
                    "event": "notify_failed",
                    "run_id": summary.run_id,
                    "http_status": status,
                }
            },
        )
    except (requests.RequestException, ValueError) as error:
        # The exception text can repeat the URL with its token: log only its kind.
        log.warning(
            "failure notification to %s did not arrive: %s",
            safe_url(url),
            type(error).__name__,
            extra={
                "fields": {
                    "event": "notify_failed",
                    "run_id": summary.run_id,
                    "error": type(error).__name__,
                }
            },
        )
    else:
        log.info(
            "failure notification sent to %s",
            safe_url(url),
            extra={"fields": {"event": "notified", "run_id": summary.run_id}},
        )


def report_and_notify(
    url: str,
    summary: RunOutcome,
    history_path: Path,
    report_path: Path,
    target_path: Path | None = None,
) -> None:
    """The runner's one call after a failed run: write the report focused on this run, then
    notify with a link to it. Never raises: a report that cannot be written is a warning and
    the message goes out without a link, since the message matters more than the page.

    Call it after the run's history row is finished, so the report shows its exit code.
    """
    from pipeline.report import write_report  # plotly is imported only when a run failed

    log = logging.getLogger(LOGGER_NAME)
    report: Path | None
    try:
        report = write_report(
            history_path, report_path, run_id=summary.run_id, target_path=target_path
        )
    except Exception as error:
        log.warning(
            "could not write the report for run %s: %s: %s",
            summary.run_id,
            type(error).__name__,
            error,
            extra={"fields": {"event": "report_failed", "run_id": summary.run_id}},
        )
        report = None
    notify_failure(url, summary, report)
