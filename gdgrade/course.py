"""Instructor commands for the nbgrader side of the course.

    python -m gdgrade release [ASSIGNMENT ...]
        Regenerate ``exercises/<id>/`` from ``solutions/<id>/`` with ``nbgrader
        generate_assignment --force`` for every assignment (or the ones named), then check that
        no solution or hidden test leaked into the student version. ``make exercises`` runs it.

    python -m gdgrade scan PATH [PATH ...] [--trusted DIR ...]
        Statically scan submitted notebooks (files or directories, searched recursively) for
        code that tampers with grading -- the attacks that in-process tests cannot stop (see
        ``gdgrade.grading``): IPython hooks (``set_custom_exc``, AST/input transformers, shell
        method overrides, event callbacks), trace/profile hooks and frame inspection,
        ``sys.modules``, ``importlib``/``inspect``/``gc``/``ctypes``/``builtins``, imports of
        gdlib/torch/scipy/sklearn, ``exec``/``eval``/``setattr``/``vars`` (called or merely
        named), ``getattr`` with a computed or private name, ``__dict__``, ``__class__``,
        ``__globals__`` (also as strings), private ``_names`` of any imported module, the
        grading module used other than by reading and calling its public functions (an
        alias ``g = grading``, ``vars(grading)``, ``f(grading)``, ``grading.x.y``),
        assignments to attributes of numpy, builtins, sys, math, gdlib, torch or the grading
        module (also through an alias: ``t = np.testing; t.assert_allclose = ...``), and
        rebinding a name the locked cells of the same notebook define (``check_steps =
        lambda *a, **k: None``; see ``course_names``). Cells whose source is identical to a
        locked cell of the course (``exercises/`` and ``solutions/`` under the course root,
        or ``--trusted`` directories) are skipped: that is the instructor's code (their
        imports still count, e.g. ``from gdgrade import grading``). Prints one line per finding
        and exits with status 1 when there is any.

    python -m gdgrade grade [SUBMISSIONS] [--workers N] [--scheduler ADDRESS] [--force]
        Grade every submission found (nbgrader's submitted/ layout or LMS downloads), in
        parallel locally or on a dask.distributed cluster, into the course's autograded/,
        feedback/, gradebook and grades.csv; resumable; prints a summary. See gdgrade.batch.

    python -m gdgrade held [ASSIGNMENT]
        Lists, from the course's gradebook, the submitted notebooks with grades that need
        manual grading -- student, assignment, notebook, the grade cells, and the scan's
        findings from the comments -- and exits with status 1 when there is any (2 when there
        is no gradebook or no such assignment).

The scan itself is ``gdgrade.scan``; the nbgrader plug-ins (the autograde-time scan, the CSV
export with holds) are ``gdgrade.nbgrader_plugins``.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from nbgrader.api import MissingEntry

from gdgrade.nbgrader_plugins import gradebook_url, held_submissions
from gdgrade.scan import locked_names, locked_sources, scan_paths

REPO_ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# Release
# --------------------------------------------------------------------------------------------

LEAK_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def assignments(root: Path = REPO_ROOT) -> list:
    """Assignment ids: the folders of ``solutions/`` that hold a notebook."""
    solutions = Path(root) / "solutions"
    return sorted(p.name for p in solutions.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def nbgrader_env() -> dict:
    """The environment for an nbgrader subprocess: this interpreter's bin/ first on PATH
    (nbgrader runs alembic and jupyter kernels as subprocesses)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_nbgrader(args, root: Path, check: bool = True, env=None) -> subprocess.CompletedProcess:
    """``nbgrader ARGS`` in course directory ``root``, with its output captured (``env``:
    variables to add to its environment)."""
    process = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=root, env={**nbgrader_env(), **(env or {})},
        check=False, capture_output=True, text=True,
    )
    if check and process.returncode != 0:
        raise RuntimeError(
            f"nbgrader {' '.join(args)} failed ({process.returncode}):\n{process.stdout}"
            f"{process.stderr}"
        )
    return process


def leaked_markers(directory: Path) -> list:
    """``(file, marker)`` for every solution/hidden-test marker left in the notebooks."""
    leaks = []
    for path in sorted(Path(directory).rglob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        leaks += [(str(path), marker) for marker in LEAK_MARKERS if marker in text]
    return leaks


def release(root: Path = REPO_ROOT, ids=None) -> list:
    """Regenerate ``exercises/<id>`` for each assignment id (all by default); return the ids."""
    root = Path(root)
    ids = list(ids) if ids else assignments(root)
    folders = sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir())
    # One nbgrader run for the whole course when the ids are every folder of solutions/ (its
    # pattern "*"): nbgrader's start-up, a few seconds, is paid once instead of once per id.
    for pattern in ["*"] if sorted(ids) == folders else ids:
        run_nbgrader(["generate_assignment", pattern, "--force"], root)
    for assignment in ids:
        leaks = leaked_markers(root / "exercises" / assignment)
        if leaks:
            raise RuntimeError(f"solutions or hidden tests leaked into the release: {leaks}")
    return ids


def _course_root() -> Path:
    cwd = Path.cwd()
    return cwd if (cwd / "nbgrader_config.py").exists() else REPO_ROOT


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gdgrade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    release_parser = commands.add_parser("release", help="regenerate exercises/ with nbgrader")
    release_parser.add_argument("assignment", nargs="*", help="assignment ids (default: all)")
    scan_parser = commands.add_parser("scan", help="scan submissions for grading tampering")
    scan_parser.add_argument("path", nargs="+", type=Path)
    scan_parser.add_argument("--trusted", action="append", type=Path, default=None,
                             help="directories of the course's own notebooks (default: "
                                  "exercises/ and solutions/ of the course root)")
    grade_parser = commands.add_parser(
        "grade", help="grade every submission found, in parallel (see gdgrade.batch)")
    grade_parser.add_argument("submissions", nargs="?", type=Path, default=None,
                              help="nbgrader's submitted/ layout or LMS downloads "
                                   "(default: submitted/)")
    grade_parser.add_argument("--workers", type=int, default=2,
                              help="local parallel jobs (default 2)")
    grade_parser.add_argument("--scheduler", help="address of a dask.distributed scheduler, "
                                                  "e.g. tcp://10.0.0.5:8786")
    grade_parser.add_argument("--force", action="store_true",
                              help="regrade submissions graded before")
    held_parser = commands.add_parser(
        "held", help="list submissions held for manual grading (exit status 1 if any)")
    held_parser.add_argument("assignment", nargs="?", help="assignment id (default: all)")
    args = parser.parse_args(argv)
    root = _course_root()
    if args.command == "release":
        for assignment in release(root, args.assignment):
            print(f"released exercises/{assignment}")
        return 0
    if args.command == "held":
        return _print_held(root, args.assignment)
    if args.command == "grade":
        from gdgrade.batch import grade_all

        folder = args.submissions or root / "submitted"
        if not folder.is_dir():
            print(f"no folder {folder}", file=sys.stderr)
            return 2
        summary = grade_all(root, folder, workers=args.workers, scheduler=args.scheduler,
                            force=args.force)
        print(summary.text())
        return 1 if summary.failed else 0
    trusted_dirs = args.trusted or [root / "exercises", root / "solutions"]
    findings = scan_paths(args.path, locked_sources(*trusted_dirs), locked_names(*trusted_dirs))
    for finding in findings:
        print(finding)
    print(f"{len(findings)} finding(s)", file=sys.stderr)
    return 1 if findings else 0


def _print_held(root: Path, assignment: str | None) -> int:
    if not (Path(root) / "gradebook.db").exists():
        print(f"no gradebook at {Path(root) / 'gradebook.db'}: nothing autograded yet",
              file=sys.stderr)
        return 2
    try:
        held = held_submissions(gradebook_url(root), assignment)
    except MissingEntry:
        print(f"the gradebook has no assignment {assignment!r}", file=sys.stderr)
        return 2
    for entry in held:
        print(entry)
    print(f"{len(held)} notebook(s) held for manual grading", file=sys.stderr)
    return 1 if held else 0


if __name__ == "__main__":
    sys.exit(main())
