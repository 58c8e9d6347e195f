"""The commerce warehouse runner: dbt plus freshness and volume gates for a scheduler."""

from pathlib import Path

# The repository root, where dbt_project.yml and profiles/ live (python/pipeline/ -> root).
PROJECT_DIR = Path(__file__).resolve().parents[2]
