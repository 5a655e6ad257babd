"""gdlib: the reference library behind the gdcourse book.

Every formula of the book is written once here and serves numpy arrays and torch tensors alike.
Submodules load on first use, so ``import gdlib`` stays cheap and never imports torch by itself::

    from gdlib import losses, optim
"""

import importlib
from pathlib import Path

__version__ = "0.1.0"

# Every module of the package, loaded on first access as ``gdlib.<name>``.
_SUBMODULES = {path.stem for path in Path(__file__).parent.glob("*.py") if path.stem != "__init__"}

# Functions used often enough to be reachable as ``gdlib.<name>``: name -> defining module.
_SHORTCUTS = {
    "ewma": "averages",
    "minimize": "training",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _SHORTCUTS:
        return getattr(importlib.import_module(f"{__name__}.{_SHORTCUTS[name]}"), name)
    raise AttributeError(f"module 'gdlib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES | set(_SHORTCUTS))
