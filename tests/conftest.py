"""Shared fixtures: one strict build of the book per test run (only if a test asks for it).

``make test`` runs pytest on two workers (pytest-xdist, ``-n 2 --dist loadgroup``). The book
is built once for the whole run: the first worker that needs it builds it under a file lock in
the run's shared temporary folder, the other reads the result. Every test that uses the build
goes to one xdist group ("book"), and every other test to the group of its module (a module's
autograde round trip then runs once, on one worker), so one core builds the book while the
other grades. The pages' tests read the notebooks the build executed
(``_build/jupyter_execute``): each notebook is executed once per run.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock
from jupyter_cache import get_cache

REPO = Path(__file__).resolve().parents[1]

# Two workers on two cores: one math thread per process (and per kernel or grading process
# they start), or torch's and BLAS's one-thread-per-core defaults oversubscribe the machine.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
# nbgrader runs `alembic` and kernels as subprocesses: the venv's bin/ goes on PATH, so that
# `.venv/bin/python -m pytest` works as `make test` does without an activated venv.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")
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


    def executed(self, notebook: Path) -> Path:
        """A book notebook (a path in the repository) with the outputs the build executed.

        They are read from the build's execution cache (``_build/.jupyter_cache``): the
        notebooks myst-nb writes to ``_build/jupyter_execute`` lack their outputs when they
        came from the cache, which is how every notebook comes (book/_ext/preexecute.py)."""
        relative = Path(notebook).resolve().relative_to(REPO).with_suffix(".ipynb")
        merged = self.html.parent / "executed_from_cache" / relative
        if not merged.is_file():
            cache = get_cache(str(self.html.parent / ".jupyter_cache"))
            nb = nbformat.read(REPO / relative, as_version=4)
            try:
                _, nb = cache.merge_match_into_notebook(nb)
            except KeyError:  # not in the cache: the build's own copy, if it executed it
                nb = nbformat.read(self.html.parent / "jupyter_execute" / relative, as_version=4)
            merged.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, merged)
        return merged


def _build_book(out: Path) -> BookBuild:
    """Build the book from scratch (fresh output folder and execution cache), strict as in CI."""
    bin_dir = Path(sys.executable).parent  # the venv: jupyter-book and the kernels live there
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONDONTWRITEBYTECODE="1")
    # Execute the notebooks on every core first (book/_ext/preexecute.py), as `make book` does.
    subprocess.run([sys.executable, str(REPO / "book" / "_ext" / "preexecute.py"), str(out)],
                   check=False, cwd=REPO, env=env, capture_output=True, timeout=3600)
    command = [str(bin_dir / "jupyter-book"), "build", str(REPO), "--path-output", str(out),
               "-n", "-W", "--keep-going"]
    proc = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3600)
    return BookBuild(proc.returncode, proc.stdout, proc.stderr, out / "_build" / "html")


@pytest.fixture(scope="session")
def book_build(tmp_path_factory, worker_id) -> BookBuild:
    """The run's one strict build of the book (see the module docstring)."""
    if worker_id == "master":  # not distributed
        return _build_book(tmp_path_factory.mktemp("book"))
    shared = tmp_path_factory.getbasetemp().parent
    result = shared / "book.json"
    with FileLock(str(shared / "book.lock")):
        if not result.is_file():
            build = _build_book(shared / "book")
            fields = {"returncode": build.returncode, "stdout": build.stdout,
                      "stderr": build.stderr, "html": str(build.html)}
            result.write_text(json.dumps(fields), encoding="utf-8")
        fields = json.loads(result.read_text(encoding="utf-8"))
    return BookBuild(fields["returncode"], fields["stdout"], fields["stderr"],
                     Path(fields["html"]))


@pytest.fixture(scope="session")
def released_course(tmp_path_factory, worker_id) -> Path:
    """A course in which ``gdgrade.course.release`` regenerated every exercise and registered
    every assignment in the gradebook: made once per run (under a lock shared by the workers,
    as the book build), read by the round trips, which copy its gradebook instead of running
    nbgrader's ``generate_assignment`` again. Treat it as read-only."""
    import course_roundtrip as roundtrip

    from gdgrade import course

    def make(root: Path) -> Path:
        course.release(roundtrip.make_course(root))
        (root / "released.ok").touch()
        return root

    if worker_id == "master":
        return make(tmp_path_factory.mktemp("released"))
    shared = tmp_path_factory.getbasetemp().parent
    with FileLock(str(shared / "released.lock")):
        if not (shared / "released" / "released.ok").is_file():
            make(shared / "released")
    return shared / "released"


def pytest_itemcollected(item):
    """xdist groups: "book" for the tests that use the build, the module's name otherwise.

    Marked as each test is collected: xdist's worker turns the marks into group names (a
    ``@group`` suffix of the node id) in its own ``pytest_collection_modifyitems``, which runs
    before a conftest's hook of that name. Marks added later, or a pytest whose node ids xdist
    3.8 cannot rename (pytest 9, hence the pin in requirements.txt), make every test a group of
    its own: module fixtures are set up again on each worker and one worker waits idle for the
    other's book build. tests/test_suite.py checks that the groups hold."""
    uses_book = {"book_build", "book_html"} & set(getattr(item, "fixturenames", ()))
    group = "book" if uses_book else item.module.__name__
    item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def book_html(book_build) -> Path:
    """The HTML folder of a build that passed (fails the requesting test otherwise)."""
    if book_build.returncode != 0:
        pytest.fail(f"jupyter-book build exited with {book_build.returncode}; end of its log:\n"
                    f"{book_build.log_tail()}", pytrace=False)
    return book_build.html
