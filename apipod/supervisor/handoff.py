"""The supervisor starts in a fresh process image, without the user's service.

``apipod start`` has to import the service to learn what only its code says: its
``APIPod(...)`` settings (queue mode or not, data dir, ...) and its endpoints. A model
loaded at import time would then stay in the supervisor for its whole life, with CUDA if
the model is on a GPU. So once the final :class:`~apipod.config.Config` is known, the
process replaces itself (``exec``: the same pid, so the terminal's Ctrl-C, systemd and
``kill`` see no difference) with a bare Python that runs only the supervisor. Only the API
process and the workers import the service again.

The state crosses the ``exec`` in a private (0600) temporary file that the new image
reads and deletes at once: it holds the config, API key included.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import apipod
from apipod.config import Config
from apipod.errors import APIPodError
from apipod.logs import setup_logging

logger = logging.getLogger(__name__)

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[2]); "
    "from apipod.supervisor.handoff import main; sys.exit(main(sys.argv[1]))"
)


def exec_supervisor(
    config: Config, target: str, endpoints: Sequence[str], reload_dir: Path | None
) -> NoReturn:
    """Replace this process with one that runs :class:`Supervisor` on these arguments."""
    state = {
        "config": _config_values(config),
        "target": target,
        "endpoints": list(endpoints),
        "reload_dir": str(reload_dir) if reload_dir else None,
    }
    fd, path = tempfile.mkstemp(prefix="apipod-start-", suffix=".json")
    with os.fdopen(fd, "w") as file:
        json.dump(state, file)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    package_parent = str(Path(apipod.__file__).resolve().parent.parent)
    os.execv(sys.executable, [sys.executable, "-c", _BOOT, path, package_parent])


def main(state_file: str) -> int:
    """The new image's entry point: run the supervisor; its exit status."""
    path = Path(state_file)
    state = json.loads(path.read_text())
    path.unlink()
    config = Config.from_mapping(state["config"])
    setup_logging(config.log_level, config.log_format)
    from apipod.supervisor.arbiter import Supervisor

    reload_dir = Path(state["reload_dir"]) if state["reload_dir"] else None
    try:
        return Supervisor(config, state["target"], state["endpoints"], reload_dir).run()
    except APIPodError as exc:  # as apipod.cli reports it
        logger.error("apipod: %s", exc)
        return 2


def _config_values(config: Config) -> dict[str, Any]:
    values = dataclasses.asdict(config)
    values.pop("extra", None)
    return {name: value for name, value in values.items() if value is not None}
