"""``apipod init``: a starter ``service.py``, the ``apipod-deploy/`` folder, its
``.dockerignore``, and ``wheels/`` with a wheel of the APIPod that ran it.

The deploy templates are the repository's ``apipod-deploy/`` folder, shipped in the wheel
as ``apipod/_deploy`` (like the migrations), so there is one copy of each file. The wheel
is what the Dockerfile installs: the name ``apipod`` on the package index is another
project, so an image must never install APIPod by name.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import apipod
from apipod.errors import ConfigError

logger = logging.getLogger(__name__)

DEPLOY_FILES = ("apipod.json", "Dockerfile", "compose.yaml", "apipod.service")
# The build context is the service folder, so its ignore file sits there.
IGNORE_TEMPLATE, IGNORE_FILE = "dockerignore", ".dockerignore"
WHEELS = "wheels"

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
    """Write ``service.py``, ``apipod-deploy/*``, ``.dockerignore`` and
    ``wheels/apipod-*.whl`` into ``folder``; return the paths written. Existing files are
    kept (and reported) unless ``force``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = deploy_templates_dir()
    targets = {folder / "service.py": None, folder / IGNORE_FILE: source / IGNORE_TEMPLATE}
    targets.update({folder / "apipod-deploy" / name: source / name for name in DEPLOY_FILES})
    old_wheels = sorted((folder / WHEELS).glob("apipod-*.whl"))
    existing = [path for path in [*targets, *old_wheels] if path.exists()]
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
    for old in old_wheels:
        old.unlink()  # the Dockerfile installs the one wheel it finds
    wheel = write_wheel(folder / WHEELS)
    return [*targets, *([wheel] if wheel else [])]


def write_wheel(into: Path) -> Path | None:
    """Put a wheel of the running APIPod into ``into``: built from its source checkout, or
    copied from the wheel file it was installed from. None (and a warning saying what to
    do) when neither is known, e.g. when it was installed from an index."""
    source = apipod_source()
    if source is None:
        logger.warning(
            "cannot tell where this APIPod came from: put its wheel in %s "
            "(pip wheel --no-deps -w %s <APIPod checkout>) before building the image",
            into,
            into,
        )
        return None
    into.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".whl":
        return Path(shutil.copy2(source, into / source.name))
    return _build_wheel(source, into)


def apipod_source() -> Path | None:
    """The running APIPod's source folder (a checkout, installed editable or not) or the
    wheel file it was installed from, as far as its install metadata says."""
    root = Path(apipod.__file__).resolve().parent.parent
    if _is_apipod_project(root):
        return root
    try:
        document = importlib.metadata.distribution("apipod").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    url = json.loads(document or "{}").get("url", "")
    if not url.startswith("file://"):
        return None
    path = Path(unquote(urlparse(url).path))
    if path.suffix == ".whl" and path.is_file():
        return path
    return path if _is_apipod_project(path) else None


def _is_apipod_project(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return pyproject.is_file() and 'name = "apipod"' in pyproject.read_text()


def _build_wheel(source: Path, into: Path) -> Path:
    before = set(into.glob("apipod-*.whl"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(into)]
    done = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=900)
    built = sorted(set(into.glob("apipod-*.whl")) - before) or sorted(into.glob("apipod-*.whl"))
    if done.returncode != 0 or not built:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ConfigError(f"could not build APIPod's wheel from {source}: {' '.join(tail)}")
    logger.info("wrote %s (built from %s)", built[-1], source)
    return built[-1]
