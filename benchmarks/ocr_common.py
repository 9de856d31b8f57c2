"""Loads ``examples/ocr/service.py`` as a module, for the benchmark's direct and LitServe
runs: the same function APIPod serves, called without APIPod."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SERVICE = Path(__file__).resolve().parent.parent / "examples" / "ocr" / "service.py"


def load_ocr_example() -> ModuleType:
    """The OCR example module (its engine not loaded yet: call its ``load()``)."""
    if "ocr_example" in sys.modules:
        return sys.modules["ocr_example"]
    spec = importlib.util.spec_from_file_location("ocr_example", SERVICE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ocr_example"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
