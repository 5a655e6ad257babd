"""The landscape gallery (book/gallery/landscapes.ipynb): the page runs cleanly, stays small,
its animations play offline, and every lesson it states agrees with the numbers it prints.

The page prints, per landscape, the learning rate each method chose from the shared grid with
its steps to the target, the whole sweep, and "Verdict:" lines for the lessons of seed 001's
pictures. The slow tests execute the page (through the strict book build once the page is in
``_toc.yml``, else on its own) and recompute every verdict and count from the printed tables.
"""

import re
import shutil
import subprocess
from pathlib import Path

import course_roundtrip as roundtrip
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "gallery" / "landscapes.ipynb"
IN_TOC = "book/gallery/landscapes" in (ROOT / "_toc.yml").read_text(encoding="utf-8")
ADAPTIVE = ("Adagrad", "RMSprop", "Adadelta", "Adam", "Nadam", "AdamW")
MAX_NOTEBOOK_BYTES = 4_000_000  # four animations of at most 60 small frames, four figures
MAX_FRAMES = 60


class ExecutedCopy:
    """What ``roundtrip.run_page`` reads instead of a book build: one executed notebook."""

    def __init__(self, path: Path):
        self.path = path

    def executed(self, _page: Path) -> Path:
        return self.path


# --- fast ---------------------------------------------------------------------------------------


def test_page_is_committed_without_outputs():
    roundtrip.assert_committed_without_outputs([PAGE])


def test_page_says_that_tuning_is_fair_and_calls_gdlib():
    nb = roundtrip.read(PAGE)
    text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    assert "same for every method and every landscape" in text
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert "landscapes.tune(f, METHODS, GRID, f.start, BUDGET, target)" in code
    assert ".update(" not in code and "sqrt" not in code  # no update rule written in the page
    assert code.count("animate(") >= 5 and code.count("display(HTML(") == 1


def test_the_landscapes_are_the_ones_the_page_describes():
    """The definitions the page's prose gives, against gdlib.functions."""
    import math

    import numpy as np

    from gdlib import functions

    valley = functions.LONG_VALLEY  # 0.02 u^2 + v^2, rotated by 45 degrees, minimum 0 at 0
    curvatures, directions = np.linalg.eigh(valley.hessian(np.zeros(2)))
    np.testing.assert_allclose(curvatures, [0.04, 2.0])
    np.testing.assert_allclose(np.abs(directions[:, 0]), [math.sqrt(0.5)] * 2)
    assert valley.minimum == (0.0, 0.0) and valley.f_min == 0.0
    beale = functions.BEALE  # c = (1.5, 2.25, 2.625), minimum f(3, 0.5) = 0
    assert beale.minimum == (3.0, 0.5) and beale.f_min == 0.0
    assert beale.value(np.array([0.0, 0.0])) == 1.5**2 + 2.25**2 + 2.625**2
    saddle = functions.SADDLE  # x^2 - y^2, start a thousandth off the ridge
    assert saddle.start == (-1.5, 1e-3) and saddle.value(np.array([0.0, 1.0])) == -1.0
    rosenbrock = functions.ROSENBROCK  # (1 - x)^2 + 100 (y - x^2)^2 from (-1.2, 1)
    assert rosenbrock.start == (-1.2, 1.0) and rosenbrock.minimum == (1.0, 1.0)
    assert rosenbrock.value(np.array([0.0, 1.0])) == 1.0 + 100.0


# --- reading what the page printed --------------------------------------------------------------


def races(text: str) -> dict:
    """``{landscape name: {method: (lr, steps or None)}}`` from the per-landscape tables."""
    found = {}
    for block in re.split(r"\n(?=\S.*, start \()", text):
        header = re.match(r"(.*), start \(", block)
        if not header or "best lr of the grid" not in block:
            continue
        rows = {}
        table = block.split("best lr of the grid")[1].split("\n\n")[0]
        for line in table.splitlines()[1:]:
            match = re.match(r"(\w+)\s+([\d.e-]+)( \*)?\s+.*?\s{2,}(\d+|did not reach within \d+)$",
                             line)
            if match:
                steps = match.group(4)
                rows[match.group(1)] = (float(match.group(2)),
                                        int(steps) if steps.isdigit() else None)
        found[header.group(1)] = rows
    return found


def sweeps(text: str) -> dict:
    """``{landscape name: (grid, {method: [steps or None per rate]})}`` from the sweep tables."""
    found = {}
    for block in re.split(r"\n(?=\S.*, start \()", text):
        header = re.match(r"(.*), start \(", block)
        if not header or "for every learning rate of the grid" not in block:
            continue
        lines = block.split("for every learning rate of the grid:\n")[1].split("\n\n")[0]
        lines = lines.strip().splitlines()
        grid = [float(x) for x in lines[0].split()[1:]]
        table = {}
        for line in lines[1:]:
            name, *cells = line.split()
            table[name] = [None if c == "-" else int(c) for c in cells]
        found[header.group(1)] = (grid, table)
    return found


def faster_than_gd(rows: dict) -> set:
    gd = rows["GD"][1]
    return {name for name, (_, steps) in rows.items() if name != "GD" and steps is not None
            and (gd is None or steps < gd)}


def names(listing: str) -> set:
    return {name.strip() for name in listing.split(",") if name.strip() and name != "none"}


def check_page(text: str) -> None:
    """Every table, count and verdict the page prints agrees with its own numbers."""
    setup = re.search(r"learning-rate grid: (.*)\nbudget: (\d+) steps", text)
    grid, budget = [float(x) for x in setup.group(1).split(", ")], int(setup.group(2))
    floor = float(re.search(r"across-valley distance below (\d+)% of the start's", text).group(1))
    methods = re.search(r"methods: (.*) \((\d+)\); adaptive", text).group(1).split(", ")
    assert methods[:8] == ["GD", "Momentum", "Nesterov", "Adagrad", "RMSprop", "Adadelta",
                           "Adam", "Nadam"]

    tables, sweep = races(text), sweeps(text)
    assert len(tables) == 4 and set(tables) == set(sweep)
    for landscape, rows in tables.items():
        assert list(rows) == methods, landscape
        sweep_grid, runs = sweep[landscape]
        assert sweep_grid == grid and list(runs) == methods
        for name, (lr, steps) in rows.items():
            # Fair tuning: the chosen rate is the grid's fastest (ties: the smaller rate).
            reached = [(k, i) for i, k in enumerate(runs[name]) if k is not None]
            if reached:
                fewest, index = min(reached)
                assert (steps, lr) == (fewest, grid[index]), (landscape, name)
            else:
                assert steps is None, (landscape, name)
        assert f"did not reach within {budget}" in text

    valley, beale, saddle, rosenbrock = (tables[key] for key in (
        "quadratic valley rotated by 0.785", "Beale", "saddle x^2 - y^2",
        "Rosenbrock (a=1, b=100)"))

    # GD crawls along the valley floor (long valley and Rosenbrock).
    crawls = re.findall(r"GD \(lr ([\d.e-]+)\) reaches the valley floor after (\d+) steps and "
                        r"spends (\d+) of its (\d+) steps \((\d+)%\) on it.*?\n.*?\n"
                        r"Verdict: (GD crawls along the valley floor|GD does not spend)",
                        text, re.DOTALL)
    assert len(crawls) == 2 and floor == 1  # the page's FLOOR, used by both measurements
    for (lr, floor, on_floor, total, share, verdict), rows in zip(crawls, (valley, rosenbrock)):
        assert float(lr) == rows["GD"][0]
        assert int(total) == (rows["GD"][1] or budget)
        assert int(floor) + int(on_floor) == int(total)
        assert abs(int(share) - 100 * int(on_floor) / int(total)) <= 0.5
        assert (verdict == "GD crawls along the valley floor") == (
            int(on_floor) / int(total) >= 0.5)

    # Momentum overshoots (long valley).
    line = re.search(r"as a share of the start's distance:\n  (.*)\nVerdict: (.*)", text)
    over = {name: float(value) for name, value in
            (item.rsplit(" ", 1) for item in line.group(1).split(", "))}
    assert list(over) == methods
    shows = over["Momentum"] > 0 and over["GD"] == 0
    assert line.group(2).startswith("momentum overshoots") == shows, line.group(2)

    # "Faster than GD" lines, per landscape, against the tables.
    listed = re.findall(r"Faster than GD here: (.*?)(?: \((\d+) of (\d+)\))?\n", text)
    assert len(listed) == 3
    for (names_text, count, of), rows in zip(listed, (valley, beale, rosenbrock)):
        assert names(names_text) == faster_than_gd(rows)
        if count:
            assert (int(count), int(of)) == (len(faster_than_gd(rows)), len(methods) - 1)
    fastest = re.findall(r"fastest first: (.*)\n", text)
    for line, rows in zip(fastest, (beale, rosenbrock)):
        order = [(int(k), name) for name, k in re.findall(r"(\w+) \((\d+)\)", line)]
        assert order == sorted((k, n) for n, (_, k) in rows.items() if k is not None)

    # Adaptive methods escape the saddle.
    adaptive = [name for name in methods if name in ADAPTIVE]
    verdict = re.search(r"Verdict: (\d+) of the (\d+) adaptive methods escape the saddle faster "
                        r"than GD at their best rates: ([^;.]*)(?:; not ([^.]*))?\.", text)
    escaped = {name for name in faster_than_gd(saddle) if name in ADAPTIVE}
    assert names(verdict.group(3)) == escaped
    assert (int(verdict.group(1)), int(verdict.group(2))) == (len(escaped), len(adaptive))
    assert names(verdict.group(4) or "") == set(adaptive) - escaped
    _, saddle_runs = sweep["saddle x^2 - y^2"]
    for name, wins in re.findall(r"^  (\w+)\s+(\d+) of \d+$", text, re.MULTILINE):
        expected = sum(a is not None and (b is None or a < b)
                       for a, b in zip(saddle_runs[name], saddle_runs["GD"]))
        assert int(wins) == expected, name
    first = re.search(r"\|theta_2 change\| at lr [\d.]+:\n  (.*)\n", text).group(1)
    first = {n: float(v) for n, v in (item.rsplit(" ", 1) for item in first.split(", "))}
    for name in ("Adagrad", "RMSprop", "Adam", "Nadam"):  # "at least the learning rate"
        assert first[name] > 100 * first["GD"], name
    assert first["Adadelta"] < first["GD"]  # "tiny in every coordinate"

    # The summary counts and verdict, and the summary's prose: how many methods beat GD
    # depends on the landscape, and on some landscape not every method beats it.
    counts = dict(re.findall(r"^(long valley|Beale|saddle|Rosenbrock): (\d+) of the \d+ other",
                             text, re.MULTILINE))
    beaten = [len(faster_than_gd(rows)) for rows in (valley, beale, saddle, rosenbrock)]
    assert [int(counts[key]) for key in ("long valley", "Beale", "saddle", "Rosenbrock")] == beaten
    others = len(methods) - 1
    summary = re.search(r"Verdict: GD is beaten by (\d+) to (\d+) of the (\d+) other methods, "
                        r"depending on the landscape; by all of them on (\d+) of the 4", text)
    assert [int(x) for x in summary.groups()] == [
        min(beaten), max(beaten), others, sum(k == others for k in beaten)]
    assert min(beaten) < max(beaten) and sum(k == others for k in beaten) < 4
    # "which optimizer is best depends on the problem": the fastest differ between landscapes.
    winners = []
    for key, rows in zip(("long valley", "Beale", "saddle", "Rosenbrock"),
                         (valley, beale, saddle, rosenbrock)):
        best = min(k for _, k in rows.values() if k is not None)
        expected = {name for name, (_, k) in rows.items() if k == best}
        line = re.search(rf"fastest on {key}: (.*) \((\d+) steps\)", text)
        assert names(line.group(1)) == expected and int(line.group(2)) == best, key
        winners.append(expected)
    assert not set.intersection(*winners)
    assert "Verdict: the fastest method is not the same on every landscape." in text


def check_notebook(path: Path) -> None:
    """Size, and the animations: a JavaScript player, few frames, nothing from the network."""
    size = path.stat().st_size
    assert size < MAX_NOTEBOOK_BYTES, f"executed page is {size} bytes"
    players = [output.data["text/html"] for cell in roundtrip.read(path).cells
               if cell.cell_type == "code" for output in cell.outputs
               if "text/html" in output.get("data", {})]
    assert len(players) == 4
    for html in players:
        assert "new Animation(" in html and "<script" in html
        assert "http://" not in html and "https://" not in html
        assert 2 <= html.count("data:image/png;base64,") <= MAX_FRAMES


# --- slow: the executed page --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not IN_TOC, reason="not in _toc.yml yet: the next test runs the page alone")
def test_gallery_page_in_the_book_build_states_what_it_computes(book_build):
    check_page(roundtrip.run_page(PAGE, book_build))
    check_notebook(book_build.executed(PAGE))
    html = book_build.html / "book" / "gallery" / "landscapes.html"
    assert html.is_file() and html.stat().st_size < MAX_NOTEBOOK_BYTES
    assert "https://maxcdn" not in html.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.skipif(IN_TOC, reason="the book build executes the page (test above)")
def test_gallery_page_states_what_it_computes(tmp_path):
    executed = tmp_path / PAGE.name
    roundtrip.nbformat.write(roundtrip.execute(roundtrip.read(PAGE), PAGE.parent), executed)
    check_page(roundtrip.run_page(PAGE, ExecutedCopy(executed)))
    check_notebook(executed)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs a headless chromium")
def test_the_animations_play_in_the_built_page_offline(book_html):
    """The built gallery page itself, opened by headless Chromium with no network: every
    animation's player starts, and after "play" each image shows another frame than at load."""
    built = book_html / "book" / "gallery" / "landscapes.html"
    html = built.read_text(encoding="utf-8")
    idents = re.findall(r'id="_anim_img(\w+)"', html)
    assert len(idents) >= 4, "expected one animation per landscape"
    frames = {}  # each player's frames, in order, from its script
    for ident in idents:
        start = html.index(f'var img_id = "_anim_img{ident}"')
        block = html[start:html.index("</script>", start)]
        frames[ident] = [re.sub(r"\\\n", "", f) for f in
                         re.findall(r'frames\[\d+\] = "(data:image/png;base64,[^"]+)"', block)]
        assert len(frames[ident]) > 1, ident
    probe = built.with_name("landscapes_play_probe.html")  # beside it: the assets resolve
    script = "".join(f"anim{i}.play_animation();" for i in idents)
    probe.write_text(html.replace("</body>", f"<script>setTimeout(function() {{ {script} }}, "
                                              "100);</script></body>"), encoding="utf-8")
    try:
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=300, check=False).stdout
    finally:
        probe.unlink()
    for ident in idents:
        shown = re.search(rf'id="_anim_img{ident}"[^>]*src="([^"]+)"', dom)
        assert shown, f"animation {ident}: the player did not show any frame"
        # played to its end (the player stops on the last frame), not left on the first
        assert shown.group(1) == frames[ident][-1] != frames[ident][0], ident
