"""Write-audit-publish: a run builds where no consumer looks, and publishes only when audited.

A run's dbt phases write to a private state: on DuckDB a copy of the published warehouse
file, on Iceberg a branch of every table. Only after every gate, model and test of the run
passed does the runner make that state the published one, in one step per engine (an atomic
rename of the file; a fast-forward of each table's `main`). A run that fails, is cancelled or
is killed publishes nothing: consumers keep reading the last audited state and the next run
builds on it, so whatever a gate or a test rejected is merged nowhere.

Each publish is recorded in the run history with what it published (a file generation, or
the snapshot id of every table), which is what `pipeline rollback --to <run_id>` restores.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import duckdb

from pipeline.config import Settings

UNPUBLISHED = ".unpublished"  # suffix of a run's private copy until it is published


class PublishError(RuntimeError):
    """A state cannot be prepared, published or restored; the message says which and why."""


class Publisher(Protocol):
    """How one engine isolates a run's writes and makes them visible at once."""

    def begin(self, run_id: str, resume: str | None) -> Settings:
        """Prepare the run's private state and return the settings dbt must build with.

        `resume` names an earlier run whose unpublished state `--retry` continues from.
        """
        ...

    def publish(self, run_id: str) -> dict[str, Any]:
        """Make the run's state the published one; return what was published (JSON-able)."""
        ...

    def discard(self, run_id: str, keep_for_retry: bool) -> None:
        """Drop the run's private state (or keep it, unpublished, for `--retry`)."""
        ...

    def restore(self, published: dict[str, Any]) -> None:
        """Publish again a state an earlier run published (`pipeline rollback`)."""
        ...


class DuckDBPublisher:
    """Shadow copy of the warehouse file, published with an atomic rename.

    Layout beside the published file `warehouse.duckdb`:

        warehouse.generations/<run_id>.duckdb              what a successful run published
        warehouse.generations/<run_id>.duckdb.unpublished  a run's private copy

    The published file is a hard link to the newest generation, replaced with `os.replace`:
    a reader that has the old file open keeps a consistent view of it, new connections see
    the new one, and no moment exists in which the file is missing or half written. The
    generations the history still names are what rollback restores; `keep` of them are kept.
    """

    def __init__(self, settings: Settings, keep: int) -> None:
        self.settings = settings
        self.published = settings.resolve(settings.warehouse_path)
        self.generations = self.published.with_name(self.published.stem + ".generations")
        self.keep = keep

    def _private(self, run_id: str) -> Path:
        return self.generations / f"{run_id}.duckdb{UNPUBLISHED}"

    def generation(self, run_id: str) -> Path:
        return self.generations / f"{run_id}.duckdb"

    def begin(self, run_id: str, resume: str | None) -> Settings:
        self.generations.mkdir(parents=True, exist_ok=True)
        private = self._private(run_id)
        kept = self._private(resume) if resume else None
        for stale in self.generations.glob(f"*{UNPUBLISHED}*"):
            if kept is None or not stale.name.startswith(kept.name):
                stale.unlink()  # runs that died or failed: never published, never resumed
        if kept is not None:
            if not kept.exists():
                raise PublishError(
                    f"--retry cannot resume run {resume}: its unpublished warehouse {kept} is "
                    "gone (a later run started over); run without --retry"
                )
            kept.replace(private)
            _move_wal(kept, private)
        elif self.published.exists():
            try:
                shutil.copyfile(self.published, private)
            except OSError as error:
                private.unlink(missing_ok=True)
                raise PublishError(
                    f"cannot copy the published warehouse {self.published} to {private} to "
                    f"build in: {error.strerror or error} (the published warehouse is untouched)"
                ) from None
        return self.settings.model_copy(update={"warehouse_path": private})

    def publish(self, run_id: str) -> dict[str, Any]:
        private = self._private(run_id)
        generation = self.generation(run_id)
        if not private.exists():  # nothing was built (e.g. a selection of tests only)
            raise PublishError(f"run {run_id} has no warehouse to publish at {private}")
        # Fold the write-ahead log into the file: a published file is one self-contained file.
        with duckdb.connect(str(private)) as con:
            con.execute("checkpoint")
        private.replace(generation)
        self._point_at(generation)
        self._prune(keep=generation)
        return {"engine": "duckdb", "generation": generation.name}

    def discard(self, run_id: str, keep_for_retry: bool) -> None:
        if keep_for_retry:
            return
        private = self._private(run_id)
        for path in (private, private.with_name(private.name + ".wal")):
            path.unlink(missing_ok=True)

    def restore(self, published: dict[str, Any]) -> None:
        generation = self.generations / str(published.get("generation", ""))
        if published.get("engine") != "duckdb" or not generation.is_file():
            raise PublishError(
                f"the published state {published} is not a generation kept in "
                f"{self.generations} (only the last {self.keep} are kept)"
            )
        self._point_at(generation)

    def _point_at(self, generation: Path) -> None:
        """Make `generation` the published file in one atomic rename."""
        incoming = self.published.with_name(self.published.name + ".incoming")
        incoming.unlink(missing_ok=True)
        try:
            os.link(generation, incoming)
        except OSError:  # a filesystem without hard links: a copy, still renamed atomically
            shutil.copyfile(generation, incoming)
        incoming.replace(self.published)
        # A log left by a reader of the old file must not be replayed into the new one.
        self.published.with_name(self.published.name + ".wal").unlink(missing_ok=True)

    def _prune(self, keep: Path) -> None:
        generations = sorted(
            (path for path in self.generations.glob("*.duckdb") if path != keep),
            key=lambda path: path.stat().st_mtime,
            reverse=True,
        )
        for old in generations[max(0, self.keep - 1) :]:
            old.unlink()


def _move_wal(source: Path, target: Path) -> None:
    wal = source.with_name(source.name + ".wal")
    if wal.exists():
        wal.replace(target.with_name(target.name + ".wal"))


class InPlacePublisher:
    """Spark until its Iceberg branches are wired: dbt writes the published tables directly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def begin(self, run_id: str, resume: str | None) -> Settings:
        return self.settings

    def publish(self, run_id: str) -> dict[str, Any]:
        return {"engine": self.settings.target, "in_place": True}

    def discard(self, run_id: str, keep_for_retry: bool) -> None:
        return None

    def restore(self, published: dict[str, Any]) -> None:
        raise PublishError(f"{self.settings.target} cannot restore {published}: built in place")


def publisher_for(settings: Settings) -> Publisher:
    """The publish mechanism of the settings' engine."""
    if settings.target == "duckdb":
        return DuckDBPublisher(settings, keep=settings.keep_generations)
    return InPlacePublisher(settings)
