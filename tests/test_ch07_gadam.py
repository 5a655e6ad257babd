"""Chapter 7 (Gadam): the exercise's grading round trip and the two book pages.

The round trip (release, submit, one ``nbgrader autograde``, scores and manual-grading flags
from the gradebook) is tests/course_roundtrip.py's; this file holds the students and what they
must get: full marks for the instructor's answers, 0 for the release as is, wrong answers with
the mistake named, an answer right for the worked examples only, answers that draw their random
numbers in another order (statistically right, not the prescribed stream) and one that calls
gdlib. The pages are read from the book build (executed once per run); their tests check what
their text states against what their code prints.
"""

import itertools
import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "07_gadam"
SOLUTION = roundtrip.solution_path(ASSIGNMENT)
RELEASE = roundtrip.release_path(ASSIGNMENT)
POINTS = {"selection_tests": 3.0, "crossover_tests": 4.0, "mutation_tests": 3.0}
ANSWERS = ("selection_answer", "crossover_answer", "mutation_answer")
FUNCTIONS = {"selection_tests": "selection_probabilities", "crossover_tests": "crossover_child",
             "mutation_tests": "mutate_child"}
PAGES = {name: ROOT / "book" / ASSIGNMENT / f"{name}.ipynb" for name in ("gadam", "gadam_study")}


# --- fast: the committed notebooks ------------------------------------------------------------


def test_solution_has_points_markers_and_hidden_tests():
    roundtrip.assert_solution_cells(ASSIGNMENT, POINTS, ANSWERS)
    nb = roundtrip.read(SOLUTION)
    for grade_id in POINTS:
        visible, hidden = roundtrip.cell_by_id(nb, grade_id).source.split("BEGIN HIDDEN TESTS")
        assert "from gdlib.gadam import" in hidden and "rng(7" in hidden, grade_id
        assert "gdlib" not in visible.replace("against gdlib", ""), grade_id  # no reference
    for grade_id in ("crossover_tests", "mutation_tests"):  # statistics over many draws
        assert "n = 200_000" in roundtrip.cell_by_id(nb, grade_id).source, grade_id


def test_grade_cells_import_what_they_call():
    """No grade cell calls a name that only an earlier cell defines: an answer cell, which runs
    in between, could rebind it."""
    nb = roundtrip.read(SOLUTION)
    for grade_id, answer in FUNCTIONS.items():
        source = roundtrip.cell_by_id(nb, grade_id).source
        own, outside = roundtrip.grade_cell_names(source)
        assert outside - {answer} == set(), grade_id
        assert {"call_answer", "check_array", "np"} <= own, grade_id


def test_release_holds_stubs_only():
    text = roundtrip.assert_release_stubs(ASSIGNMENT, ANSWERS)
    assert "np.where(u <= p_ij, theta_i, theta_j)" not in text  # the instructor's answer
    assert "from gdlib" not in text and "rng(72" not in text  # hidden tests only
    # The visible hints are numbers of the worked examples; the code that computes a
    # mistake's result (one edit away from the answer) is in the hidden tests only.
    release = roundtrip.read(RELEASE)
    for grade_id in POINTS:
        visible = roundtrip.cell_by_id(release, grade_id).source
        assert "np.where" not in visible and "default_rng(seed).random" not in visible, grade_id


def test_notebooks_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs((*PAGES.values(), SOLUTION, RELEASE))


def test_scan_does_not_flag_the_release():
    result = roundtrip.scan(RELEASE)
    assert result.returncode == 0, result.stdout


# --- slow: the grading round trip -----------------------------------------------------------

WRONG = {
    # The softmax of the raw losses: no normalisation.
    "selection_answer": """
def selection_probabilities(losses):
    w = np.exp(-(np.asarray(losses) - np.min(losses)))
    return w / w.sum()
""",
    # Parents swapped.
    "crossover_answer": """
def crossover_child(theta_i, theta_j, lhat_i, lhat_j, seed):
    p_ij = np.exp(-lhat_i) / (np.exp(-lhat_i) + np.exp(-lhat_j))
    u = np.random.default_rng(seed).random(len(theta_i))
    return np.where(u <= p_ij, theta_j, theta_i)
""",
    # The base rate alone, without eq 49's factor.
    "mutation_answer": """
def mutate_child(child, p_i, p_j, base_rate, seed):
    rng = np.random.default_rng(seed)
    u, w = rng.random(len(child)), rng.random(len(child))
    return np.where(u <= base_rate, w, child)
""",
}

OTHER_ORDER = {  # the right distributions, drawn in another order than the task prescribes
    "crossover_answer": """
def crossover_child(theta_i, theta_j, lhat_i, lhat_j, seed):
    rng = np.random.default_rng(seed)
    p_ij = np.exp(-lhat_i) / (np.exp(-lhat_i) + np.exp(-lhat_j))
    return np.array([a if rng.random() > 1 - p_ij else b for a, b in zip(theta_i, theta_j)])
""",
    "mutation_answer": """
def mutate_child(child, p_i, p_j, base_rate, seed):
    rng = np.random.default_rng(seed)
    w = rng.random(len(child))
    u = rng.random(len(child))
    return np.where(u <= base_rate * (1 - p_i - p_j), w, child)
""",
}

EXAMPLES_ONLY = {  # right on the worked examples, wrong elsewhere
    "selection_answer": """
def selection_probabilities(losses):
    losses = np.asarray(losses, dtype=float)
    span = losses.max() - losses.min()
    lhat = (losses - losses.min()) / span if span > 0 else np.zeros_like(losses)
    if len(losses) != 4:
        lhat = losses / losses.max()
    w = np.exp(-lhat)
    return w / w.sum()
""",
    "mutation_answer": """
def mutate_child(child, p_i, p_j, base_rate, seed):
    rng = np.random.default_rng(seed)
    u, w = rng.random(len(child)), rng.random(len(child))
    return np.where(u <= 0.35, w, child)
""",
}

CALLS_GDLIB = {
    "crossover_answer": """
from gdlib import gadam as _gadam


def crossover_child(theta_i, theta_j, lhat_i, lhat_j, seed):
    p_ij = _gadam.crossover_probability(lhat_i, lhat_j)
    return _gadam.crossover(theta_i, theta_j, p_ij, np.random.default_rng(seed))[0]
""",
}

SUBMISSIONS = {
    "correct": {},
    "unanswered": lambda: roundtrip.read(RELEASE),
    "wrong": WRONG,
    "other_order": OTHER_ORDER,
    "examples_only": EXAMPLES_ONLY,
    "calls_gdlib": CALLS_GDLIB,
}


# The round trip every chapter shares (tests/course_roundtrip.py): the graded fixture, the
# unanswered release failing only in its test cells, full marks for the correct student.
(graded, test_unanswered_release_fails_only_in_its_test_cells,
 test_correct_submission_gets_full_marks_and_unanswered_gets_zero) = (
    roundtrip.chapter_round_trip(ASSIGNMENT, POINTS, SUBMISSIONS))


@pytest.mark.slow
def test_wrong_answers_get_zero_with_the_mistake_named(graded):
    assert graded.scores["wrong"] == dict.fromkeys(POINTS, 0.0)
    selection = graded.feedback("wrong", "selection_tests")
    assert "selection_probabilities on the worked example (3, 1, 2, 5)" in selection
    assert "normalise them to [0, 1] by min-max first" in selection
    crossover = graded.feedback("wrong", "crossover_tests")
    assert "entry 0: expected -1, got 1" in crossover and "the parents are swapped" in crossover
    mutation = graded.feedback("wrong", "mutation_tests")
    assert "not base_rate alone" in mutation


@pytest.mark.slow
def test_answers_drawing_in_another_order_fail_exactly_with_a_hint(graded):
    assert graded.scores["other_order"] == {**POINTS, "crossover_tests": 0.0,
                                            "mutation_tests": 0.0}
    assert "crossover_child on the worked example (seed 7)" in graded.feedback(
        "other_order", "crossover_tests")
    assert "draw the decisions u first and the new values w second" in graded.feedback(
        "other_order", "mutation_tests")


@pytest.mark.slow
def test_answers_right_for_the_examples_only_fail_the_hidden_tests(graded):
    assert graded.scores["examples_only"] == {**POINTS, "selection_tests": 0.0,
                                              "mutation_tests": 0.0}
    selection = graded.feedback("examples_only", "selection_tests")
    assert "selection_probabilities: visible tests passed" in selection
    assert "2 random losses" in selection and "division by the largest loss" in selection
    mutation = graded.feedback("examples_only", "mutation_tests")
    assert "mutate_child: visible tests passed" in mutation
    assert re.search(r"mutate_child on d = \d+, P = \(", mutation)


@pytest.mark.slow
def test_answer_that_calls_gdlib_gets_zero(graded):
    assert graded.scores["calls_gdlib"] == {**POINTS, "crossover_tests": 0.0}
    assert "gdlib" in graded.feedback("calls_gdlib", "crossover_tests")


@pytest.mark.slow
def test_honest_submissions_are_not_held_for_manual_grading(graded):
    for student in ("correct", "unanswered", "wrong", "other_order", "examples_only"):
        assert not any(graded.manual[student].values()), student


@pytest.mark.slow
def test_feedback_never_shows_the_hidden_tests(graded):
    process = roundtrip.course.run_nbgrader(["generate_feedback", ASSIGNMENT], graded.root)
    assert process.returncode == 0, process.stdout + process.stderr
    html = (graded.root / "feedback" / "wrong" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "the worked example (3, 1, 2, 5)" in html
    assert "rng(7100)" not in html and "HIDDEN TESTS" not in html


# --- slow: the book pages ---------------------------------------------------------------------


def _prose(name: str) -> str:
    """The page's markdown, with every run of white space made one space."""
    return " ".join(" ".join(cell.source for cell in roundtrip.read(PAGES[name]).cells
                             if cell.cell_type == "markdown").split())


@pytest.mark.slow
def test_gadam_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["gadam"], book_build)
    prose = _prose("gadam")
    # Adam alone stays in the basin it starts in (the nearest grid point of start and end).
    starts = re.findall(r"^unit (\d): theta = \(\s*(\S+),\s*(\S+)\)", text, re.MULTILINE)
    ends = re.findall(r"^trained unit (\d): theta = \(\s*(\S+),\s*(\S+)\)", text, re.MULTILINE)
    assert len(starts) == len(ends) == 4
    for (_, x0, y0), (_, x1, y1) in zip(starts, ends):
        assert (round(float(x0)), round(float(y0))) == (round(float(x1)), round(float(y1)))
    assert "Each point rolls into the local minimum next to its start" in prose
    assert "P(best) / P(worst) = 2.7183 = e" in text
    assert "p_q = 0.0 for every child" in text and "never mutates" in prose
    assert "with lambda = 1 Gadam stops: False" in text
    # The whole run: the population ends in the global basin; the best is not monotone.
    rows = re.findall(r"^\s+(\d)\s+(\S+)\s+(\S+)\s+(\d)\s+(\d+)\s+(\d+)$", text, re.MULTILINE)
    assert len(rows) == 6
    best = [float(r[1]) for r in rows]
    assert float(rows[-1][2]) < 0.5 and any(b > a for a, b in itertools.pairwise(best))
    assert "the whole population sits in the global basin" in prose
    assert "The best value does not fall at every generation" in prose
    # The nearest local minima lie at f about 1.
    near = float(re.search(r"the local minimum next to c = \(2, -1\): .*f = (\S+)", text)[1])
    assert 0.9 < near < 1.1
    # The comparison at equal compute.
    table = {(method.strip(), landscape): (float(median), int(share)) for method, landscape,
             median, share in re.findall(r"^(Gadam, U\(0,1\) mutation|Gadam, N\(0,1\) mutation|"
                                         r"multistart|single)\s+(separable|rotated)\s+(\S+)\s+"
                                         r"(\d+)% of 12$", text, re.MULTILINE)}
    assert len(table) == 8, table
    for landscape in ("separable", "rotated"):
        normal = table["Gadam, N(0,1) mutation", landscape]
        multi = table["multistart", landscape]
        assert table["single", landscape][1] == 0  # "never reaches the global basin"
        assert normal[0] < multi[0] and normal[1] >= multi[1]
    assert table["Gadam, N(0,1) mutation", "separable"][1] > \
        table["multistart", "separable"][1]
    assert table["Gadam, U(0,1) mutation", "separable"][1] < \
        table["Gadam, N(0,1) mutation", "separable"][1]  # "the mutation matters"
    shrinks = (table["Gadam, N(0,1) mutation", "rotated"][1] -
               table["multistart", "rotated"][1])
    assert shrinks < (table["Gadam, N(0,1) mutation", "separable"][1] -
                      table["multistart", "separable"][1])  # "the advantage shrinks"
    leads = {(method, landscape): table[method, landscape][1] - table["multistart", landscape][1]
             for method in ("Gadam, U(0,1) mutation", "Gadam, N(0,1) mutation")
             for landscape in ("separable", "rotated")}
    clear = ("Gadam, N(0,1) mutation", "separable")
    assert leads.pop(clear) >= 25  # "led clearly in one case of four"
    assert all(0 <= lead <= 100 / 12 for lead in leads.values()), leads  # "small or nil"
    assert "budget B = 1440 gradient evaluations" in text and "evaluates f 152 times" in text


@pytest.mark.slow
def test_gadam_study_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["gadam_study"], book_build)
    prose = _prose("gadam_study")
    assert "budget B = 2400 gradient evaluations per run" in text
    assert "**Gadam does not beat Adam here.**" in prose
    val = re.search(r"final validation loss: best Gadam variant (\S+), Adam (\S+), "
                    r"multistart (\S+)", text)
    val_gadam, val_adam, val_multi = (float(v) for v in val.groups())
    assert val_adam < min(val_gadam, val_multi)
    difference, two_se = (float(v) for v in re.search(
        r"paired difference of test loss, .* - Adam: (\S+) \+- (\S+) \(two standard", text)
        .groups())
    assert abs(difference) < two_se  # "no difference the seeds can resolve"
    accuracy = re.search(r"mean test accuracy: best Gadam variant (\S+), Adam (\S+), "
                         r"multistart (\S+)", text)
    assert float(accuracy[2]) > max(float(accuracy[1]), float(accuracy[3]))
    gap, gap_two_se = (float(v) for v in re.search(
        r"the seed's U\(0,1\) mutation - no mutation: (\S+) \+- (\S+) \(two", text).groups())
    assert 0 < gap < gap_two_se  # "higher by ..., a difference the seeds cannot resolve"
    spread = {method: (float(std), float(worst)) for method, std, worst in re.findall(
        r"^(Gadam[^\n]*?)\s+\S+\s+\S+\s+(\S+)\s+\S+\s+(\S+)\s+\S+\s+\S+$", text, re.MULTILINE)}
    assert len(spread) == 3 and max(spread, key=lambda m: spread[m][0]) == \
        max(spread, key=lambda m: spread[m][1]) == "Gadam (seed: U(0,1))"  # "worst, widest"
    kept = [float(v) for v in re.search(r"children kept per generation, mean over variants "
                                        r"and seeds: (.*)", text)[1].split(", ")]
    assert kept[0] == 8.0 and max(kept[1:]) < 8.0  # "Early on the children always win"
    # The speed-up is a measurement (the page glues it, whatever it is): a timing is not
    # asserted here, only that the benchmark ran and printed its ratio.
    speedup = float(re.search(r"ratio loop, torch.optim.Adam / bmm: (\S+)", text)[1])
    assert speedup > 0
