"""Chapter 4 (momentum, Nesterov): the exercise's grading round trip and the two book pages.

The nbgrader round trip follows tests/test_exercises.py (chapter 1) and reuses its helpers: a
temporary course, the released notebook with answers filled in (one student per behaviour),
``nbgrader autograde``, scores and manual-grading flags read from the gradebook. Besides
right and wrong answers, three students attack the step-by-step checker (it used to be
defined in a locked cell whose names the grade cells called): one rebinds its helpers in an
answer cell, one replaces ``gdlib.grading``'s functions, one reaches ``gdlib.optim`` through a
module name built from strings. The page tests execute the pages and check the numbers their
text states against what the code prints.
"""

import ast
import builtins
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from test_exercises import cell_by_id, errors, execute, make_course, make_writable, read

from gdlib import course

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "04_momentum"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SOLUTION = ROOT / "solutions" / ASSIGNMENT / NOTEBOOK
RELEASE = ROOT / "exercises" / ASSIGNMENT / NOTEBOOK
POINTS = {"momentum_tests": 3.0, "ema_tests": 3.0, "nesterov_tests": 4.0}
ANSWERS = ("momentum_answer", "ema_answer", "nesterov_answer")
PAGES = {name: ROOT / "book" / ASSIGNMENT / f"{name}.ipynb" for name in ("momentum", "nesterov")}


def solution_code(grade_id: str) -> str:
    """The instructor's answer of one cell, markers removed (what a correct student writes)."""
    source = cell_by_id(read(SOLUTION), grade_id).source
    return "\n".join(line for line in source.splitlines() if "### " not in line)


# --- fast: the committed notebooks ------------------------------------------------------------


def test_solution_has_points_markers_and_hidden_tests():
    nb = read(SOLUTION)
    points = {c.metadata.nbgrader.grade_id: c.metadata.nbgrader.points
              for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert points == POINTS
    for grade_id in POINTS:
        cell = cell_by_id(nb, grade_id)
        assert cell.metadata.nbgrader.locked and "BEGIN HIDDEN TESTS" in cell.source
        assert "random_quadratics(seed" in cell.source.split("BEGIN HIDDEN TESTS")[1]
    for grade_id in ANSWERS:
        assert "BEGIN SOLUTION" in cell_by_id(nb, grade_id).source


def test_grade_cells_import_what_they_call():
    """No grade cell calls a name that only an earlier cell defines: an answer cell, which runs
    in between, could rebind it. (The course names a grade cell uses are all its own.)"""
    nb = read(SOLUTION)
    for grade_id in POINTS:
        tree = ast.parse(cell_by_id(nb, grade_id).source)
        own = {name for _, name, _ in course.module_bindings(tree)}
        called = {node.func.id for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        answer = {"momentum_tests": "momentum_step", "ema_tests": "momentum_ema_step",
                  "nesterov_tests": "nesterov_step"}[grade_id]
        builtin = set(dir(builtins))
        assert called - own - builtin - {answer} == set(), grade_id
        assert {"check_steps", "call_answer", "check_array", "np"} <= own


def test_release_holds_stubs_only():
    assert course.leaked_markers(RELEASE.parent) == []
    text = RELEASE.read_text(encoding="utf-8")
    for grade_id in ANSWERS:
        assert "raise NotImplementedError()" in cell_by_id(read(RELEASE), grade_id).source
    assert "lookahead = theta - lr * beta * velocity" not in text  # the instructor's answer
    assert "random_quadratics(" not in text  # called by the hidden tests only


def test_notebooks_are_committed_without_outputs():
    for path in (*PAGES.values(), SOLUTION, RELEASE):
        for cell in read(path).cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path


def test_scan_does_not_flag_the_release():
    """The student notebook as released passes the static scan (locked cells are trusted)."""
    scan = subprocess.run([sys.executable, "-m", "gdlib.course", "scan", str(RELEASE)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert scan.returncode == 0, scan.stdout


# --- slow: the grading round trip -----------------------------------------------------------

WRONG = {
    # Moving-average velocity in the classic part.
    "momentum_answer": """
def momentum_step(theta, grad, velocity, lr, beta):
    v = beta * velocity + (1 - beta) * grad
    return theta - lr * v, v
""",
    # The (1 - beta) factor forgotten.
    "ema_answer": """
def momentum_ema_step(theta, grad, velocity, lr, beta):
    v = beta * velocity + grad
    return theta - lr * v, v
""",
    # Gradient at theta: classic momentum, not NAG.
    "nesterov_answer": """
def nesterov_step(theta, grad_fn, velocity, lr, beta):
    v = beta * velocity + grad_fn(theta)
    return theta - lr * v, v
""",
}

SUBTLE = {
    # beta and 1 - beta swapped: right for the beta = 0.5 table, wrong elsewhere.
    "ema_answer": """
def momentum_ema_step(theta, grad, velocity, lr, beta):
    v = (1 - beta) * velocity + beta * grad
    return theta - lr * v, v
""",
    # PyTorch's update applied to the seeds' variable.
    "nesterov_answer": """
def nesterov_step(theta, grad_fn, velocity, lr, beta):
    g = grad_fn(theta - lr * beta * velocity)
    v = beta * velocity + g
    return theta - lr * (g + beta * v), v
""",
    # Updates the velocity in place.
    "momentum_answer": """
def momentum_step(theta, grad, velocity, lr, beta):
    velocity *= beta
    velocity += grad
    return theta - lr * velocity, velocity
""",
}

RAVINE_ONLY = {  # ignores grad and differentiates the worked example's function instead
    "momentum_answer": """
def momentum_step(theta, grad, velocity, lr, beta):
    v = beta * velocity + np.array([0.2, 4.0]) * theta
    return theta - lr * v, v
""",
}

CALLS_GDLIB = {
    "momentum_answer": """
from gdlib import optim as _optim


def momentum_step(theta, grad, velocity, lr, beta):
    new_theta, state = _optim.Momentum(lr, beta).step(theta, grad,
                                                     _optim.MomentumState(0, velocity))
    return new_theta, state.velocity
""",
    "nesterov_answer": """
def nesterov_step(theta, grad_fn, velocity, lr, beta):
    rule = Nesterov(lr, beta)  # names the test cell imports before it calls this function
    new_theta, state = rule.lookahead_step(theta, grad_fn, NesterovState(0, velocity))
    return new_theta, state.velocity
""",
}

NO_OP = "lambda *args, **kwargs: None"
TABLE = "lambda *args, **kwargs: (np.array([-3.42544, -0.688]), np.array([-1.5164, 3.92]))"

REBINDS_HELPERS = {  # wrong answers, and the checker's names rebound to no-ops
    "momentum_answer": WRONG["momentum_answer"] + f"""

check_steps = {NO_OP}
run_steps = {TABLE}
check_array = {NO_OP}
""",
    "ema_answer": WRONG["ema_answer"] + f"""

call_answer = {NO_OP}
with_gradient = {NO_OP}
ema_reference = {NO_OP}
""",
}

PATCHES_GRADING = {  # wrong answers, and gdlib.grading's own functions replaced
    "momentum_answer": WRONG["momentum_answer"] + f"""

grading.check_steps = {NO_OP}
grading.run_steps = {TABLE}
grading.check_array = {NO_OP}
grading.require_untampered = {NO_OP}
""",
    "ema_answer": WRONG["ema_answer"] + f"""

import sys

vars(sys.modules["gdlib.grading"])["check_steps"] = {NO_OP}
""",
}

IMPORTS_BY_STRING = {  # gdlib.optim reached at run time: no name or constant of the code
    # (once folded) names the module or one of its objects, so only the watched call sees it.
    "momentum_answer": """
import sys


def _reference(*parts):
    module = sys.modules[".".join(["".join(["gd", "lib"]), "optim"])]
    return getattr(module, "".join(parts))


def momentum_step(theta, grad, velocity, lr, beta):
    rule = _reference("Mom", "entum")(lr, beta)
    new_theta, state = rule.step(theta, grad, _reference("Mom", "entum", "State")(0, velocity))
    return new_theta, state.velocity
""",
    "nesterov_answer": """
import sys


def nesterov_step(theta, grad_fn, velocity, lr, beta):
    module = sys.modules["".join(["gd", "lib.op", "tim"])]
    rule = getattr(module, "".join(["Nest", "erov"]))(lr, beta)
    start = getattr(module, "".join(["Nest", "erov", "State"]))(0, velocity)
    new_theta, state = rule.lookahead_step(theta, grad_fn, start)
    return new_theta, state.velocity
""",
}


def answered(answers: dict) -> nbformat.NotebookNode:
    """The released notebook with the given answer cells replaced, the others correct."""
    nb = read(RELEASE)
    for grade_id in ANSWERS:
        cell_by_id(nb, grade_id).source = answers.get(grade_id, solution_code(grade_id)).strip()
    return nb


SUBMISSIONS = {
    "correct": lambda: answered({}),
    "unanswered": lambda: read(RELEASE),
    "wrong": lambda: answered(WRONG),
    "subtle": lambda: answered(SUBTLE),
    "ravine_only": lambda: answered(RAVINE_ONLY),
    "calls_gdlib": lambda: answered(CALLS_GDLIB),
    "rebinds_helpers": lambda: answered(REBINDS_HELPERS),
    "patches_grading": lambda: answered(PATCHES_GRADING),
    "imports_by_string": lambda: answered(IMPORTS_BY_STRING),
}
HONEST = ("correct", "unanswered", "wrong", "subtle", "ravine_only")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Release 04_momentum, submit every student of SUBMISSIONS, autograde them in one call.

    Yields (course root, {student: {grade_id: score}}, {student: {grade_id: needs manual
    grading}}, the autograde log)."""
    root = make_course(tmp_path_factory.mktemp("course04"))
    course.run_nbgrader(["generate_assignment", ASSIGNMENT], root)
    for student, make in SUBMISSIONS.items():
        path = root / "submitted" / student / ASSIGNMENT / NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(make(), path)
    process = course.run_nbgrader(["autograde", ASSIGNMENT], root)
    scores, manual = {}, {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for student in SUBMISSIONS:
            notebook = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {g.name: g.score for g in notebook.grades}
            manual[student] = {g.name: g.needs_manual_grade for g in notebook.grades}
    yield root, scores, manual, process.stdout + process.stderr
    make_writable(root)


def feedback(root: Path, student: str, grade_id: str) -> str:
    nb = read(root / "autograded" / student / ASSIGNMENT / NOTEBOOK)
    return "\n".join(o.get("text", "") + o.get("evalue", "")
                     for o in cell_by_id(nb, grade_id).get("outputs", []))


@pytest.mark.slow
def test_unanswered_release_fails_only_in_its_test_cells(tmp_path):
    nb = execute(read(RELEASE), tmp_path)
    for grade_id in POINTS:
        (error,) = errors(cell_by_id(nb, grade_id))
        assert error.ename == "NotImplementedError", (grade_id, error.ename, error.evalue)
    untested = [c for c in nb.cells if c.cell_type == "code"
                and not c.metadata.nbgrader.get("grade") and errors(c)]
    assert untested == []


@pytest.mark.slow
def test_correct_submission_gets_full_marks_and_unanswered_gets_zero(graded):
    _, scores, _, _ = graded
    assert scores["correct"] == POINTS
    assert scores["unanswered"] == dict.fromkeys(POINTS, 0.0)


@pytest.mark.slow
def test_wrong_answers_get_zero_with_the_step_and_the_mistake_named(graded):
    root, scores, _, _ = graded
    assert scores["wrong"] == dict.fromkeys(POINTS, 0.0)
    classic = feedback(root, "wrong", "momentum_tests")
    assert "step 1: new theta" in classic
    assert "coordinate 1: expected 1.2, got -0.4" in classic
    assert "moving-average form of part (b)" in classic
    assert "did you forget the (1 - beta) factor?" in feedback(root, "wrong", "ema_tests")
    nesterov = feedback(root, "wrong", "nesterov_tests")
    assert "step 2: the point where grad_fn was called" in nesterov
    assert "that is theta itself, as in classic momentum" in nesterov


@pytest.mark.slow
def test_subtle_mistakes_are_caught_and_explained(graded):
    root, scores, _, _ = graded
    assert scores["subtle"] == dict.fromkeys(POINTS, 0.0)
    assert "modified its argument velocity in place" in feedback(root, "subtle",
                                                                 "momentum_tests")
    ema = feedback(root, "subtle", "ema_tests")
    assert "beta=0.9" in ema and "beta and 1 - beta are swapped" in ema
    assert "PyTorch's form" in feedback(root, "subtle", "nesterov_tests")


@pytest.mark.slow
def test_answer_fitted_to_the_worked_example_passes_only_the_visible_tests(graded):
    root, scores, _, _ = graded
    assert scores["ravine_only"] == {**POINTS, "momentum_tests": 0.0}
    text = feedback(root, "ravine_only", "momentum_tests")
    assert "momentum_step: visible tests passed" in text
    assert "random quadratic" in text


@pytest.mark.slow
def test_answers_that_call_gdlib_get_zero(graded):
    root, scores, _, _ = graded
    assert scores["calls_gdlib"] == {**POINTS, "momentum_tests": 0.0, "nesterov_tests": 0.0}
    assert "module gdlib.optim" in feedback(root, "calls_gdlib", "momentum_tests")
    assert "gdlib.optim.Nesterov" in feedback(root, "calls_gdlib", "nesterov_tests")


@pytest.mark.slow
def test_honest_submissions_are_not_held_for_manual_grading(graded):
    _, _, manual, _ = graded
    for student in HONEST:
        assert not any(manual[student].values()), student


@pytest.mark.slow
def test_rebinding_the_checkers_names_changes_nothing_and_is_flagged(graded):
    """The grade cells import what they call: the no-ops an answer cell binds are not what they
    run, so the wrong answers get 0; the scan holds the submission for manual grading."""
    root, scores, manual, log = graded
    assert scores["rebinds_helpers"] == {**POINTS, "momentum_tests": 0.0, "ema_tests": 0.0}
    assert "moving-average form of part (b)" in feedback(root, "rebinds_helpers",
                                                         "momentum_tests")
    assert "did you forget the (1 - beta) factor?" in feedback(root, "rebinds_helpers",
                                                               "ema_tests")
    assert all(manual["rebinds_helpers"].values())
    for name in ("check_steps", "run_steps", "check_array", "call_answer", "with_gradient",
                 "ema_reference"):
        assert f"rebinds {name}, a name defined by the course's locked cells" in log, name


@pytest.mark.slow
def test_replacing_gdlib_grading_functions_is_detected_and_fails_every_part(graded):
    """The guarded gdlib.grading puts its functions back when a test cell imports them and
    records the replacement: every later check fails (sticky), the correct part (c) too."""
    root, scores, manual, log = graded
    assert scores["patches_grading"] == dict.fromkeys(POINTS, 0.0)
    for grade_id in POINTS:
        text = feedback(root, "patches_grading", grade_id)
        assert "grading integrity" in text and "gdlib.grading.check_steps" in text, grade_id
    assert "gdlib.grading.require_untampered" in feedback(root, "patches_grading",
                                                          "momentum_tests")
    assert all(manual["patches_grading"].values())
    assert "assigns an attribute of grading" in log


@pytest.mark.slow
def test_reaching_gdlib_through_a_string_import_gets_zero(graded):
    """The static look at the answer sees no gdlib; the watched call sees gdlib.optim run."""
    root, scores, manual, log = graded
    assert scores["imports_by_string"] == {**POINTS, "momentum_tests": 0.0,
                                           "nesterov_tests": 0.0}
    for grade_id in ("momentum_tests", "nesterov_tests"):
        text = feedback(root, "imports_by_string", grade_id)
        assert "must compute its result itself" in text, grade_id
        assert "gdlib.optim.__post_init__" in text, grade_id  # a frame the watch saw run
    assert all(manual["imports_by_string"].values())
    assert "sys.modules reaches every loaded module" in log


# --- slow: the book pages ---------------------------------------------------------------------


def printed(nb) -> str:
    """Everything the code cells of an executed notebook printed to stdout."""
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs if o.output_type == "stream")


def run_page(name: str, tmp_path: Path) -> str:
    """Execute a page as the strict build does (no error, nothing on stderr); its stdout."""
    nb = execute(read(PAGES[name]), tmp_path)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert errors(cell) == [], f"{name} cell {index} raised"
        stderr = [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
        assert stderr == [], f"{name} cell {index} wrote to stderr: {stderr}"
    return printed(nb)


def equivalences(text: str) -> list[float]:
    """The printed ``max |a - b| = x`` values (``max |difference|``, ``max |residual|`` ...)."""
    return [float(x) for x in re.findall(r"max \|[^|\n]+\|[^=\n]*=\s*(\S+)", text)]


@pytest.mark.slow
def test_momentum_page_computes_what_its_text_states(tmp_path):
    text = run_page("momentum", tmp_path)
    for shown in ("condition number L/mu = 20", "divergence for lr > 2/L = 0.5",
                  "0.9**22 = 0.0985", "the first k with 0.9**k < 0.1 is k = 22",
                  "1 - beta**t = 0.651", "1 - beta**t = 0.902", "1 - beta**t = 0.990",
                  "effective window 1/(1 - beta) = 10 steps"):
        assert shown in text, shown
    # Lemma 3.1 (2 checks) and the three conventions plus torch (3 checks), to rounding.
    differences = equivalences(text)
    assert len(differences) == 5 and max(differences) < 1e-13, differences


@pytest.mark.slow
def test_nesterov_page_computes_what_its_text_states(tmp_path):
    text = run_page("nesterov", tmp_path)
    differences = equivalences(text)  # both NAG forms, torch, seed 001, seed 000 eq 21
    assert len(differences) == 4 and max(differences) < 1e-13, differences
    limits = re.findall(r"converges up to lr = ([\d.]+) on the grid; closed form ([\d.]+)", text)
    assert len(limits) == 3
    for grid, closed in limits:
        assert abs(float(grid) - float(closed)) < 0.005, (grid, closed)
    rows = dict(re.findall(r"^(gradient descent|NAG, beta_k = \(k-1\)/\(k\+2\))\s+(.*)$", text,
                           re.MULTILINE))
    gd_late = float(rows["gradient descent"].split()[-1])
    nag_late = float(rows["NAG, beta_k = (k-1)/(k+2)"].split()[-1])
    assert abs(gd_late + 1) < 0.05 and abs(nag_late + 2) < 0.1, (gd_late, nag_late)
    ratios = [float(x) for x in re.findall(r"largest error / bound, [^:]*:\s*(\S+)", text)]
    assert len(ratios) == 2 and max(ratios) <= 1.0, ratios
