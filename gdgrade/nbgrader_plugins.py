"""nbgrader plug-ins of the course, registered in ``nbgrader_config.py``.

``FlagSuspiciousCode``
    Autograde step: the scan of ``gdgrade.scan`` over the student's cells; a flagged submission
    keeps its automatic scores but all its grades are marked as needing manual grading, and the
    findings are written to the log and to the comments of its answer cells.
``VerifyAnswers``
    Autograde step: the out-of-process verification of ``gdgrade.verify``; the verified score
    of each grade cell replaces nbgrader's in-kernel one in the gradebook, and a difference is
    written to the log and to the notebook's comments.
``CsvExportWithHolds``
    ``nbgrader export`` with a column ``needs_manual_grade``: "yes" for a submission whose score
    is not final. A hold is cleared by grading the held cells in the formgrader (saving a score
    clears a cell's flag), or by autograding again once the code the scan found is gone.
``held_submissions``
    What ``python -m gdgrade held`` lists.
"""

from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.plugins import CsvExportPlugin
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Float

from gdgrade.scan import course_names, scan_notebook
from gdgrade.verify import CALL_TIMEOUT, verify_notebook

# --------------------------------------------------------------------------------------------
# nbgrader integration
# --------------------------------------------------------------------------------------------


HELD_NOTE = "Held for manual grading; the scan found:"


class FlagSuspiciousCode(NbGraderPreprocessor):
    """Autograde step: scan the student's cells; hold a flagged submission for manual grading.

    Runs after ``SaveAutoGrades``. The instructor's cells are trusted: the locked cells of the
    gradebook (identified by grade_id: nbgrader has restored their source, and re-inserted the
    deleted ones with a note in front) and any cell whose source equals a stored one; the
    names the stored locked cells define must not be rebound (``course_names``). A
    finding marks every grade of the notebook as needing manual grading and puts the findings
    in the answer cells' comments.
    """

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        notebook, assignment, student = info["notebook"], info["assignment"], info["student"]
        with Gradebook(info["db_url"]) as gb:
            source = gb.find_notebook(notebook, assignment)
            trusted = {cell.source.strip() for cell in source.source_cells}
            locked = {cell.name for cell in source.source_cells if cell.locked}
            names = course_names(cell.source for cell in source.source_cells
                                 if cell.locked and cell.cell_type == "code")
            findings = scan_notebook(nb, trusted, f"{student}/{assignment}/{notebook}.ipynb",
                                     trusted_ids=locked, names=names)
            if not findings:
                return nb, resources
            report = "\n".join(str(f) for f in findings)
            self.log.warning("Suspicious code, held for manual grading:\n%s", report)
            submitted = gb.find_submission_notebook(notebook, assignment, student)
            for grade in submitted.grades:
                grade.needs_manual_grade = True
            for comment in submitted.comments:
                comment.auto_comment = HELD_NOTE + "\n" + report
            gb.db.commit()
        return nb, resources


VERIFIED_NOTE = "Verified outside the notebook's kernel:"


class VerifyAnswers(NbGraderPreprocessor):
    """Autograde step: grade every grade cell again out of process (``gdgrade.verify``) and
    keep that score. Runs after ``SaveAutoGrades``. The grade cells' sources (hidden tests
    included) come from the gradebook; the student's cells run in a sandboxed answer process.
    Where a verified score differs from the kernel's, the log and the comments of the answer
    cells say which cells and why (the kernel's outputs stay in the notebook as feedback)."""

    call_timeout = Float(CALL_TIMEOUT, help="seconds one call of an answer may take").tag(
        config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        notebook, assignment, student = info["notebook"], info["assignment"], info["student"]
        with Gradebook(info["db_url"]) as gb:
            source = gb.find_notebook(notebook, assignment)
            sources = {cell.name: cell.source for cell in source.source_cells}
            grade_cells = {cell.name: (sources.get(cell.name, ""), float(cell.max_score))
                           for cell in source.grade_cells if cell.cell_type == "code"}
            root = Path(info["db_url"].removeprefix("sqlite:///")).parent
            verified = verify_notebook(nb, grade_cells, root=root,
                                       call_timeout=self.call_timeout)
            submitted = gb.find_submission_notebook(notebook, assignment, student)
            grades = {grade.name: grade for grade in submitted.grades}
            changes = []
            for result in verified:
                grade = grades.get(result.grade_id)
                if grade is None:
                    continue
                if grade.auto_score != result.score:
                    changes.append(f"{result.grade_id}: {result.score:g} of {result.points:g} "
                                   f"(in the kernel: {grade.auto_score:g})"
                                   + (f": {result.message}" if result.message else ""))
                grade.auto_score = result.score
            if changes:
                report = "\n".join(changes)
                self.log.warning("%s/%s: verified scores differ from the kernel's:\n%s",
                                 student, notebook, report)
                for comment in submitted.comments:
                    note = VERIFIED_NOTE + "\n" + report
                    comment.auto_comment = (comment.auto_comment + "\n" + note
                                            if comment.auto_comment else note)
            gb.db.commit()
        return nb, resources


# --------------------------------------------------------------------------------------------
# Held submissions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """A submitted notebook with grades that need manual grading, and why: the scan's
    findings from its comments (none when a cell is graded by hand or was not autograded)."""

    student: str
    assignment: str
    notebook: str
    cells: tuple  # names of the grade cells that need manual grading
    findings: tuple  # lines of the scan's report

    def __str__(self) -> str:
        head = (f"{self.student}, {self.assignment}/{self.notebook}.ipynb: "
                f"{len(self.cells)} grade(s) need manual grading: {', '.join(self.cells)}")
        reasons = [f"    {finding}" for finding in self.findings] or [
            "    no scan finding (a cell graded by hand, or a submission not autograded yet)"]
        return "\n".join([head, *reasons])


def gradebook_url(root: Path) -> str:
    """The gradebook of the course at ``root`` (where ``nbgrader_config.py`` puts it)."""
    return f"sqlite:///{Path(root) / 'gradebook.db'}"


def _scan_report(comments) -> tuple:
    """The finding lines of ``FlagSuspiciousCode``'s comments (each answer cell has a copy)."""
    lines: dict = {}
    for comment in comments:
        text = (comment.auto_comment or "").split(VERIFIED_NOTE)[0]
        if text.startswith(HELD_NOTE):
            lines.update(dict.fromkeys(line for line in text[len(HELD_NOTE):].splitlines()
                                       if line.strip()))
    return tuple(lines)


def held_submissions(db_url: str, assignment: str | None = None) -> list:
    """``Held`` for every submitted notebook (of ``assignment``, or of all) with a grade that
    needs manual grading. ``MissingEntry`` when the gradebook has no such assignment."""
    held = []
    with Gradebook(db_url) as gb:
        names = [gb.find_assignment(assignment).name] if assignment else [
            a.name for a in gb.assignments]
        for name in names:
            for submission in gb.assignment_submissions(name):
                for notebook in submission.notebooks:
                    cells = tuple(g.name for g in notebook.grades if g.needs_manual_grade)
                    if cells:
                        held.append(Held(submission.student.id, name, notebook.name, cells,
                                         _scan_report(notebook.comments)))
    return sorted(held, key=lambda h: (h.assignment, h.student, h.notebook))


class CsvExportWithHolds(CsvExportPlugin):
    """``nbgrader export`` to CSV (nbgrader's columns) with one more column,
    ``needs_manual_grade``: ``yes`` for a submission with a grade that needs manual grading (a
    submission held by the scan, or a cell graded by hand), whose score is not final."""

    def export(self, gradebook: Gradebook) -> None:
        super().export(gradebook)
        path = Path(self.to or "grades.csv")
        header, *rows = path.read_text(encoding="utf-8").splitlines()
        # nbgrader writes the fields unquoted; assignment and student id come before the names.
        keys = header.split(",")
        assignment, student = keys.index("assignment"), keys.index("student_id")
        held = set()
        for name in {row.split(",")[assignment] for row in rows}:
            for submission in gradebook.assignment_submissions(name):
                if submission.needs_manual_grade:
                    held.add((name, submission.student.id))
        lines = [header + ",needs_manual_grade"]
        for row in rows:
            fields = row.split(",")
            mark = "yes" if (fields[assignment], fields[student]) in held else ""
            lines.append(f"{row},{mark}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
