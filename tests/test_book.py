"""The HTML book: strict build, every page present, works offline, references and glossary.

The slow tests share one from-scratch build per session (``book_build``/``book_html`` in
``conftest.py``). The fast tests check the MathJax copy of ``book/_ext/offline_assets.py`` alone.
"""

import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# --- helpers ---------------------------------------------------------------------------------


class Page(HTMLParser):
    """The tags (name, attributes) and the visible text of one HTML page."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.path = path
        self.tags: list[tuple[str, dict]] = []
        self.terms: list[str] = []  # text of every <dt> (glossary terms)
        self._chunks: list[str] = []
        self._term: list[str] | None = None
        self._skip = 0  # depth inside <script>/<style>
        self.feed(path.read_text(encoding="utf-8"))
        self.text = " ".join(self._chunks)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {key: value or "" for key, value in attrs}))
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "dt":
            self._term = []

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag == "dt" and self._term is not None:
            self.terms.append("".join(self._term).strip().rstrip("¶#").strip())
            self._term = None

    def handle_data(self, data):
        if self._skip:
            return
        self._chunks.append(data)
        if self._term is not None:
            self._term.append(data)

    def sources(self, tag: str, attribute: str) -> list[str]:
        return [attrs[attribute] for name, attrs in self.tags
                if name == tag and attrs.get(attribute)]


def is_remote(url: str) -> bool:
    return "://" in url or url.startswith("//")


def toc_files(toc_path: Path = REPO / "_toc.yml") -> list[str]:
    """Every ``file:`` of the table of contents (root first), without suffix."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or ():
            if "file" in entry:
                files.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    walk([toc])
    return [str(Path(f).with_suffix("")) if Path(f).suffix in (".md", ".ipynb") else f
            for f in files]


def page(book_html: Path, docname: str) -> Page:
    path = book_html / f"{docname}.html"
    assert path.is_file(), f"no HTML page {path.relative_to(book_html)} for {docname!r}"
    return Page(path)


def all_pages(book_html: Path) -> list[Page]:
    pages = [Page(path) for path in sorted(book_html.rglob("*.html"))
             if "_static" not in path.relative_to(book_html).parts]
    assert pages, f"no HTML pages under {book_html}"
    return pages


def mathjax_sources(p: Page) -> list[str]:
    return [src for src in p.sources("script", "src") if "mathjax" in src.lower()]


# --- fast: the MathJax copy of the offline_assets extension -----------------------------------


def load_offline_assets():
    spec = importlib.util.spec_from_file_location(
        "offline_assets", REPO / "book" / "_ext" / "offline_assets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mathjax_copy(tmp_path_factory):
    offline_assets = load_offline_assets()
    target = tmp_path_factory.mktemp("mathjax")
    offline_assets.copy_mathjax(target)
    return target, offline_assets.mathjax_es5_dir()


def test_mathjax_copy_has_component_fonts_and_licence(mathjax_copy):
    target, _ = mathjax_copy
    component = target / "tex-mml-chtml.js"
    assert component.stat().st_size > 500_000, "tex-mml-chtml.js missing or truncated"
    assert "Apache License" in (target / "LICENSE").read_text(encoding="utf-8")
    # CommonHTML loads its fonts from [mathjax]/output/chtml/fonts/woff-v2 (its default fontURL).
    fonts = target / "output" / "chtml" / "fonts" / "woff-v2"
    for font in ("MathJax_Main-Regular.woff", "MathJax_Math-Italic.woff",
                 "MathJax_Size1-Regular.woff", "MathJax_AMS-Regular.woff"):
        assert (fonts / font).is_file(), f"font {font} not copied"


def test_mathjax_copy_has_every_extension_the_component_can_load(mathjax_copy):
    """Every ``[tex]/name``, ``[mml]/name`` and ``a11y/``, ``ui/`` component named in the
    combined file (what autoload, \\require and the menu fetch at run time) is in the copy."""
    target, _ = mathjax_copy
    source = (target / "tex-mml-chtml.js").read_text(encoding="utf-8")
    tex = {name.lower() for name in re.findall(r"\[tex\]/([A-Za-z0-9-]+)", source)}
    assert {"boldsymbol", "cancel", "mhchem", "physics"} <= tex  # the scan finds something
    missing = [f"input/tex/extensions/{name}.js" for name in sorted(tex)
               if not (target / "input" / "tex" / "extensions" / f"{name}.js").is_file()]
    missing += [f"input/mml/extensions/{name}.js"
                for name in sorted(set(re.findall(r"\[mml\]/([A-Za-z0-9-]+)", source)))
                if not (target / "input" / "mml" / "extensions" / f"{name}.js").is_file()]
    missing += [f"{path}.js" for path in sorted(set(re.findall(r'"((?:a11y|ui)/[a-z-]+)"', source)))
                if not (target / f"{path}.js").is_file()]
    assert not missing, f"files the component may load are not copied: {missing}"
    # a11y/sre.js loads the speech-rule maps from [mathjax]/sre/mathmaps.
    assert (target / "sre" / "mathmaps" / "en.json").is_file()


def test_mathjax_copy_is_smaller_than_the_release(mathjax_copy):
    target, es5 = mathjax_copy

    def size(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    assert size(target) < size(es5) / 2, "copied (nearly) all of MathJax instead of what runs"


# --- slow: the built book ------------------------------------------------------------------

slow = pytest.mark.slow


@slow
def test_build_exits_zero(book_build):
    assert book_build.returncode == 0, (
        f"jupyter-book build -n -W --keep-going exited with {book_build.returncode}; "
        f"end of its log:\n{book_build.log_tail()}")


@slow
def test_index_and_every_toc_page_exist(book_html):
    assert (book_html / "index.html").is_file()
    missing = [f for f in toc_files() if not (book_html / f"{f}.html").is_file()]
    assert not missing, f"pages in _toc.yml without HTML: {missing}"


@slow
def test_mathjax_is_loaded_from_the_book_itself(book_html):
    intro = page(book_html, toc_files()[0])  # the root page has math
    assert mathjax_sources(intro), "the root page does not load MathJax"
    for p in all_pages(book_html):
        for src in mathjax_sources(p):
            assert not is_remote(src), f"{p.path.name} loads MathJax from {src}"
            local = (p.path.parent / src.split("?")[0]).resolve()
            assert local.is_file(), f"{p.path.name}: MathJax file {src} not in the build"
            fonts = local.parent / "output" / "chtml" / "fonts" / "woff-v2"
            assert (fonts / "MathJax_Main-Regular.woff").is_file(), "MathJax fonts not copied"


@slow
def test_no_page_loads_anything_from_the_network(book_html):
    remote = []
    for p in all_pages(book_html):
        for tag, attribute in (("script", "src"), ("img", "src"), ("iframe", "src")):
            remote += [(p.path.name, tag, url) for url in p.sources(tag, attribute)
                       if is_remote(url)]
        remote += [(p.path.name, "link", attrs["href"]) for name, attrs in p.tags
                   if name == "link" and is_remote(attrs.get("href", ""))
                   and attrs.get("rel", "") not in ("canonical", "alternate")]
    assert not remote, f"assets loaded from the network: {remote}"
    css_imports = [(css.name, m.group(0)) for css in book_html.joinpath("_static").rglob("*.css")
                   for m in re.finditer(r"(url\(|@import)\s*['\"]?(https?:)?//[^)'\";]*",
                                        css.read_text(encoding="utf-8", errors="replace"))]
    assert not css_imports, f"stylesheets fetching from the network: {css_imports}"


OPTIMIZER_PAPERS = [  # (family names of the authors, words of the title)
    (("Kingma", "Ba"), "Adam"),
    (("Dozat",), "Nesterov momentum into Adam"),
    (("Duchi", "Hazan", "Singer"), "Adaptive subgradient methods"),
    (("Qian",), "momentum term"),
    (("Nesterov",), "convex programming"),
    (("Tieleman", "Hinton"), "RMSProp"),
    (("Zeiler",), "ADADELTA"),
    (("Zhang", "Gouza"), "GADAM"),
]


@slow
def test_bibliography_lists_the_optimizer_papers(book_html):
    html = (book_html / "book" / "bibliography.html").read_text(encoding="utf-8")
    entries = [re.sub(r"<[^>]+>", "", entry) for entry in re.findall(
        r'<div class="citation"[^>]*>(.*?)</div>', html, flags=re.DOTALL)]
    assert entries, "the bibliography page has no entries"
    for authors, title in OPTIMIZER_PAPERS:
        found = [e for e in entries if title.lower() in e.lower()
                 and all(re.search(rf"\b{name}\b", e) for name in authors)]
        assert found, f"no bibliography entry by {' & '.join(authors)} on {title!r}"


GLOSSARY = [  # chapter 1: (English term, Korean term as the seeds write it)
    ("cross-entropy", "교차 엔트로피"),
    ("early stopping", "조기 종료"),
    ("empirical risk", "경험적 위험도"),
    ("empirical risk minimization", "경험적 위험도 최소화"),
    ("gradient descent", "경사 하강법"),
    ("hinge loss", "힌지 손실"),
    ("learning rate", "학습률"),
    ("logit", "로짓"),
    ("loss function", "손실 함수"),
    ("mean absolute error", "평균 절대 오차"),
    ("mean squared error", "평균 제곱 오차"),
    ("objective function", "목적 함수"),
    ("overfitting", "과대적합"),
    ("risk", "위험도"),
    ("sigmoid", "시그모이드"),
    ("softmax", "소프트맥스"),
    ("surrogate loss function", "대리 손실 함수"),
]


@slow
def test_glossary_defines_the_terms_in_english_and_korean(book_html):
    if "book/glossary" not in toc_files():
        pytest.skip("book/glossary is not in _toc.yml yet")
    terms = page(book_html, "book/glossary").terms
    missing = [t for pair in GLOSSARY for t in pair if t not in terms]
    assert not missing, f"glossary terms missing: {missing}"
    english = [t for t in terms if t in {e for e, _ in GLOSSARY}]
    assert english == sorted(english), "glossary entries are not in alphabetical order"


CHAPTER_1 = "book/01_losses/losses"
# Seed 000 example 1: hinge losses (eqs 5-7) and cross-entropies (eqs 8-10) of three instances.
CHAPTER_1_NUMBERS = ("1.53", "1.41", "1.08", "0.713", "0.635", "0.446")


@slow
def test_chapter_1_shows_the_seed_worked_example(book_html):
    if not any((REPO / f"{CHAPTER_1}{suffix}").is_file() for suffix in (".ipynb", ".md")):
        pytest.skip(f"{CHAPTER_1} (.ipynb or .md) is not written yet")
    text = page(book_html, CHAPTER_1).text
    missing = [n for n in CHAPTER_1_NUMBERS if n not in text]
    assert not missing, f"{CHAPTER_1} does not show the worked numbers {missing}"
