"""The one place that makes acitoolkit 0.4 importable on Python >= 3.10.

acitoolkit 0.4 (the last PyPI release) imports ``Sequence``, ``Mapping``, ``MutableMapping``, ``Iterable`` and
``Callable`` from `collections`, which dropped those aliases in Python 3.10. `import_acitoolkit` restores them
(they are the same objects as in `collections.abc`) and imports the package.
"""

from __future__ import annotations

import collections
import collections.abc
import importlib
from types import ModuleType

_ALIASES = ("Sequence", "Mapping", "MutableMapping", "Iterable", "Callable")


def import_acitoolkit() -> ModuleType:
    """Import and return the `acitoolkit` module; raises ImportError when it is not installed."""
    for name in _ALIASES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    return importlib.import_module("acitoolkit")
