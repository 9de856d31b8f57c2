"""The API key guards every route but ``/health``, in both modes, however it was given:
``APIPod(api_key=...)``, ``app.start(api_key=...)``, ``apipod start --api-key`` or the
``APIPOD_API_KEY`` environment variable.

Each case starts the real service (``apipod start`` or the script itself) and tries every
route with no key, wrong keys and the key; all mismatches are reported together.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    SERVICES,
    ServiceProcess,
    apipod_command,
    free_port,
    http_client,
    service_env,
)

# Starts a whole service for every mode and every way of giving the key: the full tier.
pytestmark = pytest.mark.slow

KEY = "k3y-for-every-route"
GOOD = {"Authorization": f"Bearer {KEY}"}
WRONG = [
    {},
    {"Authorization": "Bearer not-the-key"},
    {"Authorization": f"Bearer {KEY}x"},
    {"Authorization": KEY},
    {"Authorization": f"Basic {KEY}"},
]
SERVICE = str(SERVICES / "auth_routes.py")
MEANS = ("constructor", "start", "cli", "env")


def start_service(tmp_path: Path, compute: str, means: str) -> ServiceProcess:
    port = free_port()
    settings: dict[str, Any] = {"port": port}
    if compute == "serverless":
        settings["role"] = "api"  # no workers needed: jobs may stay queued
    if means == "env":
        settings["api_key"] = KEY
    env = service_env(tmp_path / "data", **settings)
    env["AUTH_COMPUTE"] = compute
    args = apipod_command("start", SERVICE)
    if means == "constructor":
        env["AUTH_CONSTRUCTOR_KEY"] = KEY
    elif means == "start":
        env["AUTH_START_KEY"] = KEY
        args = [sys.executable, SERVICE]
    elif means == "cli":
        args = apipod_command("start", "--api-key", KEY, SERVICE)
    service = ServiceProcess(args, env, port, tmp_path / "service.log").start()
    try:
        service.wait_until("/health", timeout=60)  # any answer: the server is up
    except BaseException:
        service.stop()
        raise
    return service


@pytest.fixture
def running() -> Iterator[list[ServiceProcess]]:
    services: list[ServiceProcess] = []
    yield services
    for service in services:
        service.stop()


def routes(client: httpx.Client, compute: str) -> list[tuple[str, str, dict, int]]:
    """(method, path, options, status with the key) of every kind of route."""
    common = [
        ("GET", "/info", {"params": {"verbose": "true"}}, 200),
        ("POST", "/direct", {"json": {}}, 200),
        ("GET", "/openapi.json", {}, 200),
        ("GET", "/docs", {}, 200),
        ("GET", "/redoc", {}, 200),
        ("POST", "/no-such-route", {}, 404),
        ("GET", "/work", {}, 405),
    ]
    if compute == "dedicated":
        return [("POST", "/work", {"json": {"text": "a"}}, 200), *common]
    submitted = client.post("/work", json={"text": "a"}, headers=GOOD)
    assert submitted.status_code == 200, submitted.text
    job_id = submitted.json()["job_id"]
    return [
        ("POST", "/work", {"json": {"text": "a"}}, 200),
        ("POST", "/work", {"json": {"text": "a"}, "params": {"wait": "0.1"}}, 200),
        ("GET", f"/status/{job_id}", {}, 200),
        ("GET", f"/status/{job_id}", {"params": {"wait": "0.1"}}, 200),
        ("GET", "/status/0123456789abcdef", {}, 404),
        ("POST", "/status", {"params": {"job_id": job_id}}, 200),
        ("POST", "/status", {"params": {"job_id": job_id, "wait": "0.1"}}, 200),
        ("GET", "/jobs", {}, 200),
        ("GET", "/jobs", {"params": {"status": "queued", "limit": "5"}}, 200),
        ("POST", f"/cancel/{job_id}", {}, 200),
        *common,
    ]


def mismatches(client: httpx.Client, compute: str) -> list[str]:
    """Every route tried without the key, with wrong ones and with the key."""
    problems: list[str] = []
    for method, path, options, status in routes(client, compute):
        for headers in WRONG:
            response = client.request(method, path, headers=headers, **options)
            if response.status_code != 401 or response.headers.get("www-authenticate") != "Bearer":
                shown = headers.get("Authorization", "no Authorization")
                problems.append(f"{method} {path} with {shown!r}: {response.status_code}")
        response = client.request(method, path, headers=GOOD, **options)
        if response.status_code != status:
            problems.append(f"{method} {path} with the key: {response.status_code}, not {status}")
    health = client.get("/health")
    if health.status_code == 401:
        problems.append("/health needs the key")
    return problems


def cases() -> list[Any]:
    params = []
    for compute in ("dedicated", "serverless"):
        for means in MEANS:
            params.append(pytest.param(compute, means, id=f"{compute}-{means}"))
    return params


@pytest.mark.parametrize(("compute", "means"), cases())
def test_the_key_guards_every_route(
    tmp_path: Path, running: list[ServiceProcess], compute: str, means: str
) -> None:
    service = start_service(tmp_path, compute, means)
    running.append(service)
    with http_client(service.url, timeout=30) as client:
        problems = mismatches(client, compute)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("compute", ["dedicated", "serverless"])
def test_the_scheme_is_case_insensitive(
    tmp_path: Path, running: list[ServiceProcess], compute: str
) -> None:
    service = start_service(tmp_path, compute, "env")
    running.append(service)
    with http_client(service.url, timeout=30) as client:
        for scheme in ("bearer", "BEARER", "BeArEr"):
            headers = {"Authorization": f"{scheme} {KEY}"}
            assert client.post("/direct", json={}, headers=headers).status_code == 200, scheme
            assert client.get("/openapi.json", headers=headers).status_code == 200, scheme
            refused = client.post("/direct", json={}, headers={"Authorization": f"{scheme} no"})
            assert refused.status_code == 401, scheme
