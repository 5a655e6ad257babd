"""Shared fixtures: one strict build of the book per test session (only if a test asks for it)."""

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class BookBuild:
    """Result of ``jupyter-book build``: exit code, its output streams, the HTML folder."""

    returncode: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)  # Sphinx warnings and errors, notebook kernel messages
    html: Path

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of stdout (progress, summary) and of stderr (the warnings: the cause)."""
        return "\n".join(
            f"--- {name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])
            for name, text in (("stdout", self.stdout), ("stderr", self.stderr)))


@pytest.fixture(scope="session")
def book_build(tmp_path_factory) -> BookBuild:
    """Build the book from scratch (fresh output folder and execution cache), strict as in CI."""
    out = tmp_path_factory.mktemp("book")
    bin_dir = Path(sys.executable).parent  # the venv: jupyter-book and the kernels live there
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONDONTWRITEBYTECODE="1")
    command = [str(bin_dir / "jupyter-book"), "build", str(REPO), "--path-output", str(out),
               "-n", "-W", "--keep-going"]
    proc = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3600)
    return BookBuild(proc.returncode, proc.stdout, proc.stderr, out / "_build" / "html")


@pytest.fixture(scope="session")
def book_html(book_build) -> Path:
    """The HTML folder of a build that passed (fails the requesting test otherwise)."""
    if book_build.returncode != 0:
        pytest.fail(f"jupyter-book build exited with {book_build.returncode}; end of its log:\n"
                    f"{book_build.log_tail()}", pytrace=False)
    return book_build.html
