"""The deploy path end to end, as far as this machine can (no container builder and no
image registry here): ``apipod init`` writes a service folder, the Dockerfile's own install
command runs in it in a fresh virtual environment, and the Dockerfile's own ENTRYPOINT and
CMD serve the starter service over HTTP. The commands are read from the Dockerfile, so
this test follows it; the install resolves every dependency from the package index (pip's
cache makes reruns faster), as an image build would."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apipod.ops.scaffold import DEPLOY_FILES
from tests.helpers import ServiceProcess, apipod_command, free_port, http_client, service_env
from tests.ops.test_deploy import DEPLOY, _instructions


def dockerfile(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` instruction of the deploy Dockerfile."""
    lines = _instructions((DEPLOY / "Dockerfile").read_text())
    return [argument for name, argument in lines if name == keyword]


def venv_env(venv: Path) -> dict[str, str]:
    """This process's environment with ``venv`` first on PATH, as the image's ENV puts
    /opt/venv, and nothing that would import APIPod from elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PIP_NO_CACHE_DIR", None)
    return env


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_dockerfile_install_and_start_commands_serve_the_starter_service(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "project"
    done = subprocess.run(apipod_command("init", str(folder)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in DEPLOY_FILES:
        assert (folder / "apipod-deploy" / name).read_bytes() == (DEPLOY / name).read_bytes()
    assert (folder / ".dockerignore").read_bytes() == (DEPLOY / "dockerignore").read_bytes()
    wheel = f"apipod-{importlib.metadata.version('apipod')}-py3-none-any.whl"
    assert [p.name for p in (folder / "wheels").iterdir()] == [wheel]
    again = subprocess.run(apipod_command("init", str(folder)), capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = venv_env(venv)
    (install,) = [run for run in dockerfile("RUN") if "pip install" in run]
    done = subprocess.run(
        ["sh", "-c", install], cwd=folder, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _assert_installed_from_the_wheel(venv, folder)

    entrypoint = json.loads(dockerfile("ENTRYPOINT")[-1]) + json.loads(dockerfile("CMD")[-1])
    program = venv / "bin" / entrypoint[0]
    assert program.is_file(), f"{entrypoint[0]} is not a script of the installed wheel"
    port = free_port()
    settings = service_env(tmp_path / "data", port=port, host="127.0.0.1")  # loopback here
    env.update({k: v for k, v in settings.items() if k.startswith("APIPOD_")})
    service = ServiceProcess([str(program), *entrypoint[1:]], env, port, tmp_path / "log")
    service.process = subprocess.Popen(
        service.args,
        cwd=folder,
        env=env,
        stdout=(tmp_path / "log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        service.wait_until("/health", status=200, timeout=120)
        with http_client(service.url, timeout=60) as client:
            body = client.post("/generate", params={"wait": 50}, json={"text": "hi"}).json()
            assert body["status"] == "finished" and body["result"] == {"text": "HI"}, body
            assert client.get("/dashboard").status_code == 200  # package data shipped
            assert client.get("/docs").status_code == 200
    finally:
        service.stop()


def _assert_installed_from_the_wheel(venv: Path, folder: Path) -> None:
    """The venv's APIPod is the wheel's, in the venv, not this checkout or another project."""
    probe = (
        "import apipod, importlib.metadata as m; print(apipod.__file__); print(m.version('apipod'))"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=folder,
        env=venv_env(venv),
        capture_output=True,
        text=True,
        check=True,
    )
    location, version = done.stdout.split()
    assert Path(location).is_relative_to(venv), location
    assert version == importlib.metadata.version("apipod")
