"""``apipod-deploy/``: the settings template, Dockerfile, compose file and systemd unit,
checked as far as this machine can (``test_deploy_install.py`` runs the Dockerfile's own
install and start commands)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from apipod.config import Config
from apipod.ops.scaffold import deploy_templates_dir

DEPLOY = Path(__file__).resolve().parents[2] / "apipod-deploy"
QUEUE_SETTINGS = {
    "max_workers",
    "gpus",
    "queue_size",
    "job_ttl",
    "job_timeout",
    "max_attempts",
    "lease_s",
    "worker_start_timeout",
    "cancel_grace_s",
    "shutdown_grace_s",
    "max_jobs_per_worker",
    "worker_max_rss_mb",
}


def template() -> dict:
    return json.loads((DEPLOY / "apipod.json").read_text())


def test_the_template_holds_every_queue_setting_at_its_default() -> None:
    document = template()
    assert set(document["queue"]) >= QUEUE_SETTINGS
    settings = {k: v for section in document.values() for k, v in section.items()}
    config = Config.load(env={}, deploy_file=DEPLOY / "apipod.json")
    defaults = Config()
    for name in settings:  # the template documents the defaults: no surprise in it
        assert getattr(config, name) == getattr(defaults, name), name
    assert deploy_templates_dir() == DEPLOY


def test_the_template_is_honoured(tmp_path: Path) -> None:
    document = template()
    document["queue"].update(max_workers=3, queue_size=7, job_ttl=60, lease_s=12.5)
    document["media"]["media_url_allowlist"] = ["10.0.0.0/8", "*.example.com"]
    path = tmp_path / "apipod.json"
    path.write_text(json.dumps(document))
    config = Config.load(env={}, deploy_file=path)
    assert (config.max_workers, config.queue_size, config.job_ttl, config.lease_s) == (
        3,
        7,
        60.0,
        12.5,
    )
    assert config.media_url_allowlist == ("10.0.0.0/8", "*.example.com")
    overridden = Config.load(env={"APIPOD_QUEUE_SIZE": "9"}, deploy_file=path)
    assert overridden.queue_size == 9  # the environment still wins


def test_compose_runs_one_api_box_and_two_worker_boxes_on_postgres() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "api", "worker-1", "worker-2"}
    roles = {name: s["environment"].get("APIPOD_ROLE") for name, s in services.items()}
    assert roles == {"postgres": None, "api": "api", "worker-1": "workers", "worker-2": "workers"}
    urls = {services[n]["environment"]["APIPOD_DATABASE_URL"] for n in roles if n != "postgres"}
    assert len(urls) == 1 and urls.pop().startswith("postgresql://")
    for name in ("api", "worker-1", "worker-2"):
        service = services[name]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["image"] == "apipod-service"
        assert service["environment"]["APIPOD_COMPUTE"] == "serverless"
        assert any(v.endswith(":/data") for v in service["volumes"])
    # one build, by the api service; the workers run its image and never pull it
    assert [n for n, s in services.items() if "build" in s] == ["api"]
    assert services["api"]["build"] == {"context": "..", "dockerfile": "apipod-deploy/Dockerfile"}
    assert {services[n].get("pull_policy") for n in ("worker-1", "worker-2")} == {"never"}
    assert services["api"]["ports"] == ["8000:8000"]
    gpus = [
        services[n]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
        for n in ("worker-1", "worker-2")
    ]
    assert gpus == [["0"], ["1"]]
    assert "healthcheck" in services["postgres"]
    declared = set(compose["volumes"])
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used <= declared


def test_dockerfile_is_a_non_root_cuda_box_with_a_health_check() -> None:
    lines = _instructions((DEPLOY / "Dockerfile").read_text())
    first = {}
    for keyword, argument in lines:
        first.setdefault(keyword, argument)
    assert first["FROM"].startswith("nvidia/cuda:") and "runtime" in first["FROM"]
    users = [argument for keyword, argument in lines if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert json.loads(first["VOLUME"]) == ["/data"]
    assert "APIPOD_DATA_DIR=/data" in first["ENV"]
    assert "/health" in first["HEALTHCHECK"] and "CMD" in first["HEALTHCHECK"]
    assert json.loads(first["ENTRYPOINT"]) == ["apipod", "start"]
    assert json.loads(first["CMD"]) == ["service.py"]
    assert [k for k, _ in lines].index("USER") > [k for k, _ in lines].index("RUN")


def test_the_dockerfile_installs_this_project_never_the_name_from_an_index() -> None:
    """``apipod`` on the package index is another project (the original APIPod)."""
    installs = [a for k, a in _instructions((DEPLOY / "Dockerfile").read_text()) if k == "RUN"]
    installs = [a for a in installs if "pip install" in a]
    assert len(installs) == 1 and "set -- wheels/apipod-*.whl" in installs[0]
    assert 'wheel="$1[gpu,postgres]"' in installs[0]
    for command in installs[0].split("&&"):
        if "pip install" in command:  # only the wheel found in wheels/, by its path
            assert "apipod" not in command.lower() and '"$wheel"' in command, command
    copies = [a for k, a in _instructions((DEPLOY / "Dockerfile").read_text()) if k == "COPY"]
    assert "wheel[s]/ /app/wheels/" in copies


def test_the_image_leaves_out_the_data_dir_venvs_and_secrets() -> None:
    ignored = (DEPLOY / "dockerignore").read_text().split()
    for pattern in (
        "apipod-data/",
        ".venv/",
        ".git/",
        "**/__pycache__/",
        "apipod-deploy/secrets.env",
    ):
        assert pattern in ignored, pattern
    assert not any(p.startswith("wheels") for p in ignored)  # what the image installs


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, argument) per instruction, continuation lines joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, argument = line.partition(" ")
            out.append((keyword.upper(), " ".join(argument.split())))
    return out


def test_the_systemd_unit_says_how_its_user_and_venv_are_made() -> None:
    unit = (DEPLOY / "apipod.service").read_text()
    assert "useradd --system" in unit and "User=apipod" in unit
    assert "python3 -m venv /opt/apipod/venv" in unit
    assert "/opt/apipod/venv/bin/pip install" in unit and "wheels/apipod-*.whl" in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (DEPLOY / "apipod.service").read_text()
    assert "ExecStart=/opt/apipod/venv/bin/apipod start service.py" in unit
    # verify insists that ExecStart's program exists: point it at one that does
    local = tmp_path / "apipod.service"
    local.write_text(unit.replace("/opt/apipod/venv/bin/apipod", sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(unit)  # the program is missing on this machine: verify must say so
    done = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True
    )
    assert done.returncode != 0 and "apipod" in done.stderr
