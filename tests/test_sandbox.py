"""The grading sandbox (gdgrade/sandbox.py): what a submission's kernel can and cannot do.

The fast tests run small Python programs through ``python -m gdgrade.sandbox`` exactly as the
kernel manager starts a kernel (``... -- COMMAND -f CONNECTION_FILE``) and check from inside
that the file system is read-only but for the scratch folder, that hidden paths are empty,
that the working directory stays visible inside a hidden folder, that no other process is
visible, and that the limits are set. The slow test is the attack of issue 13: a submission
graded before another one rewrites the installed reference (``gdlib/averages.py``), the
gradebook and the other student's notebook; the other student still gets full marks and
nothing outside the sandbox changed.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

import gdlib.averages
from gdgrade import sandbox

ROOT = Path(__file__).resolve().parent.parent


def confined(tmp_path: Path, program: str, hide=(), cwd=None) -> dict:
    """Run ``program`` in the sandbox; it must print one JSON object, which is returned."""
    connection = tmp_path / "kernel-test.json"
    connection.write_text("{}")
    hidden = [word for path in hide for word in ("--hide", str(path))]
    command = [sys.executable, "-m", "gdgrade.sandbox", *hidden, "--",
               sys.executable, "-c", textwrap.dedent(program), "-f", str(connection)]
    process = subprocess.run(command, capture_output=True, text=True, cwd=cwd or tmp_path,
                             timeout=120, check=False)
    if process.returncode == 70 and "cannot start the kernel" in process.stderr:
        pytest.skip(f"no Linux namespaces here: {process.stderr.strip()}")
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_only_the_scratch_folder_is_writable(tmp_path):
    targets = [gdlib.averages.__file__, str(tmp_path / "outside.txt"), "/tmp/gdgrade-probe.txt"]
    program = f"""
    import json, os
    def writable(path):
        try:
            with open(path, "a") as f:
                f.write("x")
            return True
        except OSError as error:
            return error.strerror
    targets = {targets!r} + [os.path.join(os.environ["TMPDIR"], "scratch.txt")]
    print(json.dumps([writable(target) for target in targets]))
    """
    before = Path(gdlib.averages.__file__).read_bytes()
    *refused, scratch = confined(tmp_path, program)
    assert Path(gdlib.averages.__file__).read_bytes() == before
    assert not (tmp_path / "outside.txt").exists()
    assert refused == ["Read-only file system"] * len(targets)
    assert scratch is True


def test_hidden_paths_are_empty_but_the_working_directory_inside_them_stays(tmp_path):
    course = tmp_path / "course"
    (course / "solutions" / "03_ewma").mkdir(parents=True)
    (course / "solutions" / "03_ewma" / "03_ewma.ipynb").write_text("hidden tests")
    (course / "gradebook.db").write_text("grades")
    mine = course / "autograded" / "alice" / "03_ewma"
    theirs = course / "autograded" / "bob" / "03_ewma"
    for folder in (mine, theirs):
        folder.mkdir(parents=True)
        (folder / "03_ewma.ipynb").write_text(folder.parent.name)
    program = f"""
    import json, os
    course = {str(course)!r}
    def writable(path):
        try:
            open(path, "w").close()
        except OSError as error:
            return error.strerror
    print(json.dumps({{
        "solutions": os.listdir(course + "/solutions"),
        "gradebook": open(course + "/gradebook.db").read(),
        "gradebook_write": writable(course + "/gradebook.db"),
        "students": os.listdir(course + "/autograded"),
        "mine": open("03_ewma.ipynb").read(),
        "cwd": os.getcwd(),
    }}))
    """
    hide = sandbox.course_hidden_paths(course)
    result = confined(tmp_path, program, hide=hide, cwd=mine)
    assert result == {"solutions": [], "gradebook": "", "students": ["alice"], "mine": "alice",
                      "cwd": str(mine), "gradebook_write": "Read-only file system"}
    assert (course / "gradebook.db").read_text() == "grades"


def test_course_hides_solutions_gradebook_submissions_and_the_repositorys_sources(tmp_path):
    hidden = set(sandbox.course_hidden_paths(tmp_path))
    for name in ("solutions", "gradebook.db", "submitted", "autograded", "feedback",
                 "downloaded", ".git"):
        assert str(tmp_path.resolve() / name) in hidden
    assert str(ROOT / "solutions") in hidden  # the repository gdgrade is installed from


def test_no_other_process_is_visible_and_limits_are_set(tmp_path):
    program = """
    import json, os, resource
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print(json.dumps({
        "pids": pids, "parent": os.getppid(),
        "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
        "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
        "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
        "capabilities": int(status["CapEff"].strip(), 16),
        "no_new_privs": status["NoNewPrivs"].strip(),
    }))
    """
    result = confined(tmp_path, program)
    assert result["pids"] == [1, 2]  # the sandbox's init and this program
    assert result["parent"] == 1
    assert result["nproc"] == sandbox.RESOURCE_LIMITS["RLIMIT_NPROC"]
    assert result["cpu"] == sandbox.RESOURCE_LIMITS["RLIMIT_CPU"]
    assert result["core"] == 0
    assert result["capabilities"] == 0
    assert result["no_new_privs"] == "1"


def test_the_grading_salt_never_reaches_the_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("GDCOURSE_GRADING_SALT", "the instructor's secret")
    program = """
    import json, os
    print(json.dumps([os.environ.get("GDCOURSE_GRADING_SALT"),
                      "secret" in open("/proc/self/environ", errors="ignore").read()]))
    """
    assert confined(tmp_path, program) == [None, False]


def test_a_program_exit_status_comes_back(tmp_path):
    connection = tmp_path / "kernel.json"
    connection.write_text("{}")
    process = subprocess.run(
        [sys.executable, "-m", "gdgrade.sandbox", "--", sys.executable, "-c",
         "raise SystemExit(3)", "-f", str(connection)], capture_output=True, check=False)
    if process.returncode == 70:
        pytest.skip("no Linux namespaces here")
    assert process.returncode == 3


def test_a_command_without_connection_file_is_refused_clearly(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "gdgrade.sandbox", "--", sys.executable, "-c", "pass"],
        capture_output=True, text=True, check=False)
    assert process.returncode == 70
    assert "no '-f CONNECTION_FILE'" in process.stderr


def test_the_kernel_manager_prefixes_the_launcher_unless_turned_off(monkeypatch):
    manager = sandbox.SandboxedKernelManager(hidden_paths=["/x/solutions"])
    monkeypatch.delenv(sandbox.SANDBOX_VARIABLE, raising=False)
    command = manager.format_kernel_cmd()
    assert command[:3] == [sys.executable, "-m", "gdgrade.sandbox"]
    assert command[3:6] == ["--hide", "/x/solutions", "--"]
    assert "-f" in command[6:]
    monkeypatch.setenv(sandbox.SANDBOX_VARIABLE, "off")
    assert manager.format_kernel_cmd()[:3] != [sys.executable, "-m", "gdgrade.sandbox"]


def test_nbgrader_config_uses_the_sandbox():
    text = (ROOT / "nbgrader_config.py").read_text()
    assert 'c.Execute.kernel_manager_class = "gdgrade.sandbox.SandboxedKernelManager"' in text
    assert "course_hidden_paths(c.CourseDirectory.root)" in text


# --- slow: one submission attacks the others through the file system ------------------------

ASSIGNMENT = "03_ewma"
POINTS = {"ewma_tests": 4.0, "corrected_tests": 4.0, "window_tests": 1.0}

VANDALISM = """

import os as _os
import gdlib.averages as _reference
_course = _os.path.abspath(_os.path.join(_os.getcwd(), "..", "..", ".."))
_targets = [
    _reference.__file__,                                   # the reference itself
    _os.path.join(_course, "gradebook.db"),                # the grades
    _os.path.join(_course, "submitted", "zz_honest", "03_ewma", "03_ewma.ipynb"),
    _os.path.join(_course, "autograded", "zz_honest"),     # (not yet graded)
    _os.path.join(_course, "solutions", "03_ewma", "03_ewma.ipynb"),
]
for _target in _targets:
    try:
        with open(_target, "w") as _f:
            _f.write("def ewma(theta, beta, bias_correction=False):\\n    return theta * 0\\n")
        print("overwrote", _target)
    except OSError as _error:
        print("refused", _target, _error.strerror)
"""


KILLER = """

import os as _os, signal as _signal
_os.kill(1, _signal.SIGKILL)  # PID 1 of its namespace: the sandbox's init, not the grader
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_submission_cannot_change_another_students_grade(tmp_path):
    reference = Path(gdlib.averages.__file__)
    before = reference.read_bytes()
    answer = roundtrip.solution_code(ASSIGNMENT, "ewma_answer") + VANDALISM
    killer = roundtrip.solution_code(ASSIGNMENT, "ewma_answer") + KILLER
    students = {"aa_vandal": {"ewma_answer": answer}, "ab_killer": {"ewma_answer": killer},
                "zz_honest": {}}
    try:
        with roundtrip.autograded(tmp_path, ASSIGNMENT, students) as graded:
            assert graded.scores["zz_honest"] == POINTS
            # Init of a PID namespace ignores SIGKILL from inside it: the signal does nothing,
            # the batch goes on, and the (correct) answer keeps its marks.
            assert graded.scores["ab_killer"] == POINTS
            assert any(graded.manual["aa_vandal"].values())  # held: it imports gdlib
            feedback = graded.feedback("aa_vandal", "ewma_answer")
            assert "overwrote" not in feedback
            assert feedback.count("refused") == 5, feedback
            assert "Read-only file system" in feedback
            honest = graded.root / "submitted" / "zz_honest" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
            assert "return theta * 0" not in honest.read_text()
            solution = graded.root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
            assert _digest(solution) == _digest(roundtrip.solution_path(ASSIGNMENT))
    finally:
        changed = reference.read_bytes() != before
        if changed:
            reference.write_bytes(before)  # never leave a vandalised reference behind
    assert not changed, "the submission rewrote gdlib/averages.py"
    assert os.access(reference, os.R_OK)
