"""Issue 22, point 3: absolute URLs in answers never follow a client's Host header.

They come from ``public_url`` when it is set; otherwise a request must name a host in
``allowed_hosts`` (400 ``invalid host`` if not), and ``X-Forwarded-*`` headers count
only from ``forwarded_allow_ips``. Before: a status read with ``Host:
attacker.example:9999`` answered a signed URL ``http://attacker.example:9999/files/...``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apipod.app.hosts import HostPolicy, default_hosts, host_name
from apipod.config import Config
from apipod.errors import ConfigError
from tests.helpers import ServiceProcess, http_client, running_service

pytestmark = pytest.mark.slow

KEY = "hosts-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ATTACKER = "attacker.example:9999"
PUBLIC = "https://api.example.com/base"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hosts")


@pytest.fixture(scope="module")
def service(data_dir: Path) -> Iterator[ServiceProcess]:
    with running_service(data_dir, "queue_hostile.py", api_key=KEY, gpus="none") as svc:
        yield svc


@pytest.fixture(scope="module")
def public(
    service: ServiceProcess, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A second API process on the same store, with ``public_url`` set and no trusted
    proxy (127.0.0.1 is not in its ``forwarded_allow_ips``)."""
    tmp = tmp_path_factory.mktemp("hosts-public")
    database = f"sqlite:///{data_dir / 'data' / 'apipod.db'}"
    settings = {"database_url": database, "role": "api", "api_key": KEY}
    settings |= {"public_url": PUBLIC, "forwarded_allow_ips": "10.9.9.9"}
    with running_service(tmp, "queue_hostile.py", **settings) as svc:
        yield svc


@pytest.fixture(scope="module")
def job_id(service: ServiceProcess) -> str:
    with http_client(service.url, headers=AUTH, timeout=60) as client:
        body = {"count": 1, "megabytes": 0.001}
        job = client.post("/many-files", json=body, params={"wait": 30}).json()
    assert job["status"] == "finished", job
    return job["job_id"]


def file_url(svc: ServiceProcess, job_id: str, **headers: str) -> httpx.Response:
    with http_client(svc.url, headers=AUTH, timeout=30) as client:
        return client.get(f"/status/{job_id}", params={"inline": "none"}, headers=headers)


def url_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["result"][0]["content"]


def test_a_foreign_host_header_is_refused_not_signed(service: ServiceProcess, job_id: str) -> None:
    response = file_url(service, job_id, Host=ATTACKER)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("invalid host 'attacker.example:9999'")
    assert "attacker" not in response.text.split("detail")[0]
    with http_client(service.url, headers=AUTH | {"Host": ATTACKER}, timeout=30) as client:
        assert client.post("/echo", json={"text": "x"}).status_code == 400
        assert client.get("/health").status_code == 200  # makes no URL; probes stay simple


def test_urls_follow_the_host_the_service_answers_as(service: ServiceProcess, job_id: str) -> None:
    url = url_of(file_url(service, job_id))
    assert url.startswith(f"{service.url}/files/{job_id}/") and "signature=" in url
    local = url_of(file_url(service, job_id, Host=f"localhost:{service.port}"))
    assert local.startswith(f"http://localhost:{service.port}/files/")


def test_forwarded_headers_count_from_a_trusted_proxy(service: ServiceProcess, job_id: str) -> None:
    # 127.0.0.1 is the default forwarded_allow_ips: a proxy on this machine.
    forwarded = {"X-Forwarded-Host": "localhost:7777", "X-Forwarded-Proto": "https"}
    assert url_of(file_url(service, job_id, **forwarded)).startswith("https://localhost:7777/")
    rfc = {"Forwarded": 'for=10.0.0.1;host="localhost:7778";proto=https'}
    assert url_of(file_url(service, job_id, **rfc)).startswith("https://localhost:7778/")
    refused = file_url(service, job_id, **{"X-Forwarded-Host": ATTACKER})
    assert refused.status_code == 400 and "attacker" in refused.json()["detail"]


def test_public_url_makes_every_url(public: ServiceProcess, job_id: str) -> None:
    url = url_of(file_url(public, job_id))
    assert url.startswith(f"{PUBLIC}/files/{job_id}/") and "signature=" in url
    assert url_of(file_url(public, job_id, Host="api.example.com")).startswith(PUBLIC)
    assert file_url(public, job_id, Host=ATTACKER).status_code == 400


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    public: ServiceProcess, job_id: str
) -> None:
    forwarded = {"X-Forwarded-Host": ATTACKER, "Forwarded": f'host="{ATTACKER}"'}
    assert url_of(file_url(public, job_id, **forwarded)).startswith(PUBLIC)


# --- the policy itself -----------------------------------------------------------------------
def test_default_hosts_of_a_wildcard_bind_are_the_machines_own_names() -> None:
    policy = HostPolicy.from_config(Config(host="0.0.0.0"))
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", socket.gethostname()):
        assert policy.allows(host), host
    assert not policy.allows(ATTACKER) and not policy.allows("0.0.0.0:8000")
    assert "0.0.0.0" not in default_hosts(Config(host="0.0.0.0"))


def test_allowed_hosts_take_names_domains_and_a_wildcard() -> None:
    policy = HostPolicy.from_config(Config(allowed_hosts=("api.example.com", ".corp.example")))
    assert policy.allows("API.example.com:443") and policy.allows("a.b.corp.example")
    assert policy.allows("corp.example") and not policy.allows("localhost")
    assert HostPolicy.from_config(Config(allowed_hosts=("*",))).allows(ATTACKER)
    assert host_name("[::1]:80") == "::1" and host_name("Example.COM:1") == "example.com"


def test_address_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="public_url"):
        Config.from_mapping({"public_url": "api.example.com"})
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        Config.from_mapping({"forwarded_allow_ips": "proxy.local"})
    config = Config.from_mapping({"forwarded_allow_ips": "10.0.0.0/8, *", "max_json_mb": "2"})
    assert config.forwarded_allow_ips == ("10.0.0.0/8", "*") and config.max_json_mb == 2.0
