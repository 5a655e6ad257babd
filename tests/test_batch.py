"""``python -m gdgrade grade``: a whole class in one command (gdgrade/batch.py).

A temporary course receives LMS-style downloads of 03_ewma (a correct and a wrong student, a
file that is not JSON, one of nbformat 3, one inside a zip archive) (dishonest submissions are
tests/test_adversarial.py's). One run grades them on two local workers, writes the gradebook,
autograded notebooks, feedback and grades.csv, and reports what it could not grade; a rerun
grades only what is missing; two of them and a renamed notebook, in nbgrader's layout, on a
local dask cluster (two workers on loopback) get the same grades and the renaming reported.
"""

import csv
import json
import subprocess
import sys
import zipfile

import course_roundtrip as roundtrip
import nbformat
import pytest

from gdgrade import batch

ASSIGNMENT = "03_ewma"
POINTS = {"ewma_tests": 4.0, "corrected_tests": 4.0, "window_tests": 1.0}
WRONG_EWMA = """
def ewma(theta, beta, bias_correction=False):
    import numpy as np
    return np.cumsum(theta) / np.arange(1, len(theta) + 1)
"""


def _write(path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = roundtrip.make_course(tmp_path_factory.mktemp("batch_course"))
    downloads = root / "downloaded"
    _write(downloads / f"ann_{ASSIGNMENT}.ipynb", roundtrip.answered(ASSIGNMENT, {}))
    _write(downloads / f"bob_{ASSIGNMENT}.ipynb",
           roundtrip.answered(ASSIGNMENT, {"ewma_answer": WRONG_EWMA}))
    (downloads / f"broken_{ASSIGNMENT}.ipynb").write_text('{"cells": [', encoding="utf-8")
    old = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [], "cells": []}
    (downloads / f"old_{ASSIGNMENT}.ipynb").write_text(json.dumps(old), encoding="utf-8")
    with zipfile.ZipFile(downloads / "archive.zip", "w") as archive:
        archive.writestr(f"zoe_{ASSIGNMENT}.ipynb",
                         nbformat.writes(roundtrip.answered(ASSIGNMENT, {})))
    yield root
    roundtrip.make_writable(root)


@pytest.fixture(scope="module")
def graded(course):
    summary = batch.grade_all(course, course / "downloaded", workers=2, progress=False)
    return course, summary


def totals(summary):
    return {student: (score, total) for student, _, score, total in summary.graded}


@pytest.mark.slow
def test_every_gradable_submission_is_graded_and_the_rest_reported(graded):
    _course, summary = graded
    got = totals(summary)
    bob = got.pop("bob")
    assert got == {"ann": (9.0, 9.0), "zoe": (9.0, 9.0)}
    assert bob[0] < 9.0 and bob[1] == 9.0
    failed = {student: why for student, _, why in summary.failed}
    assert set(failed) == {"broken", "old"}
    assert "not valid JSON" in failed["broken"]
    assert "nbformat version 3" in failed["old"]
    assert summary.held == []
    text = summary.text()
    assert "failed to grade: 2" in text and "held for manual grading: 0" in text


@pytest.mark.slow
def test_the_course_gets_gradebook_files_and_csv(graded):
    course, _ = graded
    scores, manual = roundtrip.gradebook_grades(course, ASSIGNMENT, ["ann", "bob"])
    assert scores["ann"] == POINTS
    assert scores["bob"]["ewma_tests"] == 0.0
    assert not any(manual["ann"].values())
    for student in ("ann", "bob", "zoe"):
        assert (course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
        assert (course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
        html = (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert "HIDDEN TESTS" not in html
    with open(course / "grades.csv", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert float(rows["bob"]["score"]) == sum(scores["bob"].values())
    assert rows["ann"]["needs_manual_grade"] == ""


@pytest.mark.slow
def test_a_rerun_grades_only_what_is_missing(graded):
    course, _ = graded
    again = batch.grade_all(course, course / "downloaded", workers=2, progress=False)
    assert again.graded == [] and again.skipped == 3
    batch._done_mark(course, "bob", ASSIGNMENT).unlink()  # as if killed before bob's merge
    resumed = batch.grade_all(course, course / "downloaded", workers=2, progress=False)
    assert set(totals(resumed)) == {"bob"} and resumed.skipped == 2


@pytest.fixture(scope="module")
def on_a_cluster(graded, tmp_path_factory):
    """ann's and bob's downloads, and kim's copy under another name, in nbgrader's layout,
    graded in a fresh course on a local dask cluster of two worker processes (two jobs: ann and
    bob, then kim)."""
    import distributed

    course, local = graded
    tmp = tmp_path_factory.mktemp("cluster")
    folder = tmp / "submitted"
    for student in ("ann", "bob"):
        download = course / "downloaded" / f"{student}_{ASSIGNMENT}.ipynb"
        (folder / student / ASSIGNMENT).mkdir(parents=True)
        (folder / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").write_bytes(download.read_bytes())
    _write(folder / "kim" / ASSIGNMENT / "my_copy.ipynb", roundtrip.answered(ASSIGNMENT, {}))
    jobs_course = roundtrip.make_course(tmp / "course")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        remote = batch.grade_all(jobs_course, folder, scheduler=cluster.scheduler_address,
                                 progress=False, batch_size=2)
    yield local, remote
    roundtrip.make_writable(jobs_course)


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_grades(on_a_cluster):
    local, remote = on_a_cluster
    expected = {s: t for s, t in totals(local).items() if s in ("ann", "bob")}
    assert {s: t for s, t in totals(remote).items() if s != "kim"} == expected
    assert remote.failed == []


@pytest.mark.slow
def test_a_renamed_notebook_in_nbgrader_layout_is_graded_and_reported(on_a_cluster):
    _, remote = on_a_cluster
    assert totals(remote)["kim"] == (9.0, 9.0)
    assert any("submitted as my_copy.ipynb" in note for note in remote.notes), remote.notes


def test_the_command_line_reports_a_missing_folder(tmp_path):
    process = subprocess.run([sys.executable, "-m", "gdgrade", "grade", str(tmp_path / "none")],
                             capture_output=True, text=True, check=False)
    assert process.returncode == 2 and "no folder" in process.stderr


def test_submissions_are_found_in_both_layouts(tmp_path):
    nb = nbformat.writes(nbformat.v4.new_notebook())
    (tmp_path / "a" / "01_losses").mkdir(parents=True)
    (tmp_path / "a" / "01_losses" / "01_losses.ipynb").write_text(nb)
    (tmp_path / "jane_doe_02_sgd.ipynb").write_text(nb)
    (tmp_path / "stray.ipynb").write_text(nb)
    found = batch.find_submissions(tmp_path, {"01_losses", "02_sgd"})
    assert [(s.student, s.assignment, s.problem) for s in found] == [
        ("a", "01_losses", ""), ("jane_doe", "02_sgd", "")]


@pytest.mark.parametrize("assignment", [p.name for p in sorted((roundtrip.ROOT / "solutions")
                                                               .iterdir()) if p.is_dir()])
def test_the_benchmark_submits_the_solutions_answers_as_valid_code(assignment):
    """The benchmark times the grading of correct submissions: every answer cell of its copy is
    the solution's, without the markers, and parses (a bad copy once made it time notebooks
    whose answers raised IndentationError)."""
    import ast

    from gdgrade.bench import answered_release

    nb = answered_release(roundtrip.ROOT, assignment)
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
               and c.cell_type == "code"]
    assert answers
    for cell in answers:
        assert "### BEGIN SOLUTION" not in cell.source and "NotImplementedError()" not in cell.source
        ast.parse(cell.source)


def test_the_benchmark_copy_passes_the_instructors_tests():
    """Run in one namespace (a fresh interpreter: the setup cell installs the grader's guard),
    the copy's cells with the grade cells of the solution, hidden tests included, raise
    nothing: the benchmark's submissions earn full marks."""
    script = """
import nbformat
from gdgrade.bench import answered_release
from gdgrade.course import REPO_ROOT
solution = nbformat.read(REPO_ROOT / "solutions" / "03_ewma" / "03_ewma.ipynb", 4)
tests = {c.metadata.nbgrader["grade_id"]: c.source for c in solution.cells
         if c.metadata.get("nbgrader", {}).get("grade")}
namespace = {}
for cell in answered_release(REPO_ROOT, "03_ewma").cells:
    if cell.cell_type == "code":
        exec(tests.get(cell.metadata.get("nbgrader", {}).get("grade_id"), cell.source), namespace)
print("every cell ran")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "every cell ran" in done.stdout, done.stderr[-2000:]


def test_a_gradebook_opens_without_the_venv_on_path(tmp_path, monkeypatch):
    """Opening a new gradebook runs nbgrader's ``alembic`` as a subprocess: with the venv's
    python called by its path (not activated), ``python -m gdgrade.bench`` failed with
    FileNotFoundError: 'alembic'."""
    from gdgrade.nbgrader_plugins import gradebook_url

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with batch._gradebook(gradebook_url(tmp_path)) as gb:
        assert gb.assignments == []
