"""Finding the user's APIPod app from ``service.py``, ``module`` or ``module:attr``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from apipod.errors import ServiceLoadError

if TYPE_CHECKING:
    from apipod.app.pod import APIPod


def load_app(target: str) -> APIPod:
    """Import the service and return its ``APIPod`` instance.

    ``target`` is a file (``service.py``, imported as a module from its folder so that
    every process imports it under the same name), a module, or ``module:attribute``.
    """
    module_name, _, attribute = target.partition(":")
    module = _import(module_name)
    return _find_app(module, attribute or None, target)


def _import(module_name: str) -> ModuleType:
    path = Path(module_name)
    if module_name.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ServiceLoadError(f"service file {module_name} does not exist")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_name = path.stem
    elif "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except ServiceLoadError:
        raise
    except Exception as exc:
        raise ServiceLoadError(
            f"importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _find_app(module: ModuleType, attribute: str | None, target: str) -> APIPod:
    from apipod.app.pod import APIPod

    if attribute:
        app = getattr(module, attribute, None)
        if not isinstance(app, APIPod):
            raise ServiceLoadError(f"{target}: '{attribute}' is not an APIPod app")
        return app
    apps = [v for v in vars(module).values() if isinstance(v, APIPod)]
    if len(apps) != 1:
        found = "no APIPod app" if not apps else "several APIPod apps"
        raise ServiceLoadError(f"{target}: found {found}; name one as module:attribute")
    return apps[0]


def target_of(app: APIPod) -> str:
    """A target string that imports ``app`` in another process (used by ``app.start()``)."""
    if not app.source_file:
        raise ServiceLoadError("cannot tell which file defines this app; use 'apipod start'")
    path = Path(app.source_file)
    module = sys.modules.get("__main__")
    for name, value in vars(module or ModuleType("x")).items():
        if value is app:
            return f"{path}:{name}"
    return str(path)
