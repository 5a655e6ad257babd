"""Every notebook of solutions/ runs without error under `pytest --nbval-lax`.

The notebooks are globbed, so a new chapter is covered as soon as its files exist. With
`--nbval-lax` nbval only checks that each cell runs (and compares the outputs of cells marked
`# NBVAL_CHECK_OUTPUT`). The solution notebooks run their hidden tests too, so this also checks
that the instructor's answers pass them. exercises/ is left out: its notebooks fail by design
(`raise NotImplementedError()`); tests/test_exercises.py covers them. The pages of book/ are
executed once per run, by the strict book build (tests/conftest.py), which fails when a cell
raises or writes to stderr; running them here again would double the suite's time
(`.venv/bin/python -m pytest --nbval-lax book` runs them under nbval by hand).

Each notebook runs in its own pytest subprocess, so a failure names the notebook and shows
nbval's report.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(
    path.relative_to(ROOT)
    for folder in ("solutions",)
    for path in (ROOT / folder).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in path.parts and "_build" not in path.parts
)


def test_there_are_notebooks_to_check():
    assert any(p.parts[0] == "solutions" for p in NOTEBOOKS)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=str)
def test_notebook_runs_under_nbval_lax(notebook):
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
         "-p", "no:cacheprovider", "-q", str(notebook)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert process.returncode == 0, (
        f"{notebook} fails under pytest --nbval-lax:\n{process.stdout[-6000:]}{process.stderr}"
    )
