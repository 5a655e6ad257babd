"""Chapter 9 (strategies): the three book pages execute and their text states what they print.

Each page test reads the page as the run's book build executed it (``book_build``), the numbers
the code printed, and checks that the prose (markdown cells, whitespace normalized) states the
same numbers, and that the qualitative claims hold (e.g. clipping bounds the step).
"""

import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "book" / "09_strategies"
PAGES = {name: CHAPTER / f"{name}.ipynb" for name in ("difficulties", "strategies",
                                                       "deep_networks")}


def prose(name: str) -> str:
    """The page's markdown, every run of whitespace one space."""
    text = "\n".join(c.source for c in roundtrip.read(PAGES[name]).cells
                     if c.cell_type == "markdown")
    return " ".join(text.split())


def assert_stated(shown: str, text: str) -> None:
    assert shown in text, f"the prose does not state {shown!r}"


def test_pages_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs(PAGES.values())


def test_pages_call_gdlib_for_clipping_averaging_and_initialization():
    sources = {name: "\n".join(c.source for c in roundtrip.read(path).cells
                               if c.cell_type == "code") for name, path in PAGES.items()}
    assert "clipping.clipped_gradient" in sources["difficulties"]
    assert "averaging.polyak_average" in sources["strategies"]
    assert "averaging.ema_average" in sources["strategies"]
    assert "initializers.initialize_linear_layers" in sources["deep_networks"]
    for source in sources.values():  # no update rule re-typed: GD steps go through gdlib.optim
        assert "theta - lr *" not in source and "theta -= lr" not in source


@pytest.mark.slow
def test_difficulties_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["difficulties"], book_build)
    words = prose("difficulties")
    rows = re.findall(r"^\s+(10|100|1000)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", text, re.MULTILINE)
    assert len(rows) == 3
    for kappa, steps, closed, ratio in rows:
        assert abs(int(steps) - float(closed)) < 1.0, (kappa, steps, closed)
        assert_stated(f"${ratio}\\,\\kappa$", words)
    more = re.findall(r"(\d+) more steps; ln\(\d+\)/ln\(1\+lr\) = ([\d.]+)", text)
    assert len(more) == 2
    assert_stated(f"adds ${more[0][0]}$ steps", words)
    assert_stated(f"adds ${more[1][0]}$", words)
    assert_stated(f"predicts ${more[0][1]}$ and ${more[1][1]}$", words)
    offsets = re.findall(r"steps (\d+)\s+ln\(1/delta\)/ln\(1\+lr\) = (\d+)", text)
    gaps = [int(a) - int(b) for a, b in offsets]
    assert_stated(f"by {min(gaps)} to {max(gaps)} steps", words)
    assert "delta = 0       steps None" in text and "final theta = [0.0, 0.0]" in text
    largest = re.search(r"largest gradient norm on the path of plain GD: ([\d.]+)", text).group(1)
    assert_stated(f"(on the path below, ${largest}$)", words)
    runs = {name.strip(): values for name, values in re.findall(
        r"^(no clipping|clip by norm, c = 1|clip by value, c = 1)\s+(.*)$", text, re.MULTILINE)}
    numbers = {name: re.findall(r"[\d.]+(?=,|$)", v) for name, v in runs.items()}
    step, far, final = numbers["no clipping"]
    assert_stated(f"measures ${step}$", words)
    assert_stated(f"$\\theta_1 \\approx -{far}$", words)
    assert float(step) > 2 * 10**0.5  # more than twice the distance start -> minimum
    assert numbers["clip by norm, c = 1"][0] == "0.100"
    assert numbers["clip by value, c = 1"][0] == "0.141"
    assert_stated(f"(${final}$ against ${numbers['clip by norm, c = 1'][2]}$ and "
                  f"${numbers['clip by value, c = 1'][2]}$)", words)


@pytest.mark.slow
def test_strategies_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["strategies"], book_build)
    words = prose("strategies")
    rows = {rho: (cd, gd, f_cd, f_gd) for rho, cd, gd, f_cd, f_gd in re.findall(
        r"^\s*(0\.0|0\.5|0\.9|0\.99)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", text, re.MULTILINE)}
    assert rows["0.0"][:2] == ("1", "1")
    assert_stated(f"needs {rows['0.5'][0]} sweeps against {rows['0.5'][1]} steps", words)
    assert_stated(f"to {rows['0.99'][0]} sweeps at $\\rho = 0.99$", words)
    for rho in ("0.5", "0.9", "0.99"):
        cd, gd, f_cd, f_gd = rows[rho]
        assert int(cd) < int(gd)  # coordinate descent wins for every rho
        assert abs(float(f_cd) - float(rho) ** 2) < 1e-4 and abs(float(f_gd) - float(rho)) < 1e-4
        assert_stated(f"${f_cd}$", words)
    errors = {name.strip(): (a, b) for name, a, b in re.findall(
        r"^(last iterate|Polyak average \(from step \d+\)|EMA of iterates \(beta = 0.99\))\s+"
        r"([\d.]+)\s+([\d.]+)$", text, re.MULTILINE)}
    last, zero = errors["last iterate"], errors["Polyak average (from step 0)"]
    suffix, ema = errors["Polyak average (from step 200)"], errors["EMA of iterates (beta = 0.99)"]
    assert_stated(f"(${last[0]}$ at step 500, ${last[1]}$ at step 2000)", words)
    assert_stated(f"reaches ${suffix[1]}$ at step 2000", words)
    assert_stated(f"${zero[0]}$ at step 500, against the suffix average's ${suffix[0]}$, and "
                  f"${zero[1]}$ at step 2000", words)
    assert_stated(f"(${ema[0]}$ at step 500, ${ema[1]}$ at step 2000)", words)
    assert float(suffix[1]) < float(zero[1]) < float(last[1])
    ratio = re.search(r"last iterate / suffix average at step 2000: ([\d.]+)", text).group(1)
    assert_stated(f"${ratio}$ times smaller", words)
    fall, root = re.search(r"step 500 / step 2000: ([\d.]+); sqrt\(1800 / 300\) = ([\d.]+)",
                           text).groups()
    assert_stated(f"factor ${fall}$, against $\\sqrt 6 = {root}$", words)
    plain = re.search(r"plain GD, 500 steps: x = (\S+), f = (\S+)", text).groups()
    cont = re.search(r"continuation, 500 steps in all: x = (\S+), f = (\S+)", text).groups()
    best = re.search(r"global minimum of f on the grid: x = (\S+), f = (\S+)", text).groups()
    assert cont == best[:1] + (cont[1],) and cont[1] == best[1].rstrip(",")
    assert_stated(f"ends at $x \\approx {plain[0]}$ with $f \\approx {plain[1]}$", words)
    assert_stated(f"$x \\approx {cont[0]}$, $f \\approx {cont[1]}$", words)
    small = re.search(r"continuation from sigma = 0.3 only: x = (\S+),", text).group(1)
    assert small == plain[0]
    assert_stated(f"at $x \\approx {small}$, the ripple where plain gradient descent stops", words)
    damped = re.search(r"exp\(-9 \* 1.5\*\*2 / 2\) = ([\d.]+)e-05", text).group(1)
    assert_stated(f"\\approx {damped} \\cdot 10^{{-5}}$", words)


@pytest.mark.slow
def test_deep_networks_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["deep_networks"], book_build)
    words = prose("deep_networks")
    rows = {name.strip(): values.split() for name, values in re.findall(
        r"^(small|large|scaled 1/sqrt\(m\)|Glorot \(normalized\)|He|orthogonal|sparse \(k=15\))"
        r"\s+(\S+\s+\S+\s+\S+)$", text, re.MULTILINE)}
    assert len(rows) == 7
    ln10 = re.search(r"ln 10 = ([\d.]+)", text).group(1)
    values = roundtrip.glued(PAGES["deep_networks"], book_build)
    slug = {"small": "small", "scaled 1/sqrt(m)": "scaled", "Glorot (normalized)": "glorot",
            "He": "he", "orthogonal": "orthogonal", "sparse (k=15)": "sparse"}
    for stuck in ("small", "scaled 1/sqrt(m)"):
        assert abs(float(rows[stuck][2]) - float(ln10)) < 1e-3  # "ln 10 to three decimals"
        roundtrip.assert_glued_as_printed(words, values, f"init_{slug[stuck]}", rows[stuck][2])
    assert_stated(f"are $\\ln 10 = {ln10}$", words)
    assert rows["large"][2] == "nan"
    assert_stated(f"${rows['scaled 1/sqrt(m)'][1]}$) never move", words)
    trained = {"orthogonal": "orthogonal ends at", "He": "He at",
               "Glorot (normalized)": "Glorot at", "sparse (k=15)": "sparse at"}
    for name, words_before in trained.items():
        assert float(rows[name][2]) < 0.5, name  # "The four other rules train"
        key = f"init_{slug[name]}"
        assert_stated(f"{words_before} {{glue:text}}`{key}:.4f`", words)
        roundtrip.assert_glued_as_printed(words, values, key, rows[name][2])
    for name in ("He", "orthogonal", "Glorot (normalized)", "sparse (k=15)"):
        assert_stated(f"${rows[name][0]} \\to {rows[name][1]}$", words)
    bn = {(name, lr): pair.split() for name, lr, pair in re.findall(
        r"^(small|scaled 1/sqrt\(m\)|He)\s+(0.02|0.1)\s+(\S+\s+\S+)\s+plain", text, re.MULTILINE)}
    steps = {(name, lr): pair for name, lr, *pair in re.findall(
        r"^(small|scaled 1/sqrt\(m\)|He)\s+(0.02|0.1)\s+.*plain (\S+), batch norm (\S+)$", text,
        re.MULTILINE)}
    for (name, lr), (plain, normed) in bn.items():
        key = f"bn_{slug[name]}_{lr.replace('.', '')}"
        for kind, final, step in (("plain", plain, steps[name, lr][0]),
                                  ("normed", normed, steps[name, lr][1])):
            if f"{{glue:text}}`{key}_{kind}:" in words:
                roundtrip.assert_glued_as_printed(words, values, f"{key}_{kind}", final)
            if f"{{glue:text}}`{key}_{kind}_steps`" in words:
                roundtrip.assert_glued_as_printed(words, values, f"{key}_{kind}_steps", step)
    # "the normalized network reaches" a trained loss from the two starts that did not train
    assert float(bn["small", "0.02"][1]) < 0.5 and float(bn["scaled 1/sqrt(m)", "0.02"][1]) < 0.5
    assert_stated("reaches {glue:text}`bn_small_002_normed:.4f` and "
                  "{glue:text}`bn_scaled_002_normed:.4f`", words)
    # at lr 0.1 the plain network fails, the normalized one trains
    assert float(bn["He", "0.1"][0]) > 2.0 or bn["He", "0.1"][0] == "nan"
    assert float(bn["He", "0.1"][1]) < 0.5 and steps["He", "0.1"][1] != "None"
    assert_stated("the normalized one reaches {glue:text}`bn_he_01_normed:.4f`", words)
    plain_steps, bn_steps = steps["He", "0.02"]
    assert int(plain_steps) < int(bn_steps)  # "not faster at the same learning rate"
    assert_stated("after {glue:text}`bn_he_002_plain_steps` steps, the normalized one after "
                  "{glue:text}`bn_he_002_normed_steps`", words)


# --- the exercise (solutions/09_strategies): committed notebooks, then the grading round trip --

ASSIGNMENT = "09_strategies"
SOLUTION = roundtrip.solution_path(ASSIGNMENT)
RELEASE = roundtrip.release_path(ASSIGNMENT)
POINTS = {"clip_tests": 5.0, "polyak_tests": 5.0}
ANSWERS = ("clip_answer", "polyak_answer")


def test_solution_has_points_markers_and_hidden_tests():
    roundtrip.assert_solution_cells(ASSIGNMENT, POINTS, ANSWERS)
    nb = roundtrip.read(SOLUTION)
    for grade_id in POINTS:
        hidden = roundtrip.cell_by_id(nb, grade_id).source.split("BEGIN HIDDEN TESTS")[1]
        assert "random_cases(" in hidden, grade_id


def test_grade_cells_import_what_they_call():
    """No grade cell calls a name that only an earlier cell defines (an answer could rebind it)."""
    nb = roundtrip.read(SOLUTION)
    for grade_id, answer in (("clip_tests", "clip_by_norm"), ("polyak_tests", "polyak_step")):
        source = roundtrip.cell_by_id(nb, grade_id).source
        _, outside = roundtrip.grade_cell_names(source)
        assert outside - {answer} == set(), grade_id


def test_release_holds_stubs_only():
    text = roundtrip.assert_release_stubs(ASSIGNMENT, ANSWERS)
    assert "max_norm / norm" not in text  # the instructor's answer
    assert "random_cases(" not in text  # called by the hidden tests only


def test_exercise_notebooks_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs((SOLUTION, RELEASE))


def test_scan_does_not_flag_the_release():
    result = roundtrip.scan(RELEASE)
    assert result.returncode == 0, result.stdout


WRONG = {
    # Clips each coordinate (by value) instead of rescaling the whole vector.
    "clip_answer": """
def clip_by_norm(grad, max_norm):
    return np.clip(grad, -max_norm, max_norm)
""",
    # Divides by t - 1: the mean of one point too few.
    "polyak_answer": """
def polyak_step(average, theta, t):
    return average + (theta - average) / max(t - 1, 1)
""",
}

SUBTLE = {  # rescales every gradient to length c, the short ones too
    "clip_answer": """
def clip_by_norm(grad, max_norm):
    norm = np.sqrt(np.sum(grad * grad))
    return grad * (max_norm / norm) if norm > 0 else grad.copy()
""",
}

CALLS_GDLIB = {
    "clip_answer": """
from gdlib.clipping import clip_by_norm as _clip


def clip_by_norm(grad, max_norm):
    return _clip(grad, max_norm)
""",
}

SUBMISSIONS = {"correct": {}, "unanswered": lambda: roundtrip.read(RELEASE), "wrong": WRONG,
               "subtle": SUBTLE, "calls_gdlib": CALLS_GDLIB}


@pytest.fixture(scope="module")
def graded(tmp_path_factory, released_course):
    """Release 09_strategies, submit every student of SUBMISSIONS, autograde them in one call."""
    directory = tmp_path_factory.mktemp("course09")
    with roundtrip.autograded(directory, ASSIGNMENT, SUBMISSIONS, released_course) as result:
        yield result


@pytest.mark.slow
def test_unanswered_release_fails_only_in_its_test_cells(tmp_path):
    roundtrip.assert_only_test_cells_fail_unanswered(ASSIGNMENT, POINTS, tmp_path)


@pytest.mark.slow
def test_exercise_scores(graded):
    assert graded.scores["correct"] == POINTS
    assert graded.scores["unanswered"] == dict.fromkeys(POINTS, 0.0)
    assert graded.scores["wrong"] == dict.fromkeys(POINTS, 0.0)
    assert graded.scores["subtle"] == {**POINTS, "clip_tests": 0.0}
    assert graded.scores["calls_gdlib"] == {**POINTS, "clip_tests": 0.0}
    assert "uses gdlib.clipping.clip_by_norm" in graded.feedback("calls_gdlib", "clip_tests")
    assert "g = (3, 4), c = 10" in graded.feedback("subtle", "clip_tests")
