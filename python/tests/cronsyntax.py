"""A strict parser for the five time fields of a crontab line (no cron daemon needed in tests)."""

from __future__ import annotations

import re

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")


def _values(text: str, low: int, high: int) -> set[int]:
    """The values one field selects; raises ValueError on anything cron would reject."""
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step {step_text!r} must be positive")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, last_text = base.split("-", 1)
            first, last = int(first_text), int(last_text)
        else:
            first = last = int(base)
        if not (low <= first <= last <= high):
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return values


def parse_line(line: str) -> tuple[list[set[int]], str]:
    """Split a crontab job line into the values of its five fields and its command."""
    parts = line.split(None, 5)
    if len(parts) < 6 or not parts[5].strip():
        raise ValueError(f"a job line needs five time fields and a command: {line!r}")
    fields = [
        _values(text, low, high) for text, (_, low, high) in zip(parts[:5], FIELDS, strict=True)
    ]
    return fields, parts[5]


def job_lines(text: str) -> list[str]:
    """The job lines of a crontab: not blank, not a comment, not an environment setting."""
    return [
        line
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#") and not _ENV.match(line)
    ]
