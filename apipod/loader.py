"""Finding the user's APIPod app from ``service.py``, ``service``, ``module`` or
``module:attr``.

The loader recognises the app by its shape (:class:`ServiceApp`) rather than by importing
``apipod.app``: the worker and the supervisor load services through here and must not
depend on the HTTP front end.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from apipod.errors import ServiceLoadError

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

TARGET_FORMS = "a file (service.py), a module (package.service) or module:attribute"
#: An import slower or heavier than this most likely loads a model (see :func:`load_app`).
SLOW_IMPORT_S = 2.0
HEAVY_IMPORT_MB = 200.0

logger = logging.getLogger(__name__)


@runtime_checkable
class ServiceApp(Protocol):
    """What the supervisor, the API process and the workers use of an ``APIPod`` app."""

    endpoints: dict[str, Any]
    worker_start_hooks: list[Any]

    def apply_config(self, config: Any) -> None: ...

    def configure(self, **overrides: Any) -> Any: ...


def load_app(target: str, *, warn_if_heavy: bool = False) -> APIPod:
    """Import the service and return its ``APIPod`` instance.

    ``target`` is a file (``service.py``, or ``service`` when ``service.py`` exists;
    imported as a module from its folder so that every process imports it under the
    same name), a module, or either of these followed by ``:attribute``. An exception
    while importing raises :class:`ServiceLoadError` carrying the full traceback.
    ``warn_if_heavy``: log one warning when the import took over ``SLOW_IMPORT_S`` or
    grew this process by over ``HEAVY_IMPORT_MB`` (the first import only: the API and
    every worker import the service again, and would say the same).
    """
    module_part, _, attribute = target.partition(":")
    if not module_part:
        raise ServiceLoadError(f"{target!r}: name the service as {TARGET_FORMS}")
    started, rss_before = time.monotonic(), _rss_mb()
    module = _import(module_part, target)
    if warn_if_heavy:
        _warn_if_heavy(module.__name__, time.monotonic() - started, _rss_mb() - rss_before)
    return _find_app(module, attribute or None, target)


def _warn_if_heavy(module_name: str, took_s: float, grew_mb: float) -> None:
    if took_s <= SLOW_IMPORT_S and grew_mb <= HEAVY_IMPORT_MB:
        return
    logger.warning(
        "importing %s took %.1f s and grew memory by %.0f MB: the API process and every"
        " worker import it too, and pay that again. If it loads a model, load it in a"
        " function decorated with @app.on_worker_start instead: that runs only in the"
        " workers, once each",
        module_name,
        took_s,
        grew_mb,
    )


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def _import(module_part: str, target: str) -> ModuleType:
    module_name = _module_name(module_part, target)
    try:
        return importlib.import_module(module_name)
    except ServiceLoadError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ServiceLoadError(
                f"{target!r}: no file {module_part} and no module {module_name} "
                f"(looked in {Path.cwd()}); name the service as {TARGET_FORMS}"
            ) from exc
        raise _import_failed(module_name, exc) from exc
    except BaseException as exc:  # SyntaxError, SystemExit from a script, anything
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _import_failed(module_name, exc) from exc


def _module_name(module_part: str, target: str) -> str:
    """Put the service's folder on ``sys.path``; the name to import it by."""
    path = Path(module_part)
    if path.suffix != ".py" and Path(module_part + ".py").is_file():
        path = Path(module_part + ".py")
    if path.suffix == ".py" or path.is_file():
        if not path.is_file():
            raise ServiceLoadError(f"{target!r}: service file {path} does not exist")
        _add_to_path(str(path.resolve().parent))
        return path.stem
    if "/" in module_part or "\\" in module_part:
        raise ServiceLoadError(f"{target!r}: no such service file; name {TARGET_FORMS}")
    if "" not in sys.path:
        _add_to_path(str(Path.cwd()))
    return module_part


def _add_to_path(folder: str) -> None:
    if folder not in sys.path:
        sys.path.insert(0, folder)


def _import_failed(module_name: str, exc: BaseException) -> ServiceLoadError:
    trace = "".join(traceback.format_exception(exc)).rstrip()
    return ServiceLoadError(f"importing {module_name} failed: {type(exc).__name__}: {exc}\n{trace}")


def _find_app(module: ModuleType, attribute: str | None, target: str) -> APIPod:
    if attribute:
        app = getattr(module, attribute, None)
        if not isinstance(app, ServiceApp):
            found = "nothing" if app is None else type(app).__name__
            raise ServiceLoadError(
                f"{target!r}: '{attribute}' is {found}, not an APIPod app{_apps_hint(module)}"
            )
        return app  # type: ignore[return-value]
    apps = [v for v in vars(module).values() if isinstance(v, ServiceApp)]
    if len(apps) != 1:
        found = "no APIPod app" if not apps else "several APIPod apps"
        raise ServiceLoadError(f"{target!r}: found {found}; name one as module:attribute")
    return apps[0]  # type: ignore[return-value]


def _apps_hint(module: ModuleType) -> str:
    names = [name for name, v in vars(module).items() if isinstance(v, ServiceApp)]
    return f" (APIPod apps here: {', '.join(names)})" if names else ""


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
