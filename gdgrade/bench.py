"""``python -m gdgrade.bench [N] [ASSIGNMENT] [--workers W]``: grading throughput.

Grades N copies of the assignment's solution (as students would submit them: the release with
the answers filled in) in a temporary copy of the course with ``python -m gdgrade grade``'s
engine, and prints submissions per minute (the target of issue 13: at least 30 a minute of
one chapter exercise on 2 cores) with the time per submission. The setup that a class pays
once per assignment (registering it in the gradebook, building the job template) is timed
apart and printed with the rate it gives when included. Exits 1 unless every copy earned
full marks (a broken copy would time a different workload).
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from gdgrade.batch import grade_all, prepare_assignment
from gdgrade.course import REPO_ROOT


def answered_release(root: Path, assignment: str) -> nbformat.NotebookNode:
    """The released notebook with every answer cell replaced by the solution's."""
    solution = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", 4)
    release = nbformat.read(root / "exercises" / assignment / f"{assignment}.ipynb", 4)
    answers = {c.metadata.nbgrader["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in release.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = "\n".join(
                line for line in answers[grade_id].splitlines()
                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    return release


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gdgrade.bench", description=__doc__)
    parser.add_argument("count", nargs="?", type=int, default=24)
    parser.add_argument("assignment", nargs="?", default="03_ewma")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gdgrade-bench-") as tmp:
        course = Path(tmp) / "course"
        course.mkdir()
        shutil.copy(REPO_ROOT / "nbgrader_config.py", course)
        shutil.copytree(REPO_ROOT / "solutions", course / "solutions")
        downloads = Path(tmp) / "downloads"
        downloads.mkdir()
        nb = answered_release(REPO_ROOT, args.assignment)
        for i in range(args.count):
            nbformat.write(nb, downloads / f"student{i:03d}_{args.assignment}.ipynb")
        start = time.perf_counter()  # once per assignment: registration and the job template
        prepare_assignment(course, args.assignment)  # grade_all then finds both done
        setup = time.perf_counter() - start
        start = time.perf_counter()
        summary = grade_all(course, downloads, workers=args.workers, progress=False)
        elapsed = time.perf_counter() - start
        for path in course.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    graded = len(summary.graded)
    print(f"{graded} of {args.count} submissions of {args.assignment} graded on "
          f"{args.workers} workers in {elapsed:.1f} s: {60 * graded / elapsed:.1f} per minute "
          f"({elapsed / max(graded, 1):.2f} s each; target: 30 per minute on 2 cores)")
    print(f"setup, once per assignment (registration and job template): {setup:.1f} s; with it, "
          f"{60 * graded / (elapsed + setup):.1f} per minute")
    partial = [(student, score, total) for student, _, score, total in summary.graded
               if score != total]
    if partial:  # the answered release must earn full marks, or the timing means nothing
        print(f"{len(partial)} submissions did not get full marks, e.g. {partial[0]}")
    if summary.failed:
        print(summary.text())
    return 0 if graded == args.count and not partial else 1

if __name__ == "__main__":
    raise SystemExit(main())
