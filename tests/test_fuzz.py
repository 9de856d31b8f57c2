"""Fuzzing the example services: schemathesis against their OpenAPI (no 5xx, no hang),
and hand-made malformed requests that must get 4xx JSON answers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ServiceProcess, apipod_command, free_port, http_client, service_env

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def start_example(name: str, tmp: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    env = service_env(tmp / "data", port=port, log_level="warning", gpus="none")
    args = apipod_command("start", str(EXAMPLES / name / "service.py"))
    service = ServiceProcess(args, env, port, tmp / "service.log").start()
    try:
        service.wait_until("/health", status=200, timeout=60)
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    yield from start_example("hello", tmp_path_factory.mktemp("hello"))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    yield from start_example("image", tmp_path_factory.mktemp("image"))


@pytest.fixture(params=["hello", "image"])
def example(request: pytest.FixtureRequest) -> ServiceProcess:
    return request.getfixturevalue(request.param)


def schemathesis_command() -> list[str]:
    executable = shutil.which("st") or shutil.which("schemathesis")
    if executable:
        return [executable]
    return [sys.executable, "-m", "schemathesis.cli"]


def test_schemathesis_finds_no_server_error_and_no_hang(example: ServiceProcess) -> None:
    command = [
        *schemathesis_command(),
        "run",
        f"{example.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--request-timeout",
        "15",
        "--max-examples",
        "25",
        "--generation-deterministic",
    ]
    workdir = example.log_path.parent  # schemathesis keeps a cache folder in its cwd
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:] + "\n--- service log ---\n" + example.log()
    assert "passed" in output


MALFORMED = [
    ("multipart without boundary", {"content-type": "multipart/form-data"}, b"--x\r\nabc"),
    (
        "multipart cut short",
        {"content-type": "multipart/form-data; boundary=BOUND"},
        b'--BOUND\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\x89PNG',
    ),
    ("json not an object", {"content-type": "application/json"}, b"[1, 2, 3]"),
    ("json broken", {"content-type": "application/json"}, b'{"image": "abc'),
    ("json bad base64", {"content-type": "application/json"}, b'{"image": "%%%not-base64%%%"}'),
    ("json file url", {"content-type": "application/json"}, b'{"image": "file:///etc/passwd"}'),
    (
        "json javascript url",
        {"content-type": "application/json"},
        b'{"image": "javascript:alert(1)"}',
    ),
    (
        "json private url",
        {"content-type": "application/json"},
        b'{"image": "http://169.254.169.254/latest/meta-data"}',
    ),
    (
        "json huge int field",
        {"content-type": "application/json"},
        b'{"image": "aGVsbG8=", "levels": "' + b"9" * 100_000 + b'"}',
    ),
    ("unsupported type", {"content-type": "text/csv"}, b"a,b\n1,2"),
    (
        "json nested 100,000 deep",
        {"content-type": "application/json"},
        b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ),
    (
        "json 900 nested objects",
        {"content-type": "application/json"},
        b'{"levels": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b"}",
    ),
    (
        "json int over 4,300 digits in an unknown field",
        {"content-type": "application/json"},
        b'{"unknown": ' + b"9" * 5000 + b"}",
    ),
    ("json lone surrogate", {"content-type": "application/json"}, b'{"image": "\\ud800"}'),
    ("json lone surrogate key", {"content-type": "application/json"}, b'{"\\udc00": 1}'),
    (
        "json utf-8 surrogate bytes",
        {"content-type": "application/json"},
        b'{"image": "\xed\xa0\x80"}',
    ),
    (
        "json long broken base64",
        {"content-type": "application/json"},
        b'{"image": "' + b"A" * 100_001 + b'"}',
    ),
    (
        "json long data url of text",
        {"content-type": "application/json"},
        b'{"image": "data:image/png;base64,' + b"QUFB" * 30_000 + b'"}',
    ),
    ("latin-1 garbage", {"content-type": "application/json"}, b"\xff\xfe\x00{"),
]


@pytest.mark.parametrize(("name", "headers", "body"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_submits_get_4xx_json(
    image: ServiceProcess, name: str, headers: dict[str, str], body: bytes
) -> None:
    response = httpx.post(f"{image.url}/posterize", content=body, headers=headers, timeout=30)
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:300])
    assert isinstance(response.json(), dict)


def test_malformed_job_ids(image: ServiceProcess) -> None:
    with http_client(image.url, timeout=30) as client:
        for path in ("/status/" + "a" * 5000, "/status/..%2f..%2fetc", "/status/a%00b"):
            response = client.get(path)
            assert response.status_code in (404, 422), (path, response.status_code)
            assert isinstance(response.json(), dict)
        response = client.post("/cancel/" + "z" * 100)
        assert response.status_code == 422 and isinstance(response.json(), dict)


def test_huge_fields(hello: ServiceProcess) -> None:
    with http_client(hello.url, timeout=30) as client:
        huge = client.post("/hello", json={"name": "x" * 2_000_000, "times": "2"})
        assert huge.status_code == 200
        assert len(huge.json()["text"]) > 4_000_000
        wrong = client.post("/hello", json={"name": "x", "times": "9" * 10_000})
        assert wrong.status_code == 422 and wrong.json()["detail"]
