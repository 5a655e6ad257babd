"""Pages revised or added for issue 12 (chapters 1-4): what their text states is what they print."""

import re
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
NOISY = BOOK / "04_momentum" / "noisy_gradients.ipynb"


def test_noisy_gradients_page_is_labelled_and_links_the_fixed_rate_sweep():
    source = "".join(c.source for c in roundtrip.read(NOISY).cells)
    assert source.startswith("(momentum-minibatch)=\n# ")
    assert "{doc}`../05_adaptive/adaptive_study`" in source
    assert (BOOK / "05_adaptive" / "adaptive_study.ipynb").is_file()


@pytest.mark.slow
def test_noisy_gradients_page_states_what_the_run_shows(book_build):
    text = roundtrip.run_page(NOISY, book_build)
    assert "effective rate 0.1 for every method" in text
    rows = {name: (float(final), float(spread)) for name, final, spread in re.findall(
        r"^(GD|Momentum|Nesterov): full loss after 5 epochs ([\d.e-]+), "
        r"std of the last epoch's mini-batch losses ([\d.e-]+)$", text, re.MULTILINE)}
    assert set(rows) == {"GD", "Momentum", "Nesterov"}
    ratio = float(re.search(r"momentum's fluctuation / GD's: ([\d.]+)", text).group(1))
    # "practically the same full loss": within 10 % of each other
    finals = [final for final, _ in rows.values()]
    assert max(finals) < 1.1 * min(finals), rows
    # "fluctuates almost as much with momentum as without": ratio between 0.9 and 1.1
    assert 0.9 < ratio < 1.1, ratio
    assert abs(ratio - rows["Momentum"][1] / rows["GD"][1]) < 0.01



@pytest.mark.slow
def test_beta_sweep_at_one_effective_rate_shows_what_the_prose_says(book_build):
    """Seed 002's beta sweep (issue 12), at eta = 0.1 (1 - beta): the final losses close to each
    other and to GD's, the fluctuation falling only slightly but for one spike, each glued value
    printed."""
    text = roundtrip.run_page(NOISY, book_build)
    rows = {float(b): (float(eta), float(final), float(spread)) for b, eta, final, spread in
            re.findall(r"^ +(0\.\d) +([\d.]+) +([\d.]+) +([\d.]+)$", text, re.MULTILINE)}
    assert sorted(rows) == [0.1, 0.3, 0.5, 0.7, 0.9]
    for beta, (eta, _, _) in rows.items():
        assert eta == pytest.approx(0.1 * (1 - beta))  # one effective rate
    finals = [final for _, final, _ in rows.values()]
    assert max(finals) < 1.1 * min(finals)  # "beta changes little"
    values = roundtrip.glued(NOISY, book_build)
    assert float(values["sweep_final_min"]) == pytest.approx(min(finals), abs=5e-5)
    assert float(values["sweep_final_max"]) == pytest.approx(max(finals), abs=5e-5)
    assert float(values["sweep_others"]) < 0.1  # "the other four lie within ... of GD's value"
    spike = max(rows, key=lambda b: rows[b][2])
    assert float(values["sweep_spike_beta"]) == spike
    others = [rows[b][2] for b in sorted(rows) if b != spike]
    assert others == sorted(others, reverse=True)  # "falls ... as beta grows"
    assert 0.9 < rows[0.9][2] / rows[0.1][2] < 1  # "only slightly"


CHAPTER_PAGES = sorted(p for chapter in ("01_losses", "02_sgd", "03_ewma", "04_momentum")
                       for p in (BOOK / chapter).glob("*.ipynb"))


@pytest.mark.parametrize("page", CHAPTER_PAGES, ids=lambda p: p.stem)
def test_every_page_of_chapters_1_to_4_ends_with_questions_and_folded_answers(page):
    last = roundtrip.read(page).cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Questions\n"), page.name
    questions = re.findall(r"^\d+\. ", last.source, re.MULTILINE)
    answers = last.source.count(":::{admonition} Answer\n:class: dropdown\n")
    assert 3 <= len(questions) <= 5 and answers == len(questions), (page.name, questions)


def test_chapter_9_pages_link_their_exercise():
    for name in ("difficulties", "strategies"):
        source = "".join(c.source for c in roundtrip.read(BOOK / "09_strategies" /
                                                          f"{name}.ipynb").cells)
        assert "exercises/09_strategies/09_strategies.ipynb" in source, name
