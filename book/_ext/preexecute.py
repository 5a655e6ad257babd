"""Execute the book's notebooks in parallel into Jupyter Book's execution cache.

    python book/_ext/preexecute.py BUILD_PARENT

Jupyter Book 1 (``execute_notebooks: cache``) executes the notebooks one after another; on a
machine with several cores most of them sit idle during a build. This script adds every
notebook of ``_toc.yml`` to the cache that ``jupyter-book build --path-output BUILD_PARENT``
uses (``BUILD_PARENT/_build/.jupyter_cache``) and executes those without a cached result on
all cores (jupyter-cache's ``local-parallel`` executor, each in its own folder as the build
would). The build then finds every result in the cache. A notebook that fails here is simply
not cached: the build executes it again and reports the error as usual, so this step never
hides a failure. ``make book`` and the tests' book build run it first.

The notebooks run side by side, one per core, so each kernel gets one math thread
(``OMP_NUM_THREADS=1`` and its MKL/OpenBLAS siblings, unless already set): torch's and BLAS's
default of one thread per core made every kernel compete with the others for all the cores,
and the torch-heavy pages ran up to seven times slower than alone (measured: the Gadam study
page, 22 s alone, took 157 s in a build).
"""

import os
import sys
import time
from pathlib import Path

import yaml
from jupyter_cache import get_cache
from jupyter_cache.executors import load_executor

ROOT = Path(__file__).resolve().parents[2]


def _files(entries):
    for entry in entries:
        if "file" in entry:
            yield entry["file"]
        yield from _files(entry.get("sections", []))


def toc_notebooks(root: Path = ROOT) -> list:
    """The notebooks (``.ipynb``) of the table of contents, in its order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    docs = [toc["root"], *(f for part in toc.get("parts", []) for f in _files(part["chapters"]))]
    return [root / f"{doc}.ipynb" for doc in docs if (root / f"{doc}.ipynb").is_file()]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, "1")  # inherited by every kernel started below
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    timeout = config.get("execute", {}).get("timeout", 30)
    cache = get_cache(str(Path(argv[0]).resolve() / "_build" / ".jupyter_cache"))
    notebooks = toc_notebooks()
    for notebook in notebooks:
        cache.add_nb_to_project(str(notebook))
    start = time.perf_counter()
    result = load_executor("local-parallel", cache).run_and_cache(timeout=timeout)
    failed = len(result.excepted) + len(result.errored)
    print(f"pre-executed {len(result.succeeded)} of {len(notebooks)} notebooks in "
          f"{time.perf_counter() - start:.0f} s"
          + (f"; {failed} failed (the build will report them)" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
