"""``APIPOD_API_KEY``: every route but ``/health`` needs ``Authorization: Bearer <key>``."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest

from apipod import APIPod
from tests.helpers import (
    SERVICES,
    ServiceProcess,
    free_port,
    http_client,
    serve_in_thread,
    service_env,
)

KEY = "s3cret-key"
GOOD = {"Authorization": f"Bearer {KEY}"}
UNAUTHORIZED = {"detail": "missing or wrong API key: send 'Authorization: Bearer <key>'"}

# (method, path, request options, status with the key)
ROUTES = [
    ("POST", "/scalars", {"json": {"name": "a"}}, 200),
    ("POST", "/image", {"json": {}}, 422),
    ("GET", "/info", {"params": {"verbose": "true"}}, 200),
    ("GET", "/openapi.json", {}, 200),
    ("GET", "/docs", {}, 200),
    ("POST", "/no-such-route", {}, 404),
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """``uvicorn sync_basic:app`` with APIPOD_API_KEY in its environment."""
    tmp = tmp_path_factory.mktemp("auth")
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(SERVICES), "sync_basic:app"]
    args += ["--port", str(port)]
    env = service_env(tmp / "data", api_key=KEY)
    process = ServiceProcess(args, env, port, tmp / "service.log").start()
    try:
        process.wait_until("/health", status=200)
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(service.url, timeout=30) as client:
        yield client


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text[:200]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == UNAUTHORIZED


def test_health_is_open(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("method", "path", "options", "status"), ROUTES, ids=[r[1] for r in ROUTES]
)
def test_every_other_route_needs_the_key(
    client: httpx.Client, method: str, path: str, options: dict, status: int
) -> None:
    assert_unauthorized(client.request(method, path, **options))


@pytest.mark.parametrize(
    ("method", "path", "options", "status"), ROUTES, ids=[r[1] for r in ROUTES]
)
def test_the_key_opens_every_route(
    client: httpx.Client, method: str, path: str, options: dict, status: int
) -> None:
    response = client.request(method, path, headers=GOOD, **options)
    assert response.status_code == status, response.text[:200]


def test_key_result_is_the_endpoint_result(client: httpx.Client) -> None:
    response = client.post("/scalars", json={"name": "k"}, headers=GOOD)
    assert response.json() == {"name": "k", "count": 1, "ratio": 0.5, "flag": False}


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {KEY}x", "Bearer wrong", KEY, f"Basic {KEY}", "Bearer", f"Token {KEY}"],
)
def test_wrong_credentials_are_refused(client: httpx.Client, authorization: str) -> None:
    response = client.post("/scalars", json={"name": "a"}, headers={"Authorization": authorization})
    assert_unauthorized(response)


def test_refusal_keeps_the_connection_usable(client: httpx.Client) -> None:
    refused = client.post("/scalars", json={"name": "a"})
    assert_unauthorized(refused)
    accepted = client.post("/scalars", json={"name": "a"}, headers=GOOD)
    assert accepted.status_code == 200
    assert client.get("/health").status_code == 200


def test_api_key_as_an_apipod_argument() -> None:
    app = APIPod(title="keyed", api_key="arg-key")

    @app.endpoint("/ping")
    def ping() -> dict:
        return {"pong": True}

    with serve_in_thread(app) as url:
        assert_unauthorized(httpx.post(url + "/ping"))
        ok = httpx.post(url + "/ping", headers={"Authorization": "Bearer arg-key"})
        assert ok.json() == {"pong": True}
        assert httpx.get(url + "/health").status_code == 200


def test_no_key_configured_means_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APIPOD_API_KEY", raising=False)
    app = APIPod(title="open")

    @app.endpoint("/ping")
    def ping() -> dict:
        return {"pong": True}

    with serve_in_thread(app) as url:
        assert httpx.post(url + "/ping").json() == {"pong": True}


# --- one mechanism, whichever way the key was given -------------------------------------------
def test_scheme_is_case_insensitive(client: httpx.Client) -> None:
    for scheme in ("bearer", "BEARER", "Bearer", "bEaReR"):
        response = client.post(
            "/scalars", json={"name": "a"}, headers={"Authorization": f"{scheme} {KEY}"}
        )
        assert response.status_code == 200, scheme
    wrong = client.post("/scalars", json={"name": "a"}, headers={"Authorization": f"Basic {KEY}"})
    assert_unauthorized(wrong)


def test_health_with_a_key_says_only_ok_without_it(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/health", headers=GOOD).json()["compute"] == "dedicated"


def test_key_given_to_start_is_enforced_in_synchronous_mode(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp = tmp_path_factory.mktemp("start-key")
    port = free_port()
    args = [sys.executable, str(SERVICES / "sync_start.py"), str(port), "late-key"]
    process = ServiceProcess(args, service_env(tmp / "data"), port, tmp / "service.log").start()
    try:
        process.wait_until("/health", status=200)
        url = f"http://127.0.0.1:{port}/hello"
        assert httpx.post(url, json={"name": "x"}, timeout=10).status_code == 401
        bad = httpx.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert bad.status_code == 401
        good = httpx.post(url, json={}, headers={"Authorization": "Bearer late-key"}, timeout=10)
        assert good.status_code == 200
    finally:
        process.stop()


def test_an_empty_key_in_the_environment_is_an_error() -> None:
    from apipod.config import Config
    from apipod.errors import ConfigError

    with pytest.raises(ConfigError, match="APIPOD_API_KEY"):
        Config.load({"api_key": "from-code"}, env={"APIPOD_API_KEY": ""})
    with pytest.raises(ConfigError, match="APIPOD_API_KEY"):
        Config.load({}, env={"APIPOD_API_KEY": "   "})
