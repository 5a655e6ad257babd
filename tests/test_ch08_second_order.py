"""Chapter 8 (second-order methods): the two book pages state what their code prints.

The exercise (a Newton step and the L-BFGS two-loop recursion) is not written yet; its round
trip will go here, modelled on tests/test_ch04_momentum.py.
"""

import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = {name: ROOT / "book" / "08_second_order" / f"{name}.ipynb"
         for name in ("newton", "quasi_newton")}


def test_pages_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs(PAGES.values())


def _source(name: str) -> str:
    return "\n".join(cell.source for cell in roundtrip.read(PAGES[name]).cells
                     if cell.cell_type == "markdown")


@pytest.mark.slow
def test_newton_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["newton"], book_build)
    prose = _source("newton")
    assert "388 steps to get within 1e-6" in text and "needs 388 steps" in prose
    assert float(re.search(r"after one Newton step: (\S+)", text).group(1)) < 1e-12
    assert float(re.search(r"max \|scale \* phi_k - theta_k\| = (\S+)", text).group(1)) < 1e-12
    assert "after 20 steps" in text and "e+" in text.split("after 20 steps")[0][-12:]
    assert "1 Newton step to [0.0, 0.0], gradient [0.0, 0.0]" in text
    assert "1 Newton step to [0.0, 0.0], the maximum" in text
    pure = re.search(r"pure Newton +from 441 starts: minimum (\d+)%, saddle (\d+)%", text)
    damped = re.search(r"damped Newton +from 441 starts: minimum (\d+)%, saddle 0%, "
                       r"runs away (\d+)%", text)
    assert f"{pure.group(2)}% of them end at" in prose and f"only {pure.group(1)}% at" in prose
    assert f"{damped.group(1)}% of the starts reach" in prose
    assert f"{damped.group(2)}% of all starts, run away" in prose
    assert "NotDescentDirectionError" in text
    exponent = float(re.search(r"time grows like k\^(\S+) from", text).group(1))
    assert 2.2 <= exponent <= 3.6, exponent  # measured: O(k^3) at the largest sizes
    assert "8 TB" in text and "8 TB for its" in prose


@pytest.mark.slow
def test_quasi_newton_page_computes_what_its_text_states(book_build):
    text = roundtrip.run_page(PAGES["quasi_newton"], book_build)
    prose = _source("quasi_newton")
    cg = dict(re.findall(r"^(.+?) +condition .*?: +(\d+) iterations", text, re.MULTILINE))
    assert int(cg["five distinct eigenvalues"]) == 5
    assert int(cg["random M M^T / n + I"]) < 100 < int(cg["eigenvalues 1 ... 1e4"]) <= 1000
    assert "condition      4.78" in text and "condition number about 5" in prose
    assert float(re.search(r"max \|two_loop\(g\) - B g\| = (\S+)", text).group(1)) < 1e-12
    assert "max |gdlib - torch.optim.LBFGS| = 0.0e+00" in text
    values = roundtrip.glued(PAGES["quasi_newton"], book_build)
    for problem, block in zip(("Rosenbrock", "logistic regression"),
                              text.split("iterations and seconds until")[1:]):
        counts = dict(re.findall(r"^  (\S+(?: \(PR\+\))?)(?: \(lr \S+\))? +(\d+) iterations",
                                 block, re.MULTILINE))
        for method, count in counts.items():
            name = {"CG (PR+)": "CG", "Momentum": "momentum", "GD": "gradient descent"}.get(
                method, method)
            slug = method.split()[0].lower().replace("-", "")
            key = f"race_{problem.split()[0].lower()}_{slug}"
            roundtrip.assert_glued_as_printed(prose, values, key, count)
            assert name in prose, name
    assert "not within 3000 iterations" in text and "does not get there in\n3000" in prose
    assert "unusually large 3" in prose and "Adam (lr 3)" in text
    newton_slower = re.findall(r"median seconds per iteration: L-BFGS (\S+), Newton (\S+)", text)
    lbfgs, newton = map(float, newton_slower[1])  # the logistic regression
    assert newton > lbfgs
