"""The HTML book: strict build, every page present, works offline (MathJax and a Korean font
served by the book itself), references and glossary.

The slow tests share one from-scratch build per session (``book_build``/``book_html`` in
``conftest.py``). The fast tests check the MathJax copy and the Korean font ("gdcourse Hangul",
NanumGothic renamed as the SIL OFL requires of a Modified Version; its licence and stylesheet)
of ``book/_ext/offline_assets.py`` alone.
"""

import importlib.util
import re
import shutil
import subprocess
import sys
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from fontTools.ttLib import TTFont

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


# --- fast: the Korean font of the offline_assets extension -----------------------------------

HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)  # 가 ... 힣, all 11 172 of them
HANGUL_COMPATIBILITY_JAMO = range(0x3131, 0x318F)  # ㄱ ... ㆎ
#: Code points the font must leave to the theme's fonts: Latin, Greek, Cyrillic, ... (below the
#: Hangul Jamo), and general punctuation, letterlike symbols, arrows, math operators, shapes.
NOT_HANGUL = ((0x0000, 0x10FF), (0x2000, 0x2BFF))
#: The SIL Open Font License 1.1 as matplotlib ships it with its STIX fonts (from this line on).
OFL_FIRST_LINE = "SIL OPEN FONT LICENSE Version 1.1 - 26 February 2007"
HEAD_CHECKSUM_ADJUSTMENT = slice(8, 12)  # bytes of the 'head' table that hold the file checksum
#: The served copies of the koreanize-matplotlib fonts: original file, served file, whether bold.
SERVED_FONTS = (("NanumGothic.ttf", "gdcourse-hangul-regular.ttf", False),
                ("NanumGothicBold.ttf", "gdcourse-hangul-bold.ttf", True))
#: Family name of the served copies (in their 'name' table and in hangul.css).
FAMILY = "gdcourse Hangul"
#: Reserved Font Names of the Nanum fonts (OFL condition 3), and "Nanum" in Korean.
RESERVED = ("nanum", "나눔")
#: 'name' records that name a font: family, unique ID, full name, PostScript name, typographic
#: family and subfamily, Macintosh full name, PostScript CID name.
FONT_NAME_IDS = (1, 3, 4, 6, 16, 17, 18, 20)
TRADEMARK_ID = 7


def name_records(font: TTFont) -> dict[tuple[int, int, int, int], bytes]:
    """The raw strings of a font's 'name' table by (platform, encoding, language, nameID)."""
    return {(r.platformID, r.platEncID, r.langID, r.nameID): r.string for r in font["name"].names}


def holds_reserved_name(text: str) -> bool:
    return any(reserved in text.lower() for reserved in RESERVED)


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
    return Path(spec.submodule_search_locations[0])


def parse_unicode_range(value: str) -> list[tuple[int, int]]:
    """``U+1100-11FF, U+AC00`` as inclusive (first, last) pairs."""
    ranges = []
    for part in value.split(","):
        first, _, last = part.strip().upper().removeprefix("U+").partition("-")
        ranges.append((int(first, 16), int(last or first, 16)))
    return ranges


def in_ranges(code_point: int, ranges) -> bool:
    return any(first <= code_point <= last for first, last in ranges)


def font_face_rules(css: str) -> list[dict[str, str]]:
    """The descriptors (name: value) of every ``@font-face`` rule of a stylesheet."""
    return [{name.strip().lower(): value.strip()
             for name, _, value in (declaration.partition(":") for declaration in body.split(";"))
             if name.strip()}
            for body in re.findall(r"@font-face\s*\{([^}]*)\}", css)]


def custom_property(css: str, name: str) -> str:
    """The one value a stylesheet gives the CSS variable ``name`` (whitespace normalised)."""
    values = {re.sub(r"\s*,\s*", ", ", value.strip())
              for value in re.findall(rf"{re.escape(name)}\s*:([^;}}]+)", css)}
    assert len(values) == 1, f"{name} is set {len(values)} ways: {values}"
    return values.pop()


def font_url(rule: dict[str, str]) -> str:
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", rule["src"])
    assert len(urls) == 1, f"expected one url() in src: {rule['src']}"
    return urls[0]


def is_bold(font: TTFont) -> bool:
    return bool(font["head"].macStyle & 1)


def hangul_stylesheet_problems(css_path: Path) -> list[str]:
    """What is wrong with the ``@font-face`` rules of a stylesheet: each names an existing
    TrueType file next to it, a 400 face that is not bold and a 700 face that is, and a
    unicode-range with every Hangul syllable and compatibility jamo and nothing of Latin."""
    rules = font_face_rules(css_path.read_text(encoding="utf-8"))
    if not rules:
        return [f"no @font-face rule in {css_path.name}"]
    problems = []
    if {rule.get("font-weight") for rule in rules} != {"400", "700"}:
        problems.append(f"weights {[rule.get('font-weight') for rule in rules]}, not 400 and 700")
    for rule in rules:
        font_path = css_path.parent / font_url(rule)
        if not font_path.is_file():
            problems.append(f"{font_url(rule)} is not next to {css_path.name}")
            continue
        font = TTFont(font_path, lazy=True)
        if is_bold(font) != (rule.get("font-weight") == "700"):
            problems.append(f"{font_path.name} (bold={is_bold(font)}) declared with "
                            f"font-weight {rule.get('font-weight')}")
        if rule.get("font-family", "").strip("'\"") != FAMILY:
            problems.append(f"family {rule.get('font-family')} for {font_path.name}")
        if font["name"].getName(1, 3, 1, 0x409).toUnicode() != FAMILY:
            problems.append(f"{font_path.name} is not of family {FAMILY!r}")
        ranges = parse_unicode_range(rule.get("unicode-range", "U+0-10FFFF"))
        uncovered = [chr(c) for c in (*HANGUL_SYLLABLES, *HANGUL_COMPATIBILITY_JAMO)
                     if not in_ranges(c, ranges)]
        if uncovered:
            problems.append(f"{font_path.name}: unicode-range misses {uncovered[:5]}...")
        overlap = [(f"U+{a:04X}", f"U+{b:04X}") for a, b in ranges for lo, hi in NOT_HANGUL
                   if a <= hi and lo <= b]
        if overlap:
            problems.append(f"{font_path.name}: unicode-range {overlap} includes non-Hangul text")
    return problems


@pytest.fixture(scope="module")
def hangul_font_copy(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("fonts")
    load_offline_assets().copy_hangul_font(target)
    return target


def test_hangul_fonts_are_found_without_importing_koreanize_matplotlib():
    """The files come from the koreanize-matplotlib wheel, whose import would change
    matplotlib's global font settings: the lookup must import neither package."""
    script = ("import importlib.util, sys\n"
              f"spec = importlib.util.spec_from_file_location('offline_assets', "
              f"{str(REPO / 'book' / '_ext' / 'offline_assets.py')!r})\n"
              "module = importlib.util.module_from_spec(spec)\n"
              "spec.loader.exec_module(module)\n"
              "print(*[path.as_posix() for path in module.hangul_font_files()], sep='\\n')\n"
              "print(sorted({'koreanize_matplotlib', 'matplotlib'} & set(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *paths, imported = proc.stdout.splitlines()
    assert imported == "[]", f"finding the fonts imported {imported}"
    fonts = package_dir("koreanize_matplotlib") / "fonts"
    assert paths == [(fonts / "NanumGothic.ttf").as_posix(),
                     (fonts / "NanumGothicBold.ttf").as_posix()]


@pytest.mark.parametrize("filename, bold", [("NanumGothic.ttf", False),
                                            ("NanumGothicBold.ttf", True)])
def test_installed_hangul_fonts_cover_korean(filename, bold):
    font = TTFont(package_dir("koreanize_matplotlib") / "fonts" / filename, lazy=True)
    assert font["name"].getDebugName(1) == "NanumGothic"
    assert is_bold(font) == bold
    cmap = font.getBestCmap()
    missing = [chr(c) for c in (*HANGUL_SYLLABLES, *HANGUL_COMPATIBILITY_JAMO) if c not in cmap]
    assert not missing, f"{filename} has no glyph for {len(missing)} Hangul characters"


def test_hangul_font_copy_leaves_out_only_the_empty_tables(hangul_font_copy):
    """Chromium's OpenType sanitiser rejects a font with a zero-length table (NanumGothic has
    an empty TSI3); the copy drops those and keeps every other table byte for byte, except
    'name' (renamed, see the next tests) and the file checksum in 'head'."""
    fonts = package_dir("koreanize_matplotlib") / "fonts"
    for original_name, served_name, _ in SERVED_FONTS:
        original = TTFont(fonts / original_name, lazy=True).reader
        copy = TTFont(hangul_font_copy / served_name, lazy=True).reader
        empty = {tag for tag, entry in original.tables.items() if entry.length == 0}
        assert not [tag for tag, entry in copy.tables.items() if entry.length == 0]
        assert set(copy.tables) == set(original.tables) - empty, f"{served_name}: tables differ"
        changed = [tag for tag in copy.tables
                   if tag not in ("head", "name") and copy[tag] != original[tag]]
        assert not changed, f"{served_name}: tables {changed} changed in the copy"
        head_copy, head_original = bytearray(copy["head"]), bytearray(original["head"])
        head_copy[HEAD_CHECKSUM_ADJUSTMENT] = head_original[HEAD_CHECKSUM_ADJUSTMENT]
        assert head_copy == head_original, f"{served_name}: 'head' changed beyond the checksum"


@pytest.mark.parametrize("original_name, served_name, bold", SERVED_FONTS)
def test_hangul_font_copy_changes_only_the_font_names(hangul_font_copy, original_name,
                                                        served_name, bold):
    """The 'name' table of a copy keeps every record but the font names as they are (the
    copyright, trademark and licence records above all), and renames the family, full,
    PostScript, unique and typographic names on every platform and language they exist in."""
    original = name_records(TTFont(package_dir("koreanize_matplotlib") / "fonts" / original_name,
                                   lazy=True))
    copy = name_records(TTFont(hangul_font_copy / served_name, lazy=True))

    def others(records):
        return {key: value for key, value in records.items() if key[3] not in FONT_NAME_IDS}

    assert {key[3] for key in others(original)} >= {0, TRADEMARK_ID, 13, 14}
    assert others(copy) == others(original), f"{served_name}: other name records changed"
    renamed = {key for key in original if key[3] in (1, 3, 4, 6, 16, 17)}
    assert renamed <= set(copy), f"{served_name}: font name records {renamed - set(copy)} lost"
    assert all(copy[key] != original[key] for key in renamed if key[3] != 17)


@pytest.mark.parametrize("original_name, served_name, bold", SERVED_FONTS)
def test_hangul_font_copy_uses_no_reserved_font_name(hangul_font_copy, original_name,
                                                      served_name, bold):
    """OFL condition 3: a Modified Version must not be named with a Reserved Font Name
    ("Nanum", "NanumGothic", ...). No font name record holds one, on any platform or in any
    language (the Korean records said "나눔고딕"); the trademark notice is the only record left
    that mentions Nanum."""
    assert not holds_reserved_name(served_name)
    font = TTFont(hangul_font_copy / served_name, lazy=True)
    records = font["name"].names
    reserved = [(r.nameID, r.platformID, r.langID, r.toUnicode()) for r in records
                if holds_reserved_name(r.toUnicode())]
    assert reserved, "the trademark notice of NHN is gone"
    assert {nameID for nameID, *_ in reserved} == {TRADEMARK_ID}, reserved
    style = "Bold" if bold else "Regular"
    names = font["name"]
    assert names.getName(1, 3, 1, 0x409).toUnicode() == FAMILY
    assert names.getName(2, 3, 1, 0x409).toUnicode() == style
    assert names.getName(4, 3, 1, 0x409).toUnicode() == (f"{FAMILY} Bold" if bold else FAMILY)
    assert names.getName(6, 3, 1, 0x409).toUnicode() == f"gdcourseHangul-{style}"
    assert {r.toUnicode() for r in records if r.nameID in (1, 16)} == {FAMILY}


def test_hangul_font_licence_is_the_ofl_with_the_nanum_notice(hangul_font_copy):
    licence = (hangul_font_copy / "OFL.txt").read_text(encoding="utf-8")
    assert "Copyright (c) 2010, NAVER Corporation" in licence
    assert "with Reserved Font Name Nanum, Naver Nanum, NanumGothic" in licence
    for original_name, served_name, _ in SERVED_FONTS:
        assert f"{served_name} (from {original_name})" in licence
    assert "Modified Versions of the NanumGothic fonts" in licence
    assert "TSI3" in licence and "condition 3" in licence
    stix = (package_dir("matplotlib") / "mpl-data" / "fonts" / "ttf" / "LICENSE_STIX")
    ofl = stix.read_text(encoding="utf-8")
    ofl = ofl[ofl.index(OFL_FIRST_LINE):]

    def words(text: str) -> str:
        return " ".join(text.split())

    assert words(ofl) in words(licence), "OFL.txt does not hold the whole OFL 1.1, verbatim"


def test_hangul_stylesheet_serves_the_font_for_hangul_only(hangul_font_copy):
    problems = hangul_stylesheet_problems(hangul_font_copy / "hangul.css")
    assert not problems, problems


def test_hangul_stylesheet_appends_the_font_to_every_theme_font_stack(hangul_font_copy):
    """Each font-family stack of pydata-sphinx-theme keeps the theme's fonts, in order, and
    gets "gdcourse Hangul" after them (the theme's stacks hold no Hangul font)."""
    css = (hangul_font_copy / "hangul.css").read_text(encoding="utf-8")
    theme = (package_dir("pydata_sphinx_theme") / "theme" / "pydata_sphinx_theme" / "static"
             / "styles" / "pydata-sphinx-theme.css").read_text(encoding="utf-8")
    stacks = sorted(set(re.findall(r"font-family:\s*var\((--pst-font-family-[a-z-]+)\)", theme)))
    assert stacks, "pydata-sphinx-theme sets no font-family from --pst-font-family-* variables"
    for stack in stacks:
        assert custom_property(css, stack) == f'{custom_property(theme, stack)}, "{FAMILY}"'


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


GLOSSARY = [  # chapters 1-4: (English term, Korean term as the seeds write it)
    ("0-1 loss", "0-1 손실"),
    ("batch gradient descent", "배치 경사 하강법"),
    ("batch size", "배치 크기"),
    ("bias correction", "편향 보정"),
    ("condition number", "조건수"),
    ("convergence condition", "수렴 조건"),
    ("convex function", "볼록 함수"),
    ("cross-entropy", "교차 엔트로피"),
    ("early stopping", "조기 종료"),
    ("empirical risk", "경험적 위험도"),
    ("empirical risk minimization", "경험적 위험도 최소화"),
    ("epoch", "에포크"),
    ("exponentially weighted moving average", "지수 가중 이동 평균"),
    ("gradient descent", "경사 하강법"),
    ("hinge loss", "힌지 손실"),
    ("learning rate", "학습률"),
    ("learning rate decay", "학습률 감쇠"),
    ("L-smooth", "L-평활"),
    ("logit", "로짓"),
    ("look-ahead point", "예측 지점"),
    ("loss function", "손실 함수"),
    ("mean absolute error", "평균 절대 오차"),
    ("mean squared error", "평균 제곱 오차"),
    ("mini-batch", "미니배치"),
    ("momentum", "모멘텀"),
    ("Nesterov accelerated gradient", "네스테로프 가속 경사"),
    ("objective function", "목적 함수"),
    ("overfitting", "과대적합"),
    ("risk", "위험도"),
    ("saddle point", "안장점"),
    ("sigmoid", "시그모이드"),
    ("softmax", "소프트맥스"),
    ("stochastic gradient descent", "확률적 경사 하강법"),
    ("surrogate loss function", "대리 손실 함수"),
    ("vectorization", "벡터화"),
    ("velocity", "속도"),
]


@slow
def test_glossary_defines_the_terms_in_english_and_korean(book_html):
    if "book/glossary" not in toc_files():
        pytest.skip("book/glossary is not in _toc.yml yet")
    terms = page(book_html, "book/glossary").terms
    missing = [t for pair in GLOSSARY for t in pair if t not in terms]
    assert not missing, f"glossary terms missing: {missing}"
    english = [t for t in terms if t in {e for e, _ in GLOSSARY}]
    # Sphinx's :sorted: glossary ignores case (it sorts on the lower-cased, NFD-normalised term)
    assert english == sorted(english, key=str.lower), "glossary entries are not in alphabetical order"


CHAPTER_1 = "book/01_losses/losses"
# Seed 000 example 1: hinge losses (eqs 5-7) and cross-entropies (eqs 8-10) of three instances.
CHAPTER_1_NUMBERS = ("1.53", "1.41", "1.08", "0.713", "0.635", "0.446", "0.310", "0.276", "0.194")


@slow
def test_chapter_1_shows_the_seed_worked_example(book_html):
    if not any((REPO / f"{CHAPTER_1}{suffix}").is_file() for suffix in (".ipynb", ".md")):
        pytest.skip(f"{CHAPTER_1} (.ipynb or .md) is not written yet")
    text = page(book_html, CHAPTER_1).text
    missing = [n for n in CHAPTER_1_NUMBERS if n not in text]
    assert not missing, f"{CHAPTER_1} does not show the worked numbers {missing}"


# --- slow: the Korean font in the built book -------------------------------------------------


def is_redirect(p: Page) -> bool:
    return any(name == "meta" and attrs.get("http-equiv", "").lower() == "refresh"
               for name, attrs in p.tags)


def needs_cjk_font(character: str) -> bool:
    return unicodedata.name(character, "").startswith(
        ("HANGUL", "CJK", "IDEOGRAPHIC", "HIRAGANA", "KATAKANA", "FULLWIDTH"))


@slow
def test_every_page_links_the_hangul_stylesheet(book_html):
    css = book_html / "_static" / "fonts" / "hangul.css"
    pages = [p for p in all_pages(book_html) if not is_redirect(p)]
    assert pages, "only redirect pages in the build"
    for p in pages:
        linked = [(p.path.parent / attrs["href"].split("?")[0]).resolve()
                  for name, attrs in p.tags
                  if name == "link" and attrs.get("rel") == "stylesheet" and attrs.get("href")]
        assert css.resolve() in linked, f"{p.path.relative_to(book_html)} does not link {css.name}"


@slow
def test_hangul_font_and_licence_are_in_the_build(book_html):
    fonts = book_html / "_static" / "fonts"
    problems = hangul_stylesheet_problems(fonts / "hangul.css")
    assert not problems, problems
    for _, name, _ in SERVED_FONTS:
        font = TTFont(fonts / name, lazy=True)
        assert all(entry.length for entry in font.reader.tables.values()), f"{name}: empty tables"
        assert not [r.nameID for r in font["name"].names
                    if r.nameID in FONT_NAME_IDS and holds_reserved_name(r.toUnicode())]
    licence = (fonts / "OFL.txt").read_text(encoding="utf-8")
    assert OFL_FIRST_LINE in licence and "Reserved Font Name Nanum" in licence


@slow
def test_every_korean_character_of_the_book_is_served_by_the_font(book_html):
    characters = {c for p in all_pages(book_html) for c in p.text if needs_cjk_font(c)}
    assert any(ord(c) in HANGUL_SYLLABLES for c in characters), "the book shows no Korean"
    css = (book_html / "_static" / "fonts" / "hangul.css").read_text(encoding="utf-8")
    for rule in font_face_rules(css):
        ranges = parse_unicode_range(rule["unicode-range"])
        cmap = TTFont(book_html / "_static" / "fonts" / font_url(rule), lazy=True).getBestCmap()
        missing = sorted(c for c in characters if not in_ranges(ord(c), ranges)
                         or ord(c) not in cmap)
        assert not missing, f"{font_url(rule)} does not render {missing}"


CHROMIUM_PROBE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<link rel="stylesheet" href="{theme}"><link rel="stylesheet" href="{hangul}">
</head><body><p id="text">손실 함수 loss function</p><pre id="out"></pre><script>
(async () => {{
  const lines = ["stack " + getComputedStyle(document.getElementById("text")).fontFamily];
  for (const weight of ["400", "700"]) {{
    for (const [label, text] of [["hangul", "손실 함수"], ["latin", "loss function"]]) {{
      try {{
        const faces = await document.fonts.load(weight + ' 16px "{family}"', text);
        lines.push([weight, label, ...faces.map(face => face.status)].join(" "));
      }} catch (error) {{
        lines.push([weight, label, "error", error.name].join(" "));
      }}
    }}
  }}
  document.getElementById("out").textContent = lines.join("\\n");
}})();
</script></body></html>
"""


@slow
def test_chromium_loads_the_hangul_font_for_hangul_only(book_html, tmp_path):
    """A real browser accepts the font files (its OpenType sanitiser rejects a broken font
    that Python tools read fine), uses them for Hangul and not for Latin text, and puts
    "gdcourse Hangul" after the theme's fonts."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                   "google-chrome"))), None)
    if browser is None:
        pytest.skip("no Chromium on this machine")
    probe = tmp_path / "probe.html"
    probe.write_text(CHROMIUM_PROBE.format(
        theme=(book_html / "_static" / "styles" / "pydata-sphinx-theme.css").as_uri(),
        hangul=(book_html / "_static" / "fonts" / "hangul.css").as_uri(), family=FAMILY),
        encoding="utf-8")
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, check=False, timeout=180)
    found = re.search(r'<pre id="out">(.*?)</pre>', proc.stdout, flags=re.DOTALL)
    assert found and found.group(1).strip(), f"no result from Chromium:\n{proc.stderr[-2000:]}"
    lines = found.group(1).strip().splitlines()
    stack = lines[0].removeprefix("stack ")
    assert stack.startswith("system-ui") and stack.endswith(f'"{FAMILY}"'), stack
    assert lines[1:] == ["400 hangul loaded", "400 latin", "700 hangul loaded", "700 latin"], (
        f"Chromium: {lines[1:]}")
