"""Slim CI for the runner: `--select state:modified+` against a production manifest.

dbt's `state:` selector compares the project with a manifest of another run (production's).
The runner passes `--state <state_path>` to every dbt invocation that selects (the selection
check and both builds) and `--defer` to the builds, so a parent that is not selected is read
from the production relation the state manifest names instead of being rebuilt. Without a
usable state the selector cannot mean anything: the run stops before anything is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.config import Settings
from pipeline.exits import ExitCode, StopRun

# A selector term's method: "state:modified+", "1+state:modified.body", "tag:x,state:new".
_STATE_TERM = re.compile(r"(?:^|[\s,])@?\d*\+?state:")


def uses_state(select: tuple[str, ...]) -> bool:
    """True when any of the selectors (or any term of an intersection) uses `state:`."""
    return any(_STATE_TERM.search(selector) for selector in select)


@dataclass(frozen=True)
class StateArgs:
    """Extra dbt arguments: `select` for `dbt ls`, `build` for `dbt build`."""

    select: list[str] = field(default_factory=list)
    build: list[str] = field(default_factory=list)


def state_args(settings: Settings, select: tuple[str, ...]) -> StateArgs:
    """The --state/--defer arguments a selection needs; exit 2 when it needs a missing state."""
    if not uses_state(select):
        return StateArgs()
    selection = " ".join(select)
    if settings.state_path is None:
        raise StopRun(
            ExitCode.USAGE,
            "select",
            f"--select {selection} compares with a production manifest, but state_path is not "
            "set: set state_path (pipeline.yml or PIPELINE_STATE_PATH) to the folder holding "
            "production's manifest.json",
        )
    folder = settings.resolve(settings.state_path)
    if not (folder / "manifest.json").is_file():
        raise StopRun(
            ExitCode.USAGE,
            "select",
            f"--select {selection} needs a production manifest, but state_path {folder} holds "
            "no manifest.json: copy production's target/parse/manifest.json (its runner's "
            "last parse) there or fix state_path "
            "(pipeline.yml or PIPELINE_STATE_PATH)",
        )
    state = ["--state", str(folder)]
    return StateArgs(select=state, build=[*state, "--defer"])
