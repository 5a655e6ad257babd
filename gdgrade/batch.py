"""Grading a whole class in one command, in parallel, locally or on a dask cluster.

    python -m gdgrade grade [SUBMISSIONS] [--workers N] [--scheduler ADDRESS] [--force]

``SUBMISSIONS`` (default ``submitted/``) is either nbgrader's layout,
``<student>/<assignment>/<notebook>.ipynb``, or a folder of files downloaded from a learning
platform, named ``<student>_<assignment>.ipynb`` (zip archives of them too), searched
recursively. Every assignment found is graded; the results land in the course as if
``nbgrader autograde`` and ``generate_feedback`` had run there: ``submitted/``,
``autograded/``, ``feedback/`` (hidden tests cleared), the gradebook, and ``grades.csv``
(``nbgrader export``). A summary ends the run: graded, held for manual grading and why, failed
to grade and why.

How. Submissions are cut into small batches (jobs). A job is plain data -- the assignment's
*template course* (``nbgrader_config.py`` and a gradebook made by ``generate_assignment``, as
a tar archive) and the batch's notebooks as bytes -- and its result too (scores, flags,
comments, the autograded notebook and feedback as bytes), so that a job runs anywhere gdgrade
is installed: ``grade_batch`` unpacks the template in a temporary folder, runs one ``nbgrader
autograde`` (sandboxed kernels, scan, out-of-process verification: ``nbgrader_config.py``) and
one ``generate_feedback`` there, and reads the temporary gradebook. Jobs run on ``--workers``
local threads (each drives nbgrader subprocesses), or with ``--scheduler`` on an existing
``dask.distributed`` cluster. The main process merges each result into the course as it
arrives and then marks the submission done (``autograded/<student>/<assignment>/.gdgrade``):
a crash or a kill loses only the jobs that were running, and a rerun grades only what is
missing (``--force`` regrades everything).

Submissions that cannot be graded are reported, never a crash of the batch: a file that is
not JSON, not a notebook, of an nbformat version other than 4, or in an assignment folder
under another name (graded under the assignment's name, and said so).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import tarfile
import tempfile
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from html import escape as html_escape
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning

from gdgrade.course import assignments, run_nbgrader
from gdgrade.nbgrader_plugins import _scan_report, gradebook_url
from gdgrade.verify import verify_notebook

DONE_MARK = ".gdgrade"
BATCH_SIZE = 12
SALT_VARIABLE = "GDCOURSE_GRADING_SALT"
LMS_NAME = re.compile(r"^(?P<student>.+)_(?P<assignment>\d\d_[^/]+)\.ipynb$")


# --- finding the submissions -------------------------------------------------------------------


@dataclass
class Submission:
    """One student's notebook for one assignment, read and checked (``problem`` says why it
    cannot be graded; ``note`` records something the summary should mention)."""

    student: str
    assignment: str
    data: bytes = b""
    problem: str = ""
    note: str = ""


def _check_notebook(data: bytes) -> str:
    """Why ``data`` is not a gradable notebook ("" when it is)."""
    try:
        content = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        return f"not a notebook: the file is not valid JSON ({error})"
    if not isinstance(content, dict) or "cells" not in content:
        return "not a notebook: no cells"
    if content.get("nbformat") != 4:
        return f"nbformat version {content.get('nbformat')!r}; nbgrader grades version 4"
    try:
        nbformat.validate(nbformat.reads(data.decode("utf-8"), as_version=4))
    except Exception as error:  # noqa: BLE001 - any validation error is reported
        return f"not a valid notebook: {str(error).splitlines()[0]}"
    return ""


def find_submissions(folder: Path, known) -> list:
    """The submissions in ``folder`` (nbgrader's layout or LMS downloads, see the module
    docstring) for the assignments ``known``."""
    folder = Path(folder)
    found: dict = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or ".ipynb_checkpoints" in path.parts:
            continue
        relative = path.relative_to(folder)
        if len(relative.parts) == 3 and relative.parts[1] in known and path.suffix == ".ipynb":
            student, assignment, name = relative.parts
            note = "" if name == f"{assignment}.ipynb" else (
                f"submitted as {name}, graded as {assignment}.ipynb")
            found.setdefault((student, assignment), (path.read_bytes(), note))
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    match = LMS_NAME.match(Path(member).name)
                    if match and match["assignment"] in known:
                        key = (match["student"], match["assignment"])
                        found.setdefault(key, (archive.read(member), ""))
        elif (match := LMS_NAME.match(path.name)) and match["assignment"] in known:
            found.setdefault((match["student"], match["assignment"]), (path.read_bytes(), ""))
    submissions = []
    for (student, assignment), (data, note) in sorted(found.items()):
        submissions.append(Submission(student, assignment, data, _check_notebook(data), note))
    return submissions


# --- one job: a batch of one assignment, graded in a temporary course ---------------------------


_TEMPLATES: dict = {}  # (config, solution folder) digest -> template archive, per process


def template_course(root: Path, assignment: str) -> bytes:
    """A tar archive of a course that can autograde ``assignment``: ``nbgrader_config.py`` and
    a gradebook in which ``generate_assignment`` registered it (no solutions folder: the
    gradebook holds the test cells). Made once per process for the same sources."""
    digest = hashlib.sha256((Path(root) / "nbgrader_config.py").read_bytes())
    for path in sorted((Path(root) / "solutions" / assignment).rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    key = digest.hexdigest()
    if key not in _TEMPLATES:
        _TEMPLATES[key] = _make_template(root, assignment)
    return _TEMPLATES[key]


def _make_template(root: Path, assignment: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="gdgrade-template-") as tmp:
        course = Path(tmp)
        shutil.copy(Path(root) / "nbgrader_config.py", course)
        shutil.copytree(Path(root) / "solutions" / assignment, course / "solutions" / assignment)
        run_nbgrader(["generate_assignment", assignment, "--force"], course)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(course / "nbgrader_config.py", "nbgrader_config.py")
            tar.add(course / "gradebook.db", "gradebook.db")
        return buffer.getvalue()


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""


def grade_batch(template: bytes, assignment: str, notebooks: dict,
                salt: str | None = None) -> dict:
    """Autograde ``notebooks`` ({student: notebook bytes}) of ``assignment`` in a temporary
    course made from ``template``; plain data back: {student: {"scores", "max", "manual",
    "comments", "autograded", "feedback", "error"}} (see the module docstring)."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="gdgrade-batch-") as tmp:
        course = Path(tmp)
        with tarfile.open(fileobj=io.BytesIO(template), mode="r:gz") as tar:
            tar.extractall(course, filter="data")
        for student, data in notebooks.items():
            path = course / "submitted" / student / assignment / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True)
            path.write_bytes(data)
        env = {SALT_VARIABLE: salt} if salt else {}
        graded = run_nbgrader(["autograde", assignment], course, check=False, env=env)
        run_nbgrader(["generate_feedback", assignment], course, check=False, env=env)
        log = graded.stdout + graded.stderr
        with _gradebook(gradebook_url(course)) as gb:
            for student in notebooks:
                results[student] = _batch_result(gb, course, assignment, student, log)
        for path in course.rglob("*"):  # autograde writes read-only files
            path.chmod(0o755 if path.is_dir() else 0o644)
    return results


def _batch_result(gb, course: Path, assignment: str, student: str, log: str) -> dict:
    autograded = _read(course / "autograded" / student / assignment / f"{assignment}.ipynb")
    try:
        notebook = gb.find_submission_notebook(assignment, assignment, student)
    except MissingEntry:
        notebook = None
    if notebook is None or not autograded:
        return _verified_only(gb, course, assignment, student, log)
    return {
        "scores": {g.name: g.score for g in notebook.grades},
        "max": {g.name: g.max_score for g in notebook.grades},
        "manual": {g.name: bool(g.needs_manual_grade) for g in notebook.grades},
        "comments": {c.name: c.auto_comment or "" for c in notebook.comments},
        "autograded": autograded,
        "feedback": _read(course / "feedback" / student / assignment / f"{assignment}.html"),
        "error": "",
    }


KERNEL_DIED_NOTE = ("Held for manual grading: nbgrader could not run this notebook to its end "
                    "(its kernel died or it could not be executed), so it has no in-kernel "
                    "results; the scores are those of the out-of-process verification.")


def _verified_only(gb, course: Path, assignment: str, student: str, log: str) -> dict:
    """The result of a submission nbgrader failed to autograde (a kernel that died, a
    notebook it could not execute): graded by the out-of-process verification alone, and held
    for manual grading with the reason. An error only when even that is impossible."""
    source = gb.find_notebook(assignment, assignment)
    texts = {cell.name: cell.source for cell in source.source_cells}
    grade_cells = {cell.name: (texts.get(cell.name, ""), float(cell.max_score))
                   for cell in source.grade_cells if cell.cell_type == "code"}
    path = course / "submitted" / student / assignment / f"{assignment}.ipynb"
    try:
        nb = nbformat.read(path, as_version=4)
        verified = verify_notebook(nb, grade_cells, root=course)
    except Exception as error:  # noqa: BLE001 - reported in the summary
        lines = [line for line in log.splitlines() if f"'{student}'" in line]
        return {"error": f"could not be graded ({type(error).__name__}: {error}); nbgrader: "
                         + (" | ".join(lines[-2:]) or "no output")}
    died = "DeadKernelError" in log
    why = "its kernel died" if died else "nbgrader could not execute it"
    note = KERNEL_DIED_NOTE.replace("(its kernel died or it could not be executed)", f"({why})")
    report = "\n".join(f"{r.grade_id}: {r.score:g} of {r.points:g}"
                       + (f" ({r.message})" if r.message else "") for r in verified)
    html = ("<html><body><h1>Feedback</h1><p>" + html_escape(note) + "</p><pre>"
            + html_escape(report) + "</pre></body></html>")
    return {
        "scores": {r.grade_id: r.score for r in verified},
        "max": {r.grade_id: r.points for r in verified},
        "manual": {r.grade_id: True for r in verified},
        "comments": {cell.name: note + "\n" + report for cell in source.solution_cells},
        "autograded": path.read_bytes(),
        "feedback": html.encode(),
        "error": "",
        "note": why,
    }


# --- merging into the course -------------------------------------------------------------------


def _done_mark(root: Path, student: str, assignment: str) -> Path:
    return Path(root) / "autograded" / student / assignment / DONE_MARK


def merge(root: Path, assignment: str, student: str, result: dict) -> None:
    """Write one graded submission into the course: files, gradebook, then the done mark."""
    root = Path(root)
    for folder, name, key in (("autograded", f"{assignment}.ipynb", "autograded"),
                              ("feedback", f"{assignment}.html", "feedback")):
        path = root / folder / student / assignment / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.chmod(0o644)
        if result[key]:
            path.write_bytes(result[key])
    with _gradebook(gradebook_url(root)) as gb, warnings.catch_warnings():
        # nbgrader's add_submission trips SQLAlchemy's autoflush warnings; the rows are right.
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_student(student)
        try:
            gb.find_submission(assignment, student)
        except MissingEntry:
            gb.add_submission(assignment, student)
        for grade_id, score in result["scores"].items():
            grade = gb.find_grade(grade_id, assignment, assignment, student)
            grade.auto_score, grade.manual_score = score, None
            grade.needs_manual_grade = result["manual"][grade_id]
        for cell_id, text in result["comments"].items():
            gb.find_comment(cell_id, assignment, assignment, student).auto_comment = text
        gb.db.commit()
    _done_mark(root, student, assignment).write_text("graded by python -m gdgrade grade\n")


# --- the command ------------------------------------------------------------------------------


@dataclass
class Summary:
    graded: list = field(default_factory=list)  # (student, assignment, score, max)
    held: list = field(default_factory=list)  # (student, assignment, reasons)
    failed: list = field(default_factory=list)  # (student, assignment, why)
    skipped: int = 0  # already graded (resume)
    notes: list = field(default_factory=list)

    def text(self) -> str:
        lines = [f"graded {len(self.graded)} submission(s)"
                 + (f", {self.skipped} already graded before (skipped)" if self.skipped else "")]
        for student, assignment, score, total in self.graded:
            lines.append(f"  {assignment} {student}: {score:g} / {total:g}")
        lines.append(f"held for manual grading: {len(self.held)}")
        for student, assignment, reasons in self.held:
            lines.append(f"  {assignment} {student}: " + ("; ".join(reasons) or "a flagged cell"))
        lines.append(f"failed to grade: {len(self.failed)}")
        lines += [f"  {assignment} {student}: {why}" for student, assignment, why in self.failed]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _gradebook(url: str) -> Gradebook:
    """nbgrader's ``Gradebook(url)``, with this interpreter's bin/ on PATH: opening a gradebook
    runs ``alembic`` as a subprocess, which is missing when the venv is not activated (as in
    ``.venv/bin/python -m gdgrade.bench``, or on a dask worker)."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return Gradebook(url)


def _ensure_registered(root: Path, assignment: str) -> None:
    """The course gradebook must know the assignment (``make exercises`` registers it)."""
    try:
        with _gradebook(gradebook_url(root)) as gb:
            gb.find_assignment(assignment)
            return
    except MissingEntry:
        pass
    run_nbgrader(["generate_assignment", assignment, "--force"], root)


def prepare_assignment(root: Path, assignment: str) -> bytes:
    """What grading ``assignment`` needs once: its registration in the course gradebook and the
    jobs' template course (returned). Two independent nbgrader runs of a few seconds each,
    run side by side."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        registered = pool.submit(_ensure_registered, root, assignment)
        template = template_course(root, assignment)
        registered.result()
    return template


def _batches(items, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def grade_all(root: Path, folder: Path, *, workers: int = 2, scheduler: str | None = None,
              force: bool = False, progress: bool = True, batch_size: int | None = None
              ) -> Summary:
    """Grade every submission in ``folder`` into the course at ``root``; the ``Summary``."""
    from tqdm.auto import tqdm

    root, summary = Path(root), Summary()
    submissions = find_submissions(folder, set(assignments(root)))
    todo = []
    for sub in submissions:
        if sub.problem:
            summary.failed.append((sub.student, sub.assignment, sub.problem))
        elif not force and _done_mark(root, sub.student, sub.assignment).exists():
            summary.skipped += 1
        else:
            todo.append(sub)
            if sub.note:
                summary.notes.append(f"{sub.assignment} {sub.student}: {sub.note}")
    salt = os.environ.get(SALT_VARIABLE)
    jobs = []
    for assignment in sorted({sub.assignment for sub in todo}):
        template = prepare_assignment(root, assignment)
        mine = [sub for sub in todo if sub.assignment == assignment]
        size = batch_size or max(1, min(BATCH_SIZE, math.ceil(len(mine) / workers)))
        jobs += [(assignment, template, batch) for batch in _batches(mine, size)]
    for sub in todo:  # the course keeps every submission it graded
        path = root / "submitted" / sub.student / sub.assignment / f"{sub.assignment}.ipynb"
        if not path.exists() or path.read_bytes() != sub.data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(sub.data)
    bar = tqdm(total=len(todo), unit="submission", disable=not progress)
    for assignment, batch, results in _run(jobs, workers, scheduler, salt):
        for sub in batch:
            result = results.get(sub.student, {"error": "no result"})
            if result["error"]:
                summary.failed.append((sub.student, assignment, result["error"]))
            else:
                merge(root, assignment, sub.student, result)
                summary.graded.append((sub.student, assignment, sum(result["scores"].values()),
                                       sum(result["max"].values())))
                if any(result["manual"].values()):
                    reasons = list(_scan_report(_Comment(t) for t in result["comments"].values()))
                    if result.get("note"):
                        reasons.insert(0, f"{result['note']}: graded out of process only")
                    summary.held.append((sub.student, assignment, reasons))
            bar.update(1)
    bar.close()
    if summary.graded:
        run_nbgrader(["export"], root, check=False)
    return summary


@dataclass(frozen=True)
class _Comment:
    auto_comment: str


def _run(jobs, workers: int, scheduler: str | None, salt):
    """(assignment, batch, results) for every job, as they finish."""
    def payload(batch):
        return {sub.student: sub.data for sub in batch}

    if scheduler:
        from distributed import Client
        from distributed import as_completed as dask_completed

        with Client(scheduler) as client:
            futures = {client.submit(grade_batch, template, assignment, payload(batch), salt,
                                     pure=False): (assignment, batch)
                       for assignment, template, batch in jobs}
            for future in dask_completed(futures):
                assignment, batch = futures[future]
                yield assignment, batch, _result_or_error(future.result, batch)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(grade_batch, template, assignment, payload(batch), salt):
                   (assignment, batch) for assignment, template, batch in jobs}
        for future in as_completed(futures):
            assignment, batch = futures[future]
            yield assignment, batch, _result_or_error(future.result, batch)


def _result_or_error(get, batch) -> dict:
    try:
        return get()
    except Exception as error:  # noqa: BLE001 - a job that crashed fails its batch, not the run
        return {sub.student: {"error": f"the grading job failed: {type(error).__name__}: "
                                       f"{error}"} for sub in batch}
