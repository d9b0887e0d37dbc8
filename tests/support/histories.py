"""tests/data/make_histories.py, loaded once for the checker tests that build histories with its
Builder (it is a script that writes tests/data/histories/, not a module on the import path)."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType

from tests.support.paths import DATA


@cache
def make_histories() -> ModuleType:
    """The make_histories module (registered in sys.modules so its dataclasses pickle and compare)."""
    spec = importlib.util.spec_from_file_location("make_histories", DATA / "make_histories.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_histories", mod)
    spec.loader.exec_module(mod)
    return mod
