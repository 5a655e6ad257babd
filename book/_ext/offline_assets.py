"""Make the HTML book work with no network: serve MathJax locally, refuse remote assets.

Registered in ``_config.yml`` under ``sphinx: local_extensions``. It does two things:

1. Vendors MathJax 3 from the ``django-static-mathjax`` wheel (which ships the MathJax
   release under ``mathjax/static/mathjax``; Django itself is not needed and not imported).
   The combined component ``es5/tex-mml-chtml.js`` is copied into ``_static/mathjax/`` of the
   HTML output together with everything it may fetch at run time: the TeX and MathML
   extensions that ``autoload``/``require`` pull in (``\\boldsymbol``, ``\\cancel``, ...), the
   CHTML web fonts, the menu and accessibility components and the speech-rule maps they load.
   ``mathjax_path`` then points at the local copy, so every page with math loads it from
   ``_static/mathjax/tex-mml-chtml.js``.
2. Warns (and so fails the strict ``-W`` build) when a page would load a script or a
   stylesheet from another host, e.g. the ipywidgets ``require.js`` that myst-nb adds to pages
   with widget output unless ``nb_ipywidgets_js`` is empty.

The copy lives in the build output only. It must not go into a ``_static/`` folder of the book
sources: jupyter-book adds every ``*.js`` found there to every page, so MathJax would load twice.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

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


def mathjax_es5_dir() -> Path:
    """Return the ``es5`` folder of the MathJax release shipped by django-static-mathjax."""
    spec = importlib.util.find_spec("mathjax")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "offline_assets: the 'mathjax' package of django-static-mathjax is not installed; "
            "install requirements.txt"
        )
    for location in spec.submodule_search_locations:
        es5 = Path(location) / "static" / "mathjax" / "es5"
        if (es5 / COMPONENT).is_file():
            return es5
    raise RuntimeError(
        f"offline_assets: no static/mathjax/es5/{COMPONENT} under "
        f"{list(spec.submodule_search_locations)}"
    )


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
    # Late priority: run after the extensions that add assets in html-page-context.
    app.connect("html-page-context", refuse_remote_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
