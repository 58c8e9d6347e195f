"""The README's code blocks cannot rot: every fenced block is compiled, syntax-checked or parsed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cronsyntax import job_lines, parse_line
from pipeline import PROJECT_DIR

README = PROJECT_DIR / "README.md"
_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
CHECKED = {"python", "sh", "cron"}


def blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line number) of every fenced block in `text`."""
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in _FENCE.finditer(text)
    ]


def test_fence_extraction_finds_blocks_and_languages() -> None:
    """The extractor itself: a wrong regex would make every test below vacuous."""
    sample = "a\n```sh\necho hi\n```\ntext\n```python\nx = 1\n```\n```\nplain\n```\n"
    assert blocks(sample) == [("sh", "echo hi\n", 2), ("python", "x = 1\n", 6), ("", "plain\n", 9)]


README_BLOCKS = blocks(README.read_text())


def test_readme_has_the_blocks_we_check() -> None:
    languages = [language for language, _, _ in README_BLOCKS]
    assert languages.count("sh") >= 4 and "cron" in languages
    # Every block is either checked or the unlabeled layout tree; a new language needs a check.
    assert {language for language in languages} <= CHECKED | {""}


@pytest.mark.parametrize(
    "language, body, line",
    README_BLOCKS,
    ids=[f"line{line}-{lang or 'text'}" for lang, _, line in README_BLOCKS],
)
def test_readme_block(language: str, body: str, line: int, tmp_path: Path) -> None:
    if language == "python":
        compile(body, f"README.md:{line}", "exec")
        assert "airflow" not in body, (
            "the Airflow example lives in orchestration/airflow/, point to it"
        )
    elif language == "sh":
        script = tmp_path / "block.sh"
        script.write_text(body)
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"README.md:{line}: {result.stderr}"
    elif language == "cron":
        jobs = job_lines(body)
        assert jobs, f"README.md:{line}: no job line"
        for job in jobs:
            parse_line(job)
    else:
        assert language == "", f"README.md:{line}: unchecked language {language!r}"


def test_bash_n_and_cron_parser_reject_broken_blocks(tmp_path: Path) -> None:
    """The checks can fail: a broken shell line and a broken cron line are caught."""
    script = tmp_path / "bad.sh"
    script.write_text("if true; then echo\n")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode != 0
    for bad in ("61 0 * * * cmd", "30 0 * * cmd", "*/0 * * * * cmd", "30 24 * * * cmd"):
        with pytest.raises(ValueError):
            parse_line(bad)
