"""Chapter 7 (Gadam): the two book pages state what their code prints.

The pages are read from the book build when they are in the table of contents, and executed
in a temporary folder otherwise (before the lead adds them to _toc.yml).
"""

import itertools
import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "07_gadam"
PAGES = {name: ROOT / "book" / ASSIGNMENT / f"{name}.ipynb" for name in ("gadam", "gadam_study")}


def test_pages_are_committed_without_outputs():
    roundtrip.assert_committed_without_outputs(PAGES.values())


def _prose(name: str) -> str:
    """The page's markdown, with every run of white space made one space."""
    return " ".join(" ".join(cell.source for cell in roundtrip.read(PAGES[name]).cells
                             if cell.cell_type == "markdown").split())


@pytest.fixture(scope="module")
def where(request, tmp_path_factory):
    """The book build when chapter 7 is in the table of contents, else a scratch folder."""
    if "book/07_gadam/gadam" in (ROOT / "_toc.yml").read_text(encoding="utf-8"):
        return request.getfixturevalue("book_build")
    return tmp_path_factory.mktemp("ch07")


@pytest.mark.slow
def test_gadam_page_computes_what_its_text_states(where):
    text = roundtrip.run_page(PAGES["gadam"], where)
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
    assert "budget B = 1440 gradient evaluations" in text and "evaluates f 152 times" in text


@pytest.mark.slow
def test_gadam_study_page_computes_what_its_text_states(where):
    text = roundtrip.run_page(PAGES["gadam_study"], where)
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
    assert float(re.search(r"U\(0,1\) mutation costs (\S+) in mean", text)[1]) > 0  # "hurts"
    kept = [float(v) for v in re.search(r"children kept per generation, mean over variants "
                                        r"and seeds: (.*)", text)[1].split(", ")]
    assert kept[0] == 8.0 and max(kept[1:]) < 8.0  # "Early on the children always win"
    speedup = float(re.search(r"ratio loop, torch.optim.Adam / bmm: (\S+)", text)[1])
    assert speedup > 1.5
