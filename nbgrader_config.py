"""nbgrader configuration of gdcourse (nbgrader 0.9). Run nbgrader from the repository root.

Layout: the instructor's notebooks (solutions + hidden tests) live in ``solutions/<id>/``; the
student notebooks generated from them in ``exercises/<id>/`` (``make exercises``, i.e.
``python -m gdgrade release``). Submissions go to ``submitted/<student>/<id>/``, and
``nbgrader autograde <id>`` writes ``autograded/`` and the gradebook ``gradebook.db`` -- all
three are git-ignored. Every path below is relative to the directory of this file, so a copy of
it in a temporary directory makes a self-contained course there (the tests do that).
"""

import os

from gdgrade.sandbox import course_hidden_paths

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# --- course and directories ---------------------------------------------------------------
c.CourseDirectory.course_id = "gdcourse"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
# The gradebook (sqlite) next to this file; gradebook.db is in .gitignore.
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")

# --- generating the student version ---------------------------------------------------------
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.begin_solution_delimeter = "BEGIN SOLUTION"  # (sic: nbgrader's spelling)
c.ClearSolutions.end_solution_delimeter = "END SOLUTION"
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"

# --- executing notebooks (autograde, validate) ---------------------------------------------
# Execute.timeout is per cell. When a cell exceeds it, nbgrader interrupts that cell and goes
# on with the next ones (it does not stop the notebook), so an answer stuck in an infinite loop
# costs `timeout` seconds for each cell that calls it, and its tests fail (0 points). Every cell
# of our exercises runs in well under a second with a correct answer -- also with a
# straightforward Python loop over instances instead of array operations -- on one core of a
# slow machine, so 20 s leaves a wide margin for slow-but-correct answers while capping the
# cost of a hanging submission at about a minute per notebook (nbgrader's default is 30 s).
c.Execute.timeout = 20
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120  # a cold kernel start on a busy 2-core machine can be slow
# Every kernel (autograde, validate) runs in gdgrade's sandbox (gdgrade/sandbox.py): a read-only
# file system but for a scratch tmpfs discarded when the kernel exits, the solutions, gradebook
# and other submissions hidden, its own process namespace, resource limits. What one submission
# does cannot reach the reference, the grader or the grades of any other. GDGRADE_SANDBOX=off
# in nbgrader's environment turns it off (trusted notebooks only).
c.Execute.kernel_manager_class = "gdgrade.sandbox.SandboxedKernelManager"
c.SandboxedKernelManager.hidden_paths = course_hidden_paths(c.CourseDirectory.root)

# --- autograding ------------------------------------------------------------------------------
# Locked cells whose source a student edited are always restored from the gradebook. This also
# re-inserts grade (test) cells a student deleted, so that they run and score as usual.
c.OverwriteCells.add_missing_cells = True
# Then every grade cell is graded again outside the student's kernel
# (gdgrade.nbgrader_plugins.VerifyAnswers, gdgrade/verify.py): the student's cells run in a
# sandboxed process that cannot import gdlib, gdgrade, torch or scipy, the tests run in
# nbgrader's process and call the answers there through plain data; that score is the grade.
# Before that, scan what the student wrote (gdgrade.nbgrader_plugins.FlagSuspiciousCode): a submission
# that uses set_custom_exc, AST/input transformers, sys.modules, importlib, inspect, or assigns
# attributes of numpy/builtins/sys/gdlib/torch is held for manual grading, with the reasons in
# the autograde log and in the comments of its answer cells.
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
    "gdgrade.nbgrader_plugins.FlagSuspiciousCode",
    "gdgrade.nbgrader_plugins.VerifyAnswers",
]

# --- feedback --------------------------------------------------------------------------------
# nbgrader's feedback shows the autograded notebook, in which autograde restored the hidden
# tests: clear them again (ClearHiddenTests), so that feedback shows the visible tests and
# the messages of every test, never the hidden tests' code.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests",
]

# --- collecting submissions downloaded from a learning platform -----------------------------
# Convention: a student submits the assignment's notebook renamed <student_id>_<notebook>, e.g.
# jdoe_01_losses.ipynb for 01_losses (the student id is everything before the notebook's
# "NN_" prefix, so it may contain underscores: jane_doe_01_losses.ipynb is jane_doe's).
# Put the files, or zip archives of them, in downloaded/<assignment>/archive/ and run
# `nbgrader zip_collect <assignment>`: it extracts them to downloaded/<assignment>/extracted/
# and copies each to submitted/<student_id>/<assignment>/<notebook>. The expression is matched
# against the file's full path; file_id must be the released notebook's file name. A file
# that does not follow the convention is skipped with a warning (strict), not copied under a
# wrong name.
c.FileNameCollectorPlugin.named_regexp = (
    r".*/(?P<student_id>[^/]+)_(?P<file_id>\d\d_[^/]+\.ipynb)$"
)
c.ZipCollectApp.strict = True

# --- exporting grades ---------------------------------------------------------------------------
# `nbgrader export` writes grades.csv with nbgrader's columns plus needs_manual_grade ("yes"
# for a submission whose score is not final: held by the scan, or with a cell graded by hand).
# `python -m gdgrade held` lists those submissions with the scan's findings.
c.ExportApp.plugin_class = "gdgrade.nbgrader_plugins.CsvExportWithHolds"
