"""Settings precedence and errors, without dbt: defaults < pipeline.yml < PIPELINE_* < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_settings, mask_secrets


def test_each_layer_overrides_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text("threads: 3\nlog_format: json\ntarget: spark_local\n")
    monkeypatch.delenv("PIPELINE_TARGET", raising=False)
    monkeypatch.setenv("PIPELINE_THREADS", "5")
    settings = load_settings(config, {"target": "duckdb", "log_format": None})
    assert settings.threads == 5  # environment over file
    assert settings.log_format == "json"  # file over default; a None flag changes nothing
    assert settings.target == "duckdb"  # flag over everything
    assert settings.lock_path == Path("data/pipeline.lock")  # default


def test_an_unknown_key_and_a_bad_value_are_named(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text("warehouse_pth: x\n")
    with pytest.raises(ConfigError, match="warehouse_pth"):
        load_settings(config)
    config.write_text("future_tolerance_minutes: -1\n")
    with pytest.raises(ConfigError, match="future_tolerance_minutes=-1"):
        load_settings(config)


def test_relative_paths_resolve_from_the_project_not_the_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, {})
    assert (
        settings.resolve(settings.history_path) == settings.project_dir / "data" / "history.duckdb"
    )


def test_a_secret_in_a_setting_is_never_printed(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text("lineage_url: htps://alice:s3cret@lineage.example/api\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    message = str(raised.value)
    assert "s3cret" not in message and "alice" not in message
    assert "lineage_url='htps://***@lineage.example/api'" in message
    assert "must start with http:// or https://" in message


def test_mask_secrets_keeps_urls_without_credentials() -> None:
    assert mask_secrets("http://lineage.example:5000/api") == "http://lineage.example:5000/api"
    assert (
        mask_secrets("see https://u:p@h/x and s3a://k@b/y")
        == "see https://***@h/x and s3a://***@b/y"
    )
