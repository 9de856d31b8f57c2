"""``apipod init``: a starter ``service.py`` and the ``apipod-deploy/`` folder.

The deploy templates are the repository's ``apipod-deploy/`` folder, shipped in the wheel
as ``apipod/_deploy`` (like the migrations), so there is one copy of each file.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import apipod
from apipod.errors import ConfigError

logger = logging.getLogger(__name__)

DEPLOY_FILES = ("apipod.json", "Dockerfile", "compose.yaml", "apipod.service")

STARTER_SERVICE = '''\
"""A starter APIPod service in queue mode.

Run:  apipod start service.py
Try:  curl -s -H 'content-type: application/json' -d '{"text": "hi"}' \\
        "http://127.0.0.1:8000/generate?wait=30"
"""

import time

from apipod import APIPod, JobProgress

app = APIPod(compute="serverless", provider="localhost", title="my-service")
model = None


@app.on_worker_start
def load_model() -> None:
    """Runs once in every worker process, after its GPU is pinned: load models here."""
    global model
    model = str.upper  # replace with e.g. a diffusers pipeline moved to "cuda"


@app.endpoint("/generate", queue_size=100)
def generate(job_progress: JobProgress, text: str, steps: int = 4) -> dict:
    """Turn ``text`` into a result, reporting progress step by step."""
    for step in range(steps):
        time.sleep(0.01)
        job_progress.set_status((step + 1) / steps, f"step {step + 1}/{steps}")
    return {"text": model(text)}
'''


def deploy_templates_dir() -> Path:
    """``apipod/_deploy`` (installed wheel), else ``<repo>/apipod-deploy`` (editable)."""
    package = Path(apipod.__file__).resolve().parent
    for candidate in (package / "_deploy", package.parent / "apipod-deploy"):
        if (candidate / "apipod.json").is_file():
            return candidate
    raise ConfigError(f"no deploy templates next to {package} (looked for _deploy)")


def init_project(folder: Path, *, force: bool = False) -> list[Path]:
    """Write ``service.py`` and ``apipod-deploy/*`` into ``folder``; return the paths
    written. Existing files are kept (and reported) unless ``force``."""
    folder.mkdir(parents=True, exist_ok=True)
    targets = {folder / "service.py": None}
    source = deploy_templates_dir()
    targets.update({folder / "apipod-deploy" / name: source / name for name in DEPLOY_FILES})
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise ConfigError(f"{names} already exist(s); pass --force to overwrite")
    (folder / "apipod-deploy").mkdir(exist_ok=True)
    for target, template in targets.items():
        if template is None:
            target.write_text(STARTER_SERVICE)
        else:
            shutil.copyfile(template, target)
        logger.info("wrote %s", target)
    return list(targets)
