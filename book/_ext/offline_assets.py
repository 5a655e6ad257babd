"""Make the HTML book work with no network: serve MathJax and a Korean font locally, refuse
remote assets.

Registered in ``_config.yml`` under ``sphinx: local_extensions``. It does three things:

1. Vendors MathJax 3 from the ``django-static-mathjax`` wheel (which ships the MathJax
   release under ``mathjax/static/mathjax``; Django itself is not needed and not imported).
   The combined component ``es5/tex-mml-chtml.js`` is copied into ``_static/mathjax/`` of the
   HTML output together with everything it may fetch at run time: the TeX and MathML
   extensions that ``autoload``/``require`` pull in (``\\boldsymbol``, ``\\cancel``, ...), the
   CHTML web fonts, the menu and accessibility components and the speech-rule maps they load.
   ``mathjax_path`` then points at the local copy, so every page with math loads it from
   ``_static/mathjax/tex-mml-chtml.js``.
2. Serves a Hangul font, so the Korean terms of the book (e.g. "손실 함수") render on machines
   with no CJK font instead of as empty boxes. It is made from ``NanumGothic.ttf`` and
   ``NanumGothicBold.ttf`` (SIL Open Font License 1.1) of the ``koreanize-matplotlib`` wheel,
   located without importing the package (importing it changes matplotlib's global font
   settings). The copies in ``_static/fonts/`` differ from the originals in two ways, which
   make them *Modified Versions* under the OFL:

   - their one zero-length table (``TSI3``, an empty table of the VTT hinting sources) is left
     out: browsers' OpenType sanitiser refuses the whole font because of it ("OTS parsing
     error: TSI3: zero-length table");
   - they are renamed, since OFL condition 3 forbids a Modified Version to use a Reserved Font
     Name of NAVER ("Nanum", "NanumGothic", ...) as its font name: family "gdcourse Hangul"
     in the ``name`` table, files ``gdcourse-hangul-regular.ttf`` and
     ``gdcourse-hangul-bold.ttf``. The copyright, trademark and licence records stay.

   ``OFL.txt`` next to them says so and carries NAVER's notice and the licence. A stylesheet
   ``_static/fonts/hangul.css`` is added to every page. Its ``@font-face`` rules (a reader's
   installed, unmodified NanumGothic first, else the served copy) carry a ``unicode-range`` of
   Hangul and CJK punctuation only, and it appends "gdcourse Hangul" to the theme's font
   stacks: Latin text keeps the theme's fonts, only Hangul falls through to this font.
3. Warns (and so fails the strict ``-W`` build) when a page would load a script or a
   stylesheet from another host, e.g. the ipywidgets ``require.js`` that myst-nb adds to pages
   with widget output unless ``nb_ipywidgets_js`` is empty.

The copies live in the build output only. They must not go into a ``_static/`` folder of the
book sources: jupyter-book adds every ``*.js`` and ``*.css`` found there to every page, so
MathJax would load twice.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import NamedTuple

from fontTools.ttLib import TTFont
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.ext.mathjax import MATHJAX_URL
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Where the MathJax copy goes, relative to the HTML output's ``_static`` folder.
STATIC_SUBDIR = "mathjax"
#: The combined component every page loads (TeX and MathML input, CommonHTML output, menu).
COMPONENT = "tex-mml-chtml.js"
#: Folders of ``es5/`` the component loads files from at run time, besides itself.
RUNTIME_DIRS = (
    "input/tex/extensions",  # [tex]/... packages loaded by autoload and \require
    "input/mml",  # MathML entities and the mml3 extension
    "output/chtml/fonts/woff-v2",  # CommonHTML web fonts
    "ui",  # the context menu and the lazy/safe components it can enable
    "a11y",  # explorer, complexity, semantic-enrich, sre (enabled from the menu)
    "sre",  # speech-rule maps loaded by a11y/sre.js
)
#: Path given to ``mathjax_path``; Sphinx resolves a relative path against ``_static/``.
MATHJAX_PATH = f"{STATIC_SUBDIR}/{COMPONENT}"

#: Where the Korean font goes, relative to the HTML output's ``_static`` folder.
FONT_SUBDIR = "fonts"
#: The stylesheet added to every page (relative to ``_static``), written next to the fonts.
FONT_CSS = f"{FONT_SUBDIR}/hangul.css"
#: The font's licence notice, written next to the fonts.
FONT_LICENCE = "OFL.txt"
#: The served font's family name, in its ``name`` table and in the ``@font-face`` rules. Not a
#: Reserved Font Name of the Nanum fonts (OFL condition 3: the copies are Modified Versions).
FONT_FAMILY = "gdcourse Hangul"
#: Family part of the served font's PostScript names (``gdcourseHangul-Regular``, ...).
POSTSCRIPT_FAMILY = "gdcourseHangul"


class FontFace(NamedTuple):
    """One face served: ``source`` in ``koreanize_matplotlib/fonts/``, the ``served`` file
    name, CSS ``font-weight``, style (name table subfamily) and the names (full and
    PostScript) of an installed, unmodified original used instead of the download."""

    source: str
    served: str
    weight: int
    style: str
    local_names: tuple[str, ...]


FONT_FACES = (
    FontFace("NanumGothic.ttf", "gdcourse-hangul-regular.ttf", 400, "Regular",
             ("NanumGothic",)),
    FontFace("NanumGothicBold.ttf", "gdcourse-hangul-bold.ttf", 700, "Bold",
             ("NanumGothic Bold", "NanumGothicBold")),
)
#: ``name`` table records (nameIDs) that name the font, rewritten in the served copies on
#: every platform and language present: family (1), unique ID (3), full name (4), PostScript
#: name (6), typographic family and subfamily (16, 17), Macintosh compatible full name (18).
RENAMED_NAME_IDS = (1, 3, 4, 6, 16, 17, 18)
#: ``name`` records dropped from the served copies: the PostScript CID findfont name (20),
#: which is meaningless for a TrueType font and holds the original PostScript name.
DROPPED_NAME_IDS = (20,)
#: Reserved Font Names of the Nanum fonts (and the Korean of "Nanum") that no renamed record
#: may contain.
RESERVED_NAMES = ("Nanum", "나눔")
#: Code points the font is used for (inclusive): Hangul Jamo, CJK Symbols and Punctuation,
#: Hangul Compatibility Jamo, Hangul Syllables. Nothing of Latin, Greek or math.
HANGUL_RANGES = ((0x1100, 0x11FF), (0x3000, 0x303F), (0x3130, 0x318F), (0xAC00, 0xD7AF))
#: pydata-sphinx-theme's font stacks (CSS custom properties), each with the variable holding
#: its default value: the stylesheet sets each to that default followed by FONT_FAMILY.
THEME_FONT_STACKS = (
    ("--pst-font-family-base", "--pst-font-family-base-system"),
    ("--pst-font-family-heading", "--pst-font-family-base-system"),
    ("--pst-font-family-monospace", "--pst-font-family-monospace-system"),
)
#: Copyright notice of the Nanum fonts as NAVER releases them under the OFL.
NANUM_COPYRIGHT = """\
Copyright (c) 2010, NAVER Corporation (http://www.nhncorp.com),
with Reserved Font Name Nanum, Naver Nanum, NanumGothic, Naver NanumGothic,
NanumMyeongjo, Naver NanumMyeongjo, NanumBrush, Naver NanumBrush, NanumPen,
Naver NanumPen.
"""
#: The SIL Open Font License 1.1, verbatim.
OFL_1_1 = """\
-----------------------------------------------------------
SIL OPEN FONT LICENSE Version 1.1 - 26 February 2007
-----------------------------------------------------------

PREAMBLE
The goals of the Open Font License (OFL) are to stimulate worldwide
development of collaborative font projects, to support the font creation
efforts of academic and linguistic communities, and to provide a free and
open framework in which fonts may be shared and improved in partnership
with others.

The OFL allows the licensed fonts to be used, studied, modified and
redistributed freely as long as they are not sold by themselves. The
fonts, including any derivative works, can be bundled, embedded,
redistributed and/or sold with any software provided that any reserved
names are not used by derivative works. The fonts and derivatives,
however, cannot be released under any other type of license. The
requirement for fonts to remain under this license does not apply
to any document created using the fonts or their derivatives.

DEFINITIONS
"Font Software" refers to the set of files released by the Copyright
Holder(s) under this license and clearly marked as such. This may
include source files, build scripts and documentation.

"Reserved Font Name" refers to any names specified as such after the
copyright statement(s).

"Original Version" refers to the collection of Font Software components as
distributed by the Copyright Holder(s).

"Modified Version" refers to any derivative made by adding to, deleting,
or substituting -- in part or in whole -- any of the components of the
Original Version, by changing formats or by porting the Font Software to a
new environment.

"Author" refers to any designer, engineer, programmer, technical
writer or other person who contributed to the Font Software.

PERMISSION & CONDITIONS
Permission is hereby granted, free of charge, to any person obtaining
a copy of the Font Software, to use, study, copy, merge, embed, modify,
redistribute, and sell modified and unmodified copies of the Font
Software, subject to the following conditions:

1) Neither the Font Software nor any of its individual components,
in Original or Modified Versions, may be sold by itself.

2) Original or Modified Versions of the Font Software may be bundled,
redistributed and/or sold with any software, provided that each copy
contains the above copyright notice and this license. These can be
included either as stand-alone text files, human-readable headers or
in the appropriate machine-readable metadata fields within text or
binary files as long as those fields can be easily viewed by the user.

3) No Modified Version of the Font Software may use the Reserved Font
Name(s) unless explicit written permission is granted by the corresponding
Copyright Holder. This restriction only applies to the primary font name as
presented to the users.

4) The name(s) of the Copyright Holder(s) or the Author(s) of the Font
Software shall not be used to promote, endorse or advertise any
Modified Version, except to acknowledge the contribution(s) of the
Copyright Holder(s) and the Author(s) or with their explicit written
permission.

5) The Font Software, modified or unmodified, in part or in whole,
must be distributed entirely under this license, and must not be
distributed under any other license. The requirement for fonts to
remain under this license does not apply to any document created
using the Font Software.

TERMINATION
This license becomes null and void if any of the above conditions are
not met.

DISCLAIMER
THE FONT SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND,
EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO ANY WARRANTIES OF
MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT
OF COPYRIGHT, PATENT, TRADEMARK, OR OTHER RIGHT. IN NO EVENT SHALL THE
COPYRIGHT HOLDER BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY,
INCLUDING ANY GENERAL, SPECIAL, INDIRECT, INCIDENTAL, OR CONSEQUENTIAL
DAMAGES, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
FROM, OUT OF THE USE OR INABILITY TO USE THE FONT SOFTWARE OR FROM
OTHER DEALINGS IN THE FONT SOFTWARE.
"""


def installed_file(package: str, distribution: str, relative: str) -> Path:
    """Return the file ``relative`` inside the installed ``package``, without importing it."""
    spec = importlib.util.find_spec(package)  # locates a top-level package, imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"offline_assets: the {package!r} package of {distribution} is not installed; "
            "install requirements.txt"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / relative
        if path.is_file():
            return path
    raise RuntimeError(
        f"offline_assets: no {relative} under {list(spec.submodule_search_locations)}"
    )


def mathjax_es5_dir() -> Path:
    """Return the ``es5`` folder of the MathJax release shipped by django-static-mathjax."""
    return installed_file("mathjax", "django-static-mathjax",
                          f"static/mathjax/es5/{COMPONENT}").parent


def copy_mathjax(target: Path) -> None:
    """Copy the MathJax component, its run-time files and its licence into ``target``."""
    es5 = mathjax_es5_dir()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(es5 / COMPONENT, target / COMPONENT)
    shutil.copy2(es5.parent / "LICENSE", target / "LICENSE")
    for subdir in RUNTIME_DIRS:
        shutil.copytree(es5 / subdir, target / subdir, dirs_exist_ok=True)


def use_local_mathjax(app: Sphinx, config: Config) -> None:
    """Point ``mathjax_path`` at the local copy unless the book chose another MathJax."""
    if config.mathjax_path == MATHJAX_URL:
        config.mathjax_path = MATHJAX_PATH


def install_mathjax(app: Sphinx) -> None:
    """Copy MathJax into the output before pages are written (so they get its checksum)."""
    if app.builder.format != "html" or app.config.mathjax_path != MATHJAX_PATH:
        return
    copy_mathjax(Path(app.outdir) / "_static" / STATIC_SUBDIR)


def hangul_font_files() -> list[Path]:
    """Return the NanumGothic files of FONT_FACES shipped by koreanize-matplotlib."""
    return [installed_file("koreanize_matplotlib", "koreanize-matplotlib", f"fonts/{face.source}")
            for face in FONT_FACES]


def hangul_font_licence() -> str:
    """The licence notice served next to the fonts: what they are and how they were modified,
    NAVER's copyright notice with the Reserved Font Names, the OFL."""
    served = "\n".join(f"  {face.served} (from {face.source})"
                       for face in FONT_FACES)
    return (f'The fonts of this folder, family "{FONT_FAMILY}":\n{served}\n'
            "are Modified Versions of the NanumGothic fonts shipped in the koreanize-matplotlib\n"
            "wheel, made for this book:\n"
            "- their zero-length tables (TSI3, which web browsers reject) are removed;\n"
            "- as condition 3 of the licence below requires, they are renamed: the family, full,\n"
            "  PostScript and unique font names of their 'name' table no longer use a Reserved\n"
            "  Font Name (the PostScript CID name, which held one, is removed), nor do the\n"
            "  file names.\n"
            "All other tables, and the copyright, trademark and licence records of the 'name'\n"
            f"table, are unchanged. {Path(FONT_CSS).name} uses these fonts, or a reader's installed\n"
            "and unmodified NanumGothic, for Hangul only.\n\n"
            f"{NANUM_COPYRIGHT}\n"
            "This Font Software is licensed under the SIL Open Font License, Version 1.1.\n"
            "This license is copied below, and is also available with a FAQ at:\n"
            "https://openfontlicense.org\n\n"
            f"{OFL_1_1}")


def font_face(face: FontFace) -> str:
    """One ``@font-face`` rule of FONT_FAMILY: an installed original if any, else the served
    copy (relative to the stylesheet), for the code points of HANGUL_RANGES only."""
    sources = [f'local("{name}")' for name in face.local_names]
    sources.append(f'url("{face.served}") format("truetype")')
    ranges = ", ".join(f"U+{first:04X}-{last:04X}" for first, last in HANGUL_RANGES)
    return ("@font-face {\n"
            f'  font-family: "{FONT_FAMILY}";\n'
            "  font-style: normal;\n"
            f"  font-weight: {face.weight};\n"
            "  font-display: swap;\n"
            f"  src: {', '.join(sources)};\n"
            f"  unicode-range: {ranges};\n"
            "}\n")


def hangul_font_css() -> str:
    """The stylesheet: the ``@font-face`` rules of FONT_FACES, and the theme's font stacks
    (their defaults) followed by FONT_FAMILY, set on ``:root`` (which outranks the theme's
    ``html`` rule whatever the order of the stylesheets)."""
    faces = "\n".join(font_face(face) for face in FONT_FACES)
    stacks = "".join(f'  {variable}: var({default}), "{FONT_FAMILY}";\n'
                     for variable, default in THEME_FONT_STACKS)
    return (f"/* Hangul for the Korean terms of the book: {FONT_FAMILY}, a Modified Version of\n"
            f"   NanumGothic (SIL Open Font License 1.1, see {FONT_LICENCE}), used only for the\n"
            "   code points of unicode-range. */\n"
            f"{faces}\n:root {{\n{stacks}}}\n")


def served_names(face: FontFace) -> dict[int, str]:
    """The new string of each RENAMED_NAME_IDS record of a served face, e.g. for the bold one:
    family "gdcourse Hangul", full name "gdcourse Hangul Bold", PostScript name
    "gdcourseHangul-Bold"."""
    postscript = f"{POSTSCRIPT_FAMILY}-{face.style}"
    full = FONT_FAMILY if face.style == "Regular" else f"{FONT_FAMILY} {face.style}"
    return {1: FONT_FAMILY, 3: f"gdcourse;{postscript}", 4: full, 6: postscript,
            16: FONT_FAMILY, 17: face.style, 18: full}


def rename_font(font: TTFont, names: dict[int, str]) -> None:
    """Give every RENAMED_NAME_IDS record of the font (all platforms, encodings and languages
    present) its string in ``names`` and drop the DROPPED_NAME_IDS records; the other records
    (copyright, trademark, licence, ...) are kept as they are. Fails if a renamed record still
    holds a reserved name."""
    table = font["name"]
    table.names = [record for record in table.names if record.nameID not in DROPPED_NAME_IDS]
    for record in table.names:
        if record.nameID in RENAMED_NAME_IDS:
            record.string = names[record.nameID]
    left = [(record.nameID, record.toUnicode()) for record in table.names
            if record.nameID in RENAMED_NAME_IDS
            and any(reserved.lower() in record.toUnicode().lower() for reserved in RESERVED_NAMES)]
    if left:
        raise RuntimeError(f"offline_assets: reserved font names left in {left}")


def empty_tables(font: TTFont) -> list[str]:
    """Tags of the zero-length tables of a font opened with ``lazy=True``."""
    return [tag for tag, entry in font.reader.tables.items() if entry.length == 0]


def copy_font(source: Path, target: Path, names: dict[int, str]) -> None:
    """Copy a TrueType font without its zero-length tables, which browsers reject, and with
    the font names of ``names`` (see ``rename_font``). Only ``name`` is decompiled and
    rebuilt (its other records keep their strings); the other tables are written byte for
    byte, except the file checksum in ``head``."""
    font = TTFont(source, lazy=True, recalcBBoxes=False, recalcTimestamp=False)
    for tag in empty_tables(font):
        del font[tag]
    rename_font(font, names)
    font.save(target)


def copy_hangul_font(target: Path) -> None:
    """Copy the NanumGothic files, renamed, into ``target`` and write their licence and
    stylesheet."""
    target.mkdir(parents=True, exist_ok=True)
    for face, source in zip(FONT_FACES, hangul_font_files(), strict=True):
        copy_font(source, target / face.served, served_names(face))
    (target / FONT_LICENCE).write_text(hangul_font_licence(), encoding="utf-8")
    (target / Path(FONT_CSS).name).write_text(hangul_font_css(), encoding="utf-8")


def install_hangul_font(app: Sphinx) -> None:
    """Copy the font and its stylesheet into the output, and link the stylesheet from every
    page (before pages are written, so the link gets the file's checksum)."""
    if app.builder.format != "html":
        return
    copy_hangul_font(Path(app.outdir) / "_static" / FONT_SUBDIR)
    app.add_css_file(FONT_CSS)


def refuse_remote_assets(app: Sphinx, pagename: str, templatename: str, context: dict,
                         doctree) -> None:
    """Warn about every script or stylesheet of the page that would come from the network."""
    for key in ("script_files", "css_files"):
        for asset in context.get(key, ()):
            filename = str(getattr(asset, "filename", asset) or "")
            if "://" in filename or filename.startswith("//"):
                logger.warning(
                    "offline_assets: page %r loads %s from the network: %s "
                    "(the book must work offline)", pagename, key, filename,
                    type="offline_assets", location=pagename,
                )


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", use_local_mathjax)
    app.connect("builder-inited", install_mathjax)
    app.connect("builder-inited", install_hangul_font)
    # Late priority: run after the extensions that add assets in html-page-context.
    app.connect("html-page-context", refuse_remote_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
