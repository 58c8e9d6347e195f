"""Runner settings: defaults in code, overridden by `pipeline.yml`, then by environment.

Validated with pydantic so an unknown key or a bad value is a usage error (exit 2) that names
the key, the value and the rule, before anything touches the warehouse.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline import PROJECT_DIR

ENV_PREFIX = "PIPELINE_"
REPORT_PATH = Path("data/report.html")  # `pipeline report`'s page, under the project


_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """Credentials in URLs (scheme://user:password@host) shown as ***: a setting can hold a
    secret, and error messages end up in logs, mails and the run history."""
    return _CREDENTIALS.sub(lambda match: f"{match.group('scheme')}***@", text)


class ConfigError(ValueError):
    """A setting is unknown or invalid; the message is meant for the person running us."""


class Settings(BaseModel):
    """Everything the runner needs to know about where things are and how to behave."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project_dir: Path = PROJECT_DIR
    target: Literal["duckdb", "spark_local", "spark"] = "duckdb"
    landing_root: Path = Path("data/landing")
    warehouse_path: Path = Path("data/warehouse.duckdb")
    spark_dir: Path = Path("data/spark")  # spark_local: Iceberg warehouse and Derby metastore
    history_path: Path = Path("data/history.duckdb")
    lock_path: Path = Path("data/pipeline.lock")
    lock_lease_seconds: int = Field(
        default=600,
        ge=30,
        le=24 * 3600,
        description="spark target: how long a run's warehouse lock outlives its last renewal",
    )
    warehouse_schemas: tuple[str, ...] = Field(
        default=("reference", "staging", "intermediate", "marts", "snapshots"),
        description="Iceberg targets: the schemas whose tables a run publishes and `pipeline "
        "maintain` maintains (dbt_project.yml's +schema values); others in the catalog are "
        "never touched",
    )
    target_path: Path = Path("target")
    metrics_path: Path = Path("data/metrics/commerce.prom")
    lineage_path: Path = Path("data/lineage/events.jsonl")
    lineage_url: str | None = Field(
        default=None, description="OpenLineage HTTP endpoint; file transport when unset"
    )
    lineage_namespace: str = "commerce"
    notify_url: str | None = Field(
        default=None, description="Slack-compatible webhook told of every run a person must look at"
    )
    state_path: Path | None = Field(
        default=None,
        description="folder holding production's manifest.json, for --select state:modified+",
    )
    log_format: Literal["text", "json"] = "text"
    threads: int = Field(default=2, ge=1, le=64)
    keep_generations: int = Field(
        default=3,
        ge=1,
        le=100,
        description="published DuckDB warehouse files kept for `pipeline rollback`",
    )
    future_tolerance_minutes: int = Field(
        default=15,
        ge=0,
        le=24 * 60,
        description="how far past the run's clock a landing timestamp may be (clock skew)",
    )

    @field_validator("lineage_url", "notify_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    def resolve(self, path: Path) -> Path:
        """Relative paths are relative to the project directory, never to the caller's cwd."""
        return path if path.is_absolute() else (self.project_dir / path)

    @property
    def profiles_dir(self) -> Path:
        return self.project_dir / "profiles"


def load_settings(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Defaults < pipeline.yml (or `config_file`) < PIPELINE_* environment < explicit overrides."""
    values: dict[str, Any] = {}
    path = config_file or (PROJECT_DIR / "pipeline.yml")
    if config_file is not None and not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{path}: expected a mapping of settings, got {type(loaded).__name__}"
            )
        values.update(loaded)
    for name in Settings.model_fields:
        env_value = os.environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return Settings(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'])}="
            f"{mask_secrets(repr(issue.get('input')))}: {issue['msg']}"
            for issue in error.errors()
        )
        raise ConfigError(
            f"invalid settings ({path.name} / {ENV_PREFIX}* environment): {problems}"
        ) from None
